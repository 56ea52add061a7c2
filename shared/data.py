"""Data: splits, batches for next-token prediction, and synthetic tasks.

The corpus itself is in :mod:`shared.corpus` and the tokenizers in :mod:`shared.tokenizers`.

* **Split.** :func:`train_val_split` cuts any text or tensor into a contiguous train head and val tail.
* **Batches.** :func:`get_batch` samples random windows ``x`` and their one-step shift ``y``;
  :func:`make_get_batch` wraps train/val tensors into the ``get_batch(split, batch_size, generator)``
  function the trainer calls.
* **Synthetic tasks.** :func:`copy_task`, :func:`reverse_task`, :func:`sort_task`,
  :func:`kv_retrieval_task` and :func:`modular_arithmetic_task` build seeded algorithmic datasets
  whose answer is computable from the prompt. All share one layout, described at
  :class:`SyntheticTask`. Targets that carry no loss hold :data:`IGNORE_INDEX`.
"""


from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "IGNORE_INDEX",
    "SyntheticTask",
    "copy_task",
    "get_batch",
    "kv_retrieval_task",
    "make_get_batch",
    "modular_arithmetic_task",
    "reverse_task",
    "sort_task",
    "train_val_split",
]


_Splittable = TypeVar("_Splittable", str, Tensor, bytes, list, np.ndarray)


def train_val_split(
    text_or_tensor: _Splittable, val_fraction: float = 0.1
) -> tuple[_Splittable, _Splittable]:
    """Contiguous split: the first ``n - floor(n * val_fraction)`` items train, the rest validate.

    Contiguous rather than shuffled so that validation text is text the model has never seen any
    part of (a shuffled split of overlapping windows would leak). Deterministic; works on anything
    sliceable with a length (``str``, 1-D ``Tensor``, ``bytes``, ``list``, ``ndarray``). Tensors
    come back as views of the input.

    >>> train_val_split("abcdefghij", 0.2)
    ('abcdefgh', 'ij')
    """
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not 0.0 < val_fraction < 1.0
    ):
        raise ValueError(
            f"train_val_split: val_fraction={val_fraction!r} must be a float strictly between 0 and 1"
        )
    n = len(text_or_tensor)
    n_val = int(n * val_fraction)
    n_train = n - n_val
    if n_val == 0 or n_train == 0:
        raise ValueError(
            f"train_val_split: {n} items with val_fraction={val_fraction} leaves "
            f"{n_train} for train and {n_val} for val; both must be non-empty"
        )
    return text_or_tensor[:n_train], text_or_tensor[n_train:]


# ---------------------------------------------------------------------------------------------
# Batches for next-token prediction
# ---------------------------------------------------------------------------------------------


def _check_int(owner: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{owner}: {name}={value!r} must be an int >= {minimum}")


def _check_data(owner: str, data: Any, block_size: int) -> None:
    if not isinstance(data, Tensor) or data.dim() != 1:
        shape = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
        raise ValueError(f"{owner}: data must be a 1-D tensor of token ids, got {shape}")
    if data.is_floating_point() or data.is_complex():
        raise ValueError(f"{owner}: data must hold integer token ids, got dtype {data.dtype}")
    if len(data) <= block_size:
        raise ValueError(
            f"{owner}: len(data)={len(data)} must be > block_size={block_size} "
            "(each window needs block_size inputs plus one more token for the last target)"
        )


def get_batch(
    data: Tensor,
    block_size: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Random training windows: ``x = data[i : i+T]`` and ``y = data[i+1 : i+T+1]`` for B random ``i``.

    ``y[b, t]`` is the token that follows ``x[b, :t+1]``, so one forward pass trains T next-token
    predictions per window (nanoGPT's ``get_batch``). Offsets ``i`` are drawn uniformly from
    ``[0, len(data) - T]`` with ``generator`` (a CPU ``torch.Generator``; ``None`` uses torch's global
    RNG), so the same seed gives the same batch. Returns two ``torch.long`` tensors of shape (B, T)
    on ``device``; on CUDA they are copied from pinned memory without blocking.
    """
    _check_int("get_batch", "block_size", block_size, 1)
    _check_int("get_batch", "batch_size", batch_size, 1)
    _check_data("get_batch", data, block_size)
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    index = (starts[:, None] + torch.arange(block_size)).to(data.device)  # (B, T)
    x = data[index].long()  # (B, T)
    y = data[index + 1].long()  # (B, T)
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def make_get_batch(
    train_data: Tensor,
    val_data: Tensor,
    block_size: int,
    device: torch.device | str = "cpu",
) -> Callable[..., tuple[Tensor, Tensor]]:
    """Bind train/val token tensors into the trainer's ``get_batch(split, batch_size, generator=None)``.

    ``split`` is ``"train"`` or ``"val"``; both tensors are validated here, once, so a too-short
    validation set fails at setup rather than at the first evaluation.
    """
    _check_int("make_get_batch", "block_size", block_size, 1)
    _check_data("make_get_batch (train_data)", train_data, block_size)
    _check_data("make_get_batch (val_data)", val_data, block_size)
    splits = {"train": train_data, "val": val_data}

    def split_get_batch(
        split: str, batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        if split not in splits:
            raise ValueError(f"get_batch: split={split!r} must be 'train' or 'val'")
        return get_batch(splits[split], block_size, batch_size, generator=generator, device=device)

    return split_get_batch


# ---------------------------------------------------------------------------------------------
# Synthetic algorithmic tasks
# ---------------------------------------------------------------------------------------------

IGNORE_INDEX = -100  # the default ignore_index of F.cross_entropy


@dataclass(frozen=True)
class SyntheticTask:
    """A seeded algorithmic dataset laid out for next-token prediction with a loss mask.

    Every task builds N token sequences ``s = prompt + answer`` (all of one length) and returns
    ``x = s[:, :-1]`` and ``y = s[:, 1:]`` with ``y = IGNORE_INDEX (-100)`` wherever the target is
    still part of the prompt. So a decoder-only model trained with
    ``F.cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=-100)`` is scored only on the
    answer, and at inference one feeds the prompt and generates ``answer_len`` tokens.

    Symbols are ids ``0 .. n_symbols - 1``; special tokens come after them and are listed by name
    in ``special_tokens`` (e.g. ``{"SEP": 10}``). ``vocab_size`` counts both.
    """

    name: str
    x: Tensor  # (N, T) long: prompt and all answer tokens but the last
    y: Tensor  # (N, T) long: next token where it is an answer token, else IGNORE_INDEX
    vocab_size: int
    prompt_len: int  # tokens before the answer in s
    answer_len: int
    special_tokens: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def loss_mask(self) -> Tensor:
        """(N, T) bool, True where ``y`` is scored."""
        return self.y != IGNORE_INDEX

    @property
    def prompt(self) -> Tensor:
        """(N, prompt_len) the tokens to condition on at inference."""
        return self.x[:, : self.prompt_len]

    @property
    def answer(self) -> Tensor:
        """(N, answer_len) the labelled answers."""
        return self.y[:, self.prompt_len - 1 :]


def _task(
    name: str, prompt: Tensor, answer: Tensor, vocab_size: int, special_tokens: dict[str, int]
) -> SyntheticTask:
    seq = torch.cat([prompt, answer], dim=1)  # (N, P + A)
    y = seq[:, 1:].clone()  # (N, P + A - 1)
    y[:, : prompt.shape[1] - 1] = IGNORE_INDEX
    return SyntheticTask(
        name=name,
        x=seq[:, :-1].contiguous(),  # (N, P + A - 1)
        y=y,
        vocab_size=vocab_size,
        prompt_len=prompt.shape[1],
        answer_len=answer.shape[1],
        special_tokens=special_tokens,
    )


def _sequence_task(
    name: str,
    transform: Callable[[Tensor], Tensor],
    n_samples: int,
    length: int,
    n_symbols: int,
    generator: torch.Generator | None,
) -> SyntheticTask:
    _check_int(name, "n_samples", n_samples, 1)
    _check_int(name, "length", length, 1)
    _check_int(name, "n_symbols", n_symbols, 2)
    sep = n_symbols
    symbols = torch.randint(n_symbols, (n_samples, length), generator=generator)  # (N, L)
    prompt = torch.cat([symbols, torch.full((n_samples, 1), sep)], dim=1)  # (N, L + 1)
    return _task(name, prompt, transform(symbols), n_symbols + 1, {"SEP": sep})


def copy_task(
    n_samples: int, length: int = 8, n_symbols: int = 10, generator: torch.Generator | None = None
) -> SyntheticTask:
    """Copy: ``a1 .. aL SEP`` -> ``a1 .. aL``.

    Symbols are drawn uniformly (with repeats) from ``0 .. n_symbols - 1``; ``SEP = n_symbols``;
    ``vocab_size = n_symbols + 1``; ``x`` and ``y`` have ``T = 2L`` columns, the last L scored.
    A model solves it by attending back exactly L + 1 positions: the first job of an induction
    head (Olsson et al., 2022, "In-context Learning and Induction Heads", §2).
    """
    return _sequence_task("copy_task", lambda s: s.clone(), n_samples, length, n_symbols, generator)


def reverse_task(
    n_samples: int, length: int = 8, n_symbols: int = 10, generator: torch.Generator | None = None
) -> SyntheticTask:
    """Reverse: ``a1 .. aL SEP`` -> ``aL .. a1``. Same layout and vocabulary as :func:`copy_task`."""
    return _sequence_task("reverse_task", lambda s: s.flip(1), n_samples, length, n_symbols, generator)


def sort_task(
    n_samples: int, length: int = 8, n_symbols: int = 10, generator: torch.Generator | None = None
) -> SyntheticTask:
    """Sort: ``a1 .. aL SEP`` -> the same symbols in ascending order (repeats kept).

    Same layout and vocabulary as :func:`copy_task`.
    """
    return _sequence_task(
        "sort_task", lambda s: s.sort(dim=1).values, n_samples, length, n_symbols, generator
    )


def kv_retrieval_task(
    n_samples: int,
    n_pairs: int = 4,
    n_keys: int = 16,
    n_values: int = 16,
    generator: torch.Generator | None = None,
) -> SyntheticTask:
    """Key-value retrieval: ``k1 v1 k2 v2 .. kn vn QUERY kq`` -> ``vq``.

    Keys are ids ``0 .. n_keys - 1`` (distinct within a sample), values are ids
    ``n_keys .. n_keys + n_values - 1`` (repeats allowed), ``QUERY = n_keys + n_values`` and
    ``vocab_size = n_keys + n_values + 1``. The queried key ``kq`` is one of the sample's n keys,
    chosen uniformly; the answer is the value stored next to it. ``x`` and ``y`` have ``T = 2n + 2``
    columns and only the last is scored. This is the associative-recall probe used to compare
    attention with recurrent and state-space models (Ba et al., 2016; Arora et al., 2023, "Zoology").
    """
    _check_int("kv_retrieval_task", "n_samples", n_samples, 1)
    _check_int("kv_retrieval_task", "n_pairs", n_pairs, 1)
    _check_int("kv_retrieval_task", "n_keys", n_keys, 1)
    _check_int("kv_retrieval_task", "n_values", n_values, 1)
    if n_pairs > n_keys:
        raise ValueError(
            f"kv_retrieval_task: n_pairs={n_pairs} must be <= n_keys={n_keys} (keys are distinct)"
        )
    query = n_keys + n_values
    keys = torch.rand(n_samples, n_keys, generator=generator).argsort(dim=1)[:, :n_pairs]  # (N, n) distinct
    values = n_keys + torch.randint(n_values, (n_samples, n_pairs), generator=generator)  # (N, n)
    which = torch.randint(n_pairs, (n_samples, 1), generator=generator)  # (N, 1)
    pairs = torch.stack([keys, values], dim=2).reshape(n_samples, 2 * n_pairs)  # (N, 2n) k1 v1 k2 v2 ..
    prompt = torch.cat(
        [pairs, torch.full((n_samples, 1), query), keys.gather(1, which)], dim=1
    )  # (N, 2n + 2)
    return _task("kv_retrieval_task", prompt, values.gather(1, which), query + 1, {"QUERY": query})


_MOD_OPS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "+": torch.add,
    "-": torch.sub,
    "*": torch.mul,
}


def modular_arithmetic_task(
    n_samples: int | None = None,
    p: int = 97,
    ops: Sequence[str] = ("+",),
    generator: torch.Generator | None = None,
) -> SyntheticTask:
    """Modular arithmetic: ``a op b =`` -> ``c`` with ``c = (a op b) mod p``, ``op`` in ``+ - *``.

    Numbers are ids ``0 .. p - 1``; the operators and ``=`` always get the same ids whatever
    ``ops`` you ask for: ``"+" = p``, ``"-" = p + 1``, ``"*" = p + 2``, ``"=" = p + 3``, and
    ``vocab_size = p + 4``. ``x = [a, op, b, =]`` and ``y = [-100, -100, -100, c]``.

    With ``n_samples=None`` you get the whole table, every ``(op, a, b)`` once in that nested
    order (``len(ops) * p * p`` rows; ``generator`` is unused): split it at random to reproduce
    grokking (Power et al., 2022, "Grokking: Generalization beyond Overfitting on Small
    Algorithmic Datasets", §2, p = 97). With an int, that many equations are sampled uniformly
    with replacement. ``p`` need not be prime for ``+ - *``.
    """
    _check_int("modular_arithmetic_task", "p", p, 2)
    ops = tuple(ops) if not isinstance(ops, str) else (ops,)
    unknown = [op for op in ops if op not in _MOD_OPS]
    if not ops or unknown or len(set(ops)) != len(ops):
        raise ValueError(
            f"modular_arithmetic_task: ops={ops!r} must be a non-empty tuple of distinct operators "
            f"from {tuple(_MOD_OPS)}"
        )
    op_ids = torch.tensor([p + list(_MOD_OPS).index(op) for op in ops])  # (n_ops,)
    if n_samples is None:
        which, a, b = torch.meshgrid(
            torch.arange(len(ops)), torch.arange(p), torch.arange(p), indexing="ij"
        )  # each (n_ops, p, p)
        which, a, b = which.reshape(-1), a.reshape(-1), b.reshape(-1)  # (N,) with N = n_ops * p * p
    else:
        _check_int("modular_arithmetic_task", "n_samples", n_samples, 1)
        which = torch.randint(len(ops), (n_samples,), generator=generator)  # (N,)
        a = torch.randint(p, (n_samples,), generator=generator)  # (N,)
        b = torch.randint(p, (n_samples,), generator=generator)  # (N,)
    c = torch.empty_like(a)  # (N,)
    for k, op in enumerate(ops):
        rows = which == k
        c[rows] = _MOD_OPS[op](a[rows], b[rows]).remainder(p)  # remainder is >= 0 for p > 0
    equals = p + 3
    prompt = torch.stack([a, op_ids[which], b, torch.full_like(a, equals)], dim=1)  # (N, 4)
    specials = {"+": p, "-": p + 1, "*": p + 2, "=": equals}
    return _task("modular_arithmetic_task", prompt, c[:, None], p + 4, specials)
