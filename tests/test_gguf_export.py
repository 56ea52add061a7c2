"""Tests for shared/gguf_export.py: GGUF export of the tiny GPT and reading it back."""

from __future__ import annotations

import dataclasses

import gguf
import numpy as np
import pytest
import torch

from shared.gguf_export import (
    ARCH,
    export_gguf,
    load_gguf_model,
    q8_0_error_bound,
    read_gguf,
)
from shared.model import GPT, GPTConfig

CFG = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, d_model=64)


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG).eval()


def _state(model: GPT) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items() if k != "lm_head.weight"}


def test_f32_export_reads_back_every_tensor_bit_for_bit_with_its_config(model, tmp_path):
    path = export_gguf(model, tmp_path / "m.gguf", quantize="f32")
    got = read_gguf(path)
    assert got.config == CFG
    assert got.quantize == "f32"
    assert got.metadata["general.architecture"] == ARCH
    assert got.metadata[f"{ARCH}.block_count"] == CFG.n_layer
    want = _state(model)
    assert set(got.tensors) == set(want)  # the tied lm_head is stored once, as the embedding
    for name, array in want.items():
        assert got.types[name] == "F32"
        np.testing.assert_array_equal(got.tensors[name], array)


def test_q8_0_export_quantizes_matrices_within_the_q8_0_bound_and_keeps_vectors_exact(model, tmp_path):
    got = read_gguf(export_gguf(model, tmp_path / "m.gguf", quantize="q8_0"))
    for name, array in _state(model).items():
        if array.ndim == 2:
            assert got.types[name] == "Q8_0", name
            err = np.abs(got.tensors[name] - array)
            assert (err <= q8_0_error_bound(array)).all(), name
            assert err.max() > 0  # really quantized
            assert got.nbytes[name] == array.size // 32 * 34  # 34 bytes per block of 32
        else:
            assert got.types[name] == "F32"
            np.testing.assert_array_equal(got.tensors[name], array)


def test_q8_0_matches_an_independent_numpy_q8_0_reference(model, tmp_path):
    w = model.state_dict()["transformer.h.0.mlp.c_fc.weight"].numpy()
    got = read_gguf(export_gguf(model, tmp_path / "m.gguf")).tensors["transformer.h.0.mlp.c_fc.weight"]
    blocks = w.reshape(-1, 32)
    d = np.abs(blocks).max(1, keepdims=True) / 127  # ggml rounds with the float32 scale ...
    q = np.round(blocks / d)  # (ggml rounds half away from zero; exact ties do not occur here)
    d16 = d.astype(np.float16).astype(np.float32)  # ... and stores it as float16
    np.testing.assert_allclose(got, (q * d16).reshape(w.shape), atol=1e-6)


def test_f16_export_halves_matrix_bytes_and_rounds_like_numpy_float16(model, tmp_path):
    got = read_gguf(export_gguf(model, tmp_path / "m.gguf", quantize="f16"))
    w = model.state_dict()["transformer.h.1.attn.c_attn.weight"].numpy()
    name = "transformer.h.1.attn.c_attn.weight"
    assert got.types[name] == "F16" and got.nbytes[name] == w.size * 2
    np.testing.assert_array_equal(got.tensors[name], w.astype(np.float16).astype(np.float32))


def test_file_sizes_shrink_from_f32_to_f16_to_q8_0(model, tmp_path):
    sizes = {q: export_gguf(model, tmp_path / f"{q}.gguf", quantize=q).stat().st_size
             for q in ("f32", "f16", "q8_0")}
    assert sizes["f32"] > sizes["f16"] > sizes["q8_0"]
    assert sizes["f32"] / sizes["q8_0"] > 3.0


def test_loaded_model_gives_the_same_logits_as_the_original(model, tmp_path):
    idx = torch.randint(0, CFG.vocab_size, (2, CFG.block_size), generator=torch.Generator().manual_seed(1))
    loaded = load_gguf_model(export_gguf(model, tmp_path / "m.gguf", quantize="f32"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx)[0], model(idx)[0], atol=0, rtol=0)
    q8 = load_gguf_model(export_gguf(model, tmp_path / "q.gguf", quantize="q8_0"))
    with torch.no_grad():
        torch.testing.assert_close(q8(idx)[0], model(idx)[0], atol=2e-2, rtol=0)


def test_untied_model_stores_its_output_matrix(tmp_path):
    cfg = dataclasses.replace(CFG, tie_embeddings=False, pos_encoding="rope")
    m = GPT(cfg)
    got = read_gguf(export_gguf(m, tmp_path / "u.gguf", quantize="f32"))
    assert "lm_head.weight" in got.tensors and got.config == cfg
    np.testing.assert_array_equal(got.tensors["lm_head.weight"], m.lm_head.weight.detach().numpy())


def test_the_file_is_readable_by_gguf_reader_directly(model, tmp_path):
    reader = gguf.GGUFReader(export_gguf(model, tmp_path / "m.gguf"))
    assert len(reader.tensors) == len(_state(model))


def test_export_overwrites_atomically_and_leaves_no_temporary_files(model, tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"old")
    export_gguf(model, path, quantize="f16")
    assert read_gguf(path).quantize == "f16"
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantize": "q4_0"}, "quantize='q4_0' is not one of"),
        ({"path_name": "m.bin"}, "must end in '.gguf'"),
        ({"path_name": "missing/m.gguf"}, "does not exist"),
    ],
)
def test_export_rejects_bad_arguments_with_a_clear_message(model, tmp_path, kwargs, message):
    path = tmp_path / kwargs.pop("path_name", "m.gguf")
    with pytest.raises(ValueError, match=message):
        export_gguf(model, path, **kwargs)


def test_export_rejects_a_model_that_is_not_a_gpt(tmp_path):
    with pytest.raises(ValueError, match="must be a shared.model.GPT"):
        export_gguf(torch.nn.Linear(2, 2), tmp_path / "m.gguf")  # type: ignore[arg-type]


def test_export_rejects_non_finite_weights(tmp_path):
    m = GPT(CFG)
    with torch.no_grad():
        m.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        export_gguf(m, tmp_path / "m.gguf")
    assert list(tmp_path.iterdir()) == []


def test_read_rejects_missing_files_non_gguf_files_and_foreign_gguf_files(tmp_path):
    with pytest.raises(ValueError, match="no file"):
        read_gguf(tmp_path / "nope.gguf")
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 not gguf")
    with pytest.raises(ValueError, match="is not a GGUF file"):
        read_gguf(tmp_path / "x.gguf")
    writer = gguf.GGUFWriter(tmp_path / "llama.gguf", "llama")
    writer.add_tensor("w", np.zeros((2, 2), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="not written by shared.gguf_export"):
        read_gguf(tmp_path / "llama.gguf")


def test_q8_0_error_bound_rejects_rows_that_are_not_whole_blocks():
    with pytest.raises(ValueError, match="multiple of 32"):
        q8_0_error_bound(np.zeros((2, 33), np.float32))
