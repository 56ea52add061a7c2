"""shared/pretrained.py: the cached Shakespeare base model of projects 14 and 15.

The real recipe takes about a minute, so these tests swap in a three-step recipe; the caching, hashing and
corruption handling are the same code paths.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

import shared.pretrained as pretrained
from shared.corpus import load_shakespeare


@pytest.fixture
def tiny_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained, "BASE_TRAIN", dataclasses.replace(pretrained.BASE_TRAIN, max_steps=3,
                                                                      warmup_steps=1, eval_interval=3,
                                                                      eval_iters=1, batch_size=4))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


def test_tokenizer_covers_the_corpus_printable_ascii_and_reserved_ids_at_the_end():
    tok = pretrained.base_tokenizer()
    assert set(load_shakespeare()) <= set(tok.chars)
    assert set("0123456789+=[]{}<>") <= set(tok.chars)
    assert tok.vocab_size == pretrained.BASE_CONFIG.vocab_size == 104
    assert tok.chars[-len(pretrained.RESERVED):] == list(pretrained.RESERVED)
    assert not set(pretrained.RESERVED) & set(load_shakespeare())  # never seen in pre-training


def test_first_call_trains_and_saves_then_later_calls_load_the_identical_model(tmp_path, tiny_recipe, capsys):
    model, tok = pretrained.load_base_model(cache_dir=tmp_path)
    assert "pre-training" in capsys.readouterr().out
    path = pretrained.base_checkpoint_path(tmp_path)
    assert path.is_file() and path.with_name(path.name + ".sha256").is_file()
    again, tok2 = pretrained.load_base_model(cache_dir=tmp_path)
    assert "loaded the base model" in capsys.readouterr().out
    assert tok2 == tok
    assert _same_weights(model, again)
    assert not again.training


def test_training_is_deterministic(tmp_path, tiny_recipe):
    a, _ = pretrained.load_base_model(cache_dir=tmp_path / "a", verbose=False)
    b, _ = pretrained.load_base_model(cache_dir=tmp_path / "b", verbose=False)
    assert _same_weights(a, b)


def test_changing_the_recipe_changes_the_cache_file(tmp_path, tiny_recipe, monkeypatch):
    first = pretrained.base_checkpoint_path(tmp_path)
    monkeypatch.setattr(pretrained, "BASE_TRAIN", dataclasses.replace(pretrained.BASE_TRAIN, lr=1e-3))
    assert pretrained.base_checkpoint_path(tmp_path) != first


def test_a_train_field_added_later_keeps_the_cache_key_at_its_default_and_changes_it_otherwise(monkeypatch):
    assert pretrained._recipe_hash() == "4bd652b6409f"  # the key of the model projects 14 and 15 measured
    constant = dataclasses.replace(pretrained.BASE_TRAIN, schedule="constant")
    monkeypatch.setattr(pretrained, "BASE_TRAIN", constant)
    assert pretrained._recipe_hash() != "4bd652b6409f"


def test_corrupted_cache_is_set_aside_and_retrained(tmp_path, tiny_recipe):
    model, _ = pretrained.load_base_model(cache_dir=tmp_path, verbose=False)
    path = pretrained.base_checkpoint_path(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="unusable"):
        again, _ = pretrained.load_base_model(cache_dir=tmp_path, verbose=False)
    assert path.with_name(path.name + ".corrupt").is_file()
    assert path.is_file()
    assert _same_weights(model, again)  # retrained with the same seed


def test_cache_without_checksum_is_not_trusted(tmp_path, tiny_recipe):
    pretrained.load_base_model(cache_dir=tmp_path, verbose=False)
    path = pretrained.base_checkpoint_path(tmp_path)
    os.remove(path.with_name(path.name + ".sha256"))
    with pytest.warns(UserWarning, match="unusable"):
        pretrained.load_base_model(cache_dir=tmp_path, verbose=False)


def test_bad_retrain_argument_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="retrain='yes' must be True or False"):
        pretrained.load_base_model(cache_dir=tmp_path, retrain="yes")


def test_pretraining_runs_on_one_thread_and_puts_the_callers_choice_back(tmp_path, tiny_recipe, monkeypatch):
    seen = []
    real_train = pretrained.train
    monkeypatch.setattr(pretrained, "train", lambda *a, **k: (seen.append(torch.get_num_threads()),
                                                              real_train(*a, **k))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pretrained.load_base_model(cache_dir=tmp_path, verbose=False)
        assert seen == [1]  # one thread: the same base model whatever the caller's setting
        assert torch.get_num_threads() == 2  # the caller's setting is back
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def tiny_corpus_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained, "CORPUS_TRAIN", dataclasses.replace(pretrained.CORPUS_TRAIN, max_steps=3,
                                                                        warmup_steps=1, eval_interval=3,
                                                                        eval_iters=1, batch_size=4))


def test_the_corpus_model_has_its_own_cache_file_tokenizer_and_thread_count(tmp_path, tiny_corpus_recipe,
                                                                             monkeypatch, capsys):
    seen = []
    real_train = pretrained.train
    monkeypatch.setattr(pretrained, "train", lambda *a, **k: (seen.append(torch.get_num_threads()),
                                                              real_train(*a, **k))[1])
    before = torch.get_num_threads()
    model, tok = pretrained.load_corpus_model(cache_dir=tmp_path)
    assert seen == [pretrained.CORPUS_THREADS] and torch.get_num_threads() == before
    assert "pre-training the corpus model" in capsys.readouterr().out
    path = pretrained.corpus_checkpoint_path(tmp_path)
    assert path.name.startswith("corpus_shakespeare_char_") and path.is_file()
    assert path != pretrained.base_checkpoint_path(tmp_path)
    assert tok == pretrained.base_tokenizer() and model.config == pretrained.CORPUS_CONFIG
    again, _ = pretrained.load_corpus_model(cache_dir=tmp_path)
    assert "loaded the corpus model" in capsys.readouterr().out
    assert _same_weights(model, again) and not again.training
    with pytest.raises(ValueError, match="load_corpus_model: retrain=1 must be True or False"):
        pretrained.load_corpus_model(cache_dir=tmp_path, retrain=1)


def test_the_corpus_recipe_is_the_stronger_model_and_its_key_covers_the_thread_count(monkeypatch):
    params = sum(p.numel() for p in pretrained.GPT(pretrained.CORPUS_CONFIG).parameters())
    base = sum(p.numel() for p in pretrained.GPT(pretrained.BASE_CONFIG).parameters())
    assert params > 2 * base
    key = pretrained._recipe_hash("corpus")
    assert key != pretrained._recipe_hash("base")
    monkeypatch.setattr(pretrained, "CORPUS_THREADS", 1)
    assert pretrained._recipe_hash("corpus") != key
