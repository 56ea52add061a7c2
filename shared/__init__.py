"""Shared building blocks for *LLM Engineering: The Hard Way*.

One module per concept; a reader finds each by its file name. Start with ``model.py``: it reads top to
bottom (config, attention, MLP, block, GPT) and imports the machinery below it.

The model
- ``shared.model``        — ``GPTConfig`` and the configurable tiny ``GPT`` (forward, generate, record)
- ``shared.positions``    — sinusoidal, RoPE and ALiBi positions; the attention masks
- ``shared.moe``          — the mixture-of-experts feed-forward layer
- ``shared.kv_cache``     — the preallocated KV cache for decoding
- ``shared.sampling``     — temperature, top-k and top-p sampling
- ``shared.model_checks`` — validation of the config and of forward/generate arguments
- ``shared.compat``       — the few shims for older PyTorch releases

Data and training
- ``shared.corpus``       — the offline Shakespeare corpus (and the Tiny Shakespeare download)
- ``shared.tokenizers``   — character, byte and byte-level BPE tokenizers
- ``shared.data``         — splits, batches for next-token prediction, synthetic tasks
- ``shared.train``        — the one training loop: AdamW, warmup + cosine, clipping, evaluation, history
- ``shared.tracking``     — optional experiment tracking for the training loop
- ``shared.checkpoint``   — checkpoints saved atomically with a checksum, loaded with weights_only
- ``shared.pretrained``   — the Shakespeare base (14-15) and corpus (04, 07) models, trained once, cached
- ``shared.sweep``        — the scaling-law sweep runner of project 16 (also under torchrun)

Measuring and showing
- ``shared.device``       — device choice, seeding, threads, timing, peak memory, CUDA-only cells
- ``shared.plotting``     — one plotting style, loss curves, heatmaps, log-log fits, token pictures
- ``shared.yardstick``    — n-gram baselines, a model's loss by context length, one report line

Serving (project 18)
- ``shared.serving``      — ``engine`` (the paged KV cache and the continuous-batching engine), ``requests``
  (request validation), ``server`` (the OpenAI-compatible HTTP server) and ``loadgen`` (the load generator)

Outside the curriculum
- ``shared.hf``           — export to and import from Hugging Face transformers (GPT-2, Llama)
- ``shared.gguf_export``  — write a GPT to GGUF and read it back (project 12)

Small utilities
- ``shared.utils``        — type guards, the cache folder, atomic file writes

Learner feedback and tooling
- ``shared.checks``       — the check API behind every check cell; ``shared.checks.compare`` holds the one
  matcher and diagnoser; ``shared.checks.<project>`` (e.g. ``shared.checks.byte_pair_smith``) one
  project's checks
- ``shared.tooling``      — ``notebooks`` (starters generated from solutions, starter execution) and
  ``cli`` (the ``hardway`` command)
"""

__version__ = "0.1.0"
