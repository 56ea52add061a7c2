"""shared.tokenizers (BPE): byte-level BPE learns the naive trainer's merges and round-trips any text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.checks.byte_pair_smith import reference_train_bpe
from shared.corpus import load_shakespeare
from shared.tokenizers import (
    GPT2_PATTERN,
    GPT4_PATTERN,
    BPETokenizer,
    merge_pair,
    pair_counts,
    train_bpe,
    train_bpe_naive,
)


@pytest.fixture(scope="module")
def sample() -> str:
    return load_shakespeare()[:40_000]


def test_pair_counts_and_merge_handle_overlaps():
    assert pair_counts([97, 97, 97]) == {(97, 97): 2}
    assert merge_pair([97, 97, 97], (97, 97), 256) == [256, 97]
    assert merge_pair([97, 97, 97, 97], (97, 97), 256) == [256, 256]
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]


def test_train_bpe_reproduces_the_worked_example():
    assert train_bpe("aaabdaaabac", 259, pattern=None) == {(97, 97): 256, (97, 98): 257, (256, 257): 258}


@pytest.mark.parametrize("pattern", [GPT2_PATTERN, GPT4_PATTERN, None])
def test_incremental_trainer_learns_exactly_the_naive_merges(sample, pattern):
    text = sample if pattern is not None else sample[:4000]
    fast = train_bpe(text, 400, pattern)
    assert list(fast.items()) == list(train_bpe_naive(text, 400, pattern).items())
    assert list(fast.items()) == list(reference_train_bpe(text, 400, pattern).items())


def test_training_stops_early_when_no_pair_is_left():
    assert train_bpe("ab", 1000, None) == {(97, 98): 256}
    assert train_bpe("", 300) == {}


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60))
def test_decode_inverts_encode_for_any_unicode_text(text):
    tok = _trained()
    assert tok.decode(tok.encode(text)) == text


_TOK: list[BPETokenizer] = []


def _trained() -> BPETokenizer:
    if not _TOK:
        _TOK.append(BPETokenizer.train(load_shakespeare()[:20_000], 330, special_tokens=["<|endoftext|>"]))
    return _TOK[0]


def test_special_tokens_are_single_ids_and_never_merged():
    tok = _trained()
    eot = tok.special_tokens["<|endoftext|>"]
    assert eot == 330 and len(tok) == 331
    ids = tok.encode("The end.<|endoftext|>Act I")
    assert ids.count(eot) == 1
    assert tok.decode(ids) == "The end.<|endoftext|>Act I"
    assert eot not in tok.encode("<|endoftext")


def test_encoding_compresses_english_and_uses_learned_tokens(sample):
    tok = BPETokenizer.train(sample, 512)
    held_out = load_shakespeare()[100_000:120_000]
    ids = tok.encode(held_out)
    assert len(held_out.encode("utf-8")) / len(ids) > 1.7  # 1.92 measured; raw bytes give 1.0
    assert max(ids) >= 256


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="vocab_size=100 must be an int >= 256"):
        train_bpe("abc", 100)
    with pytest.raises(ValueError, match="text must be a str"):
        train_bpe(b"abc", 300)
    with pytest.raises(ValueError, match="ids 256, 257"):
        BPETokenizer({(97, 98): 300})
    with pytest.raises(ValueError, match="not in the vocabulary"):
        _trained().decode([99999])
