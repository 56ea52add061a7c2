"""Shared building blocks for *LLM Engineering: The Hard Way*.

One module per concept; a reader finds each by its file name:

- ``shared.model``     — ``GPTConfig`` and a configurable tiny ``GPT`` in raw PyTorch
- ``shared.data``      — the offline Shakespeare corpus, tokenizers, batches, synthetic tasks
- ``shared.train``     — a small trainer (AdamW, warmup + cosine, clipping, checkpoints)
- ``shared.plotting``  — one plotting style, loss curves, heatmaps, log-log fits, token HTML
- ``shared.checks``    — the learner-feedback API behind every check cell
- ``shared.device``    — device choice, seeding, timing, peak memory
- ``shared.notebooks`` — starter generation from solutions, starter execution, CUDA-only cells

Project-specific checks live in uniquely named modules ``shared.checks_NN_<name>``.
"""

__version__ = "0.1.0"
