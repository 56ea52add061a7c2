"""Shims for the range of PyTorch versions the course supports (2.1 and newer).

Each one answers a single question about the installed torch, so the model code can stay free of
version checks.
"""

from __future__ import annotations

import inspect

import torch

TORCH_VERSION = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


def is_compiling() -> bool:
    """True inside ``torch.compile`` tracing (``torch.compiler.is_compiling`` exists from torch 2.3)."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


def fused_adamw_kwargs(device_type: str) -> dict[str, bool]:
    """``{"fused": True}`` where this PyTorch build has a fused AdamW kernel for ``device_type``, else {}.

    Fused AdamW runs on CUDA since torch 2.0 and on the CPU since torch 2.4.
    """
    if "fused" not in inspect.signature(torch.optim.AdamW).parameters:
        return {}
    if device_type == "cuda" or (device_type == "cpu" and TORCH_VERSION >= (2, 4)):
        return {"fused": True}
    return {}
