"""Export the tiny GPT to GGUF (llama.cpp's file format) and read it back, with the ``gguf`` package.

GGUF (Gerganov et al., github.com/ggml-org/ggml, ``docs/gguf.md``) is one file: a header, typed
key-value metadata, tensor descriptions (name, shape, type, offset) and the tensor data, aligned so
that it can be memory-mapped. Tensors may be stored block-quantized. Here three storage types are
offered:

==========  ========================================================================================
``f32``     every tensor as float32: read back bit for bit
``f16``     matrices as float16, vectors (biases, norm gains) as float32
``q8_0``    matrices whose rows hold a multiple of 32 values as Q8_0 blocks, everything else float32.
            A Q8_0 block is 32 values ``x`` stored as one float16 scale ``d = max|x| / 127`` and 32
            int8 ``q = round(x / d)``: 34 bytes instead of 128 (8.5 bits per weight). Dequantized,
            ``|x - q·d| <= d/2`` plus the float16 rounding of ``d`` (``<= 127·d·2^-11``), see
            :func:`q8_0_error_bound`.
==========  ========================================================================================

The quantization itself is ``gguf.quants.quantize`` (the package's NumPy port of ggml's reference
``quantize_row_q8_0``), so the file is what llama.cpp would write. Tensor names are the GPT's own
state-dict names (``transformer.h.0.attn.c_attn.weight`` …); a tied ``lm_head.weight`` is not
stored twice. The model's :class:`~shared.model.GPTConfig` goes into the metadata as JSON under
``hardway.config`` next to the standard ``general.architecture`` and ``<arch>.*`` size keys, so
:func:`load_gguf_model` can rebuild the model from the file alone.

Files are written atomically: to a temporary file in the same directory, then ``os.replace``.

    path = export_gguf(model, "tiny.gguf", quantize="q8_0")
    contents = read_gguf(path)          # GGUFContents: tensors (dequantized float32), types, config
    model2 = load_gguf_model(path)      # a GPT with those weights
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from shared.model import GPT, GPTConfig
from shared.utils import atomic_path

__all__ = [
    "ARCH",
    "QUANT_TYPES",
    "GGUFContents",
    "export_gguf",
    "read_gguf",
    "load_gguf_model",
    "q8_0_error_bound",
]

ARCH = "hardway-gpt"  # general.architecture of the files written here
QUANT_TYPES = ("f32", "f16", "q8_0")
Q8_0_BLOCK = 32  # values per Q8_0 block (ggml's QK8_0)
_QT = gguf.GGMLQuantizationType


@dataclass
class GGUFContents:
    """What :func:`read_gguf` found in a file.

    ``tensors``: name -> float32 array in the model's shape (Q8_0 and F16 dequantized); ``types``:
    name -> GGML type name ("F32", "F16", "Q8_0"); ``nbytes``: name -> bytes the tensor occupies in
    the file; ``config``: the stored GPTConfig; ``metadata``: every other key-value pair;
    ``quantize``: the storage type asked for at export.
    """

    tensors: dict[str, np.ndarray]
    types: dict[str, str]
    nbytes: dict[str, int]
    config: GPTConfig
    quantize: str
    metadata: dict[str, Any] = field(default_factory=dict)


def q8_0_error_bound(x: np.ndarray) -> np.ndarray:
    """Per-element bound on ``|x - dequantize(quantize_q8_0(x))|`` for ``x`` (..., K), K % 32 == 0.

    Each block of 32 has scale d = max|x|/127. Rounding to the grid costs at most d/2; storing d in
    float16 (relative error <= 2^-11) moves a code q (|q| <= 127) by at most 127·d·2^-11. A small
    absolute slack covers float32 arithmetic.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] % Q8_0_BLOCK != 0:
        raise ValueError(f"q8_0_error_bound: last dim {x.shape[-1]} must be a multiple of {Q8_0_BLOCK}")
    blocks = x.reshape(*x.shape[:-1], -1, Q8_0_BLOCK)  # (..., K/32, 32)
    d = np.abs(blocks).max(axis=-1, keepdims=True) / 127.0  # (..., K/32, 1)
    bound = d * (0.5 + 127.0 * 2.0**-11) + 1e-7  # (..., K/32, 1)
    return np.broadcast_to(bound, blocks.shape).reshape(x.shape)


def _storage_type(name: str, array: np.ndarray, quantize: str) -> gguf.GGMLQuantizationType:
    if quantize == "f32" or array.ndim < 2:
        return _QT.F32
    if quantize == "f16":
        return _QT.F16
    return _QT.Q8_0 if array.shape[-1] % Q8_0_BLOCK == 0 else _QT.F32


def _tensors_to_store(model: GPT) -> dict[str, np.ndarray]:
    state = model.state_dict()
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)  # the same matrix as transformer.wte.weight
    out = {}
    for name, t in state.items():
        if not t.is_floating_point():
            raise ValueError(
                f"export_gguf: tensor {name!r} has dtype {t.dtype}; only float tensors are exported"
            )
        out[name] = t.detach().to("cpu", torch.float32).contiguous().numpy()
    return out


def export_gguf(model: GPT, path: str | os.PathLike[str], quantize: str = "q8_0") -> Path:
    """Write ``model`` (weights + config) to the GGUF file ``path`` and return its path.

    ``quantize`` is one of :data:`QUANT_TYPES` ("f32", "f16", "q8_0"; see the module docstring for
    which tensors each one quantizes). ``path`` must end in ``.gguf`` and its folder must exist.
    Raises ValueError for a model that is not a :class:`~shared.model.GPT`, an unknown ``quantize``,
    a wrong suffix, a missing folder, or a non-float or non-finite tensor.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"export_gguf: model must be a shared.model.GPT, got {type(model).__name__}")
    if quantize not in QUANT_TYPES:
        raise ValueError(f"export_gguf: quantize={quantize!r} is not one of {QUANT_TYPES}")
    path = Path(path)
    if path.suffix != ".gguf":
        raise ValueError(f"export_gguf: path {str(path)!r} must end in '.gguf'")
    if not path.parent.is_dir():
        raise ValueError(f"export_gguf: folder {str(path.parent)!r} does not exist")
    tensors = _tensors_to_store(model)
    for name, array in tensors.items():
        if not np.isfinite(array).all():
            raise ValueError(f"export_gguf: tensor {name!r} holds NaN or inf; refusing to export it")

    cfg = model.config
    with atomic_path(path) as tmp:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_name("llm-hard-way tiny GPT")
        writer.add_context_length(cfg.block_size)
        writer.add_embedding_length(cfg.d_model)
        writer.add_block_count(cfg.n_layer)
        writer.add_feed_forward_length(cfg.ff_dim)
        writer.add_head_count(cfg.n_head)
        writer.add_head_count_kv(cfg.kv_heads)
        writer.add_vocab_size(cfg.vocab_size)
        writer.add_string("hardway.config", json.dumps(dataclasses.asdict(cfg), sort_keys=True))
        writer.add_string("hardway.quantize", quantize)
        for name, array in tensors.items():
            qtype = _storage_type(name, array, quantize)
            if qtype == _QT.F32:
                writer.add_tensor(name, array)
            elif qtype == _QT.F16:
                writer.add_tensor(name, array.astype(np.float16))
            else:
                packed = gguf.quants.quantize(array, qtype)  # (..., K/32 · 34) uint8
                writer.add_tensor(name, packed, raw_shape=packed.shape, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def _field_value(f: Any) -> Any:
    if hasattr(f, "contents"):
        return f.contents()
    return f.parts[f.data[0]].tolist()  # older gguf: scalar fields only


def read_gguf(path: str | os.PathLike[str]) -> GGUFContents:
    """Read a file written by :func:`export_gguf`: tensors dequantized to float32 in the model's shapes.

    Raises ValueError when the file does not exist, is not GGUF, or was not written by
    :func:`export_gguf` (no ``hardway.config`` metadata).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"read_gguf: no file at {str(path)!r}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"read_gguf: {str(path)!r} is not a GGUF file (magic {magic!r}, expected b'GGUF')")
    reader = gguf.GGUFReader(path)
    metadata = {name: _field_value(f) for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    if metadata.get("general.architecture") != ARCH or "hardway.config" not in metadata:
        raise ValueError(
            f"read_gguf: {str(path)!r} was not written by shared.gguf_export.export_gguf "
            f"(general.architecture={metadata.get('general.architecture')!r}, expected {ARCH!r})"
        )
    config = GPTConfig(**json.loads(metadata.pop("hardway.config")))
    quantize = metadata.pop("hardway.quantize", "unknown")
    tensors, types, nbytes = {}, {}, {}
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))  # GGUF lists dims fastest-first
        qtype = _QT(int(t.tensor_type))
        if qtype == _QT.F32:
            array = np.array(t.data, dtype=np.float32)
        elif qtype == _QT.F16:
            array = np.array(t.data, dtype=np.float16).astype(np.float32)
        elif qtype == _QT.Q8_0:
            array = gguf.quants.dequantize(np.array(t.data), qtype).astype(np.float32)
        else:
            raise ValueError(f"read_gguf: tensor {t.name!r} has type {qtype.name}, not F32, F16 or Q8_0")
        tensors[t.name] = array.reshape(shape)
        types[t.name] = qtype.name
        nbytes[t.name] = int(t.n_bytes)
    return GGUFContents(tensors, types, nbytes, config, quantize, metadata)


def load_gguf_model(path: str | os.PathLike[str]) -> GPT:
    """A :class:`~shared.model.GPT` built from the config stored in ``path``, holding its (dequantized)
    weights."""
    contents = read_gguf(path)
    model = GPT(contents.config)
    state = {name: torch.from_numpy(array.copy()) for name, array in contents.tensors.items()}
    if contents.config.tie_embeddings:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ValueError(
            f"load_gguf_model: tensors missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    model.load_state_dict(state)
    return model.eval()
