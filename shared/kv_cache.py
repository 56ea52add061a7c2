"""The preallocated key/value cache that ``GPT.forward`` reads and extends during decoding."""

from __future__ import annotations

import torch

from shared.utils import is_int


class KVCache:
    """Preallocated per-layer key/value buffers for incremental decoding (Pope et al. 2022, §2).

    ``k[layer]`` and ``v[layer]`` have shape (B, nkv, max_len, hs). Keys are stored after RoPE, so
    they never need rotating again. ``length`` is the number of positions written so far;
    ``GPT.forward`` advances it. ``reset()`` rewinds to 0 without freeing memory.
    Size: 2 · n_layer · B · nkv · max_len · hs · bytes-per-element (see ``nbytes``).
    A sliding window is enforced by the attention mask; the cache still keeps every position
    (a rolling buffer that stores only the last W is project 09's exercise).
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_kv_head: int,
        max_len: int,
        head_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        for name, value in (
            ("n_layer", n_layer), ("batch_size", batch_size), ("n_kv_head", n_kv_head),
            ("max_len", max_len), ("head_dim", head_dim),
        ):
            if not is_int(value) or value < 1:
                raise ValueError(f"KVCache.{name}={value!r} must be a positive int")
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.length = 0

    @property
    def n_layer(self) -> int:
        return len(self.k)

    @property
    def batch_size(self) -> int:
        return self.k[0].size(0)

    @property
    def n_kv_head(self) -> int:
        return self.k[0].size(1)

    @property
    def max_len(self) -> int:
        return self.k[0].size(2)

    @property
    def head_dim(self) -> int:
        return self.k[0].size(3)

    def reset(self) -> None:
        """Forget everything written (the buffers are reused)."""
        self.length = 0

    def nbytes(self) -> int:
        """Bytes held by all the buffers."""
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, start_pos: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, nkv, T, hs) at positions [start_pos, start_pos + T) of ``layer``.

        Returns views of all keys and values up to start_pos + T: (B, nkv, start_pos + T, hs).
        """
        end = start_pos + k.size(2)
        self.k[layer][:, :, start_pos:end] = k
        self.v[layer][:, :, start_pos:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]
