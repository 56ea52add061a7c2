"""Tests for shared/checks/byte_pair_smith.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source. Plus the reference implementations themselves, and a hypothesis round-trip
property over arbitrary Unicode on the solution tokenizer.
"""

from __future__ import annotations

import pytest
from check_helpers import fails, solution_loader, stub
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.checks import TodoNotDone
from shared.checks.byte_pair_smith import (
    CHECK_PARAGRAPH,
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    HAND_IDS,
    HAND_MERGES,
    HAND_TEXT,
    NASTY_STRINGS,
    check_decode,
    check_encode,
    check_get_stats,
    check_merge,
    check_split_text,
    check_train_bpe,
    reference_build_vocab,
    reference_decode,
    reference_encode,
    reference_get_stats,
    reference_merge,
    reference_split_text,
    reference_train_bpe,
)

solution = solution_loader("01_byte_pair_smith")
TOKENIZER_FUNCTIONS = ["get_stats", "merge", "train_bpe", "encode", "build_vocab", "decode", "split_text"]


# ----------------------------------------------------------------------------------------------- references


def test_reference_hand_example_gives_wikipedias_three_merges_and_XdXac():
    assert reference_train_bpe(HAND_TEXT, 259) == HAND_MERGES
    assert reference_encode(HAND_TEXT, HAND_MERGES) == HAND_IDS
    assert reference_decode(HAND_IDS, reference_build_vocab(HAND_MERGES)) == HAND_TEXT


def test_reference_get_stats_counts_overlaps_and_merge_does_not():
    assert reference_get_stats([97, 97, 97]) == {(97, 97): 2}
    assert reference_merge([97, 97, 97], (97, 97), 256) == [256, 97]
    assert reference_merge([97, 97, 97, 97], (97, 97), 256) == [256, 256]


def test_reference_train_bpe_breaks_ties_by_smallest_pair_and_stops_when_no_pair_is_left():
    # "dcba dcba": (d,c), (c,b), (b,a) all occur twice; the smallest pair (b, a) = (98, 97) wins.
    first = next(iter(reference_train_bpe("dcba dcba", 257)))
    assert first == (98, 97)
    assert reference_train_bpe("ab", 400) == {(97, 98): 256}


def test_reference_encode_in_rank_order_equals_lowest_rank_first_loop():
    merges = reference_train_bpe(CHECK_PARAGRAPH, 256 + 80, None)
    encode = solution("encode", "get_stats", "merge")["encode"]
    for text in [CHECK_PARAGRAPH, *NASTY_STRINGS]:
        assert reference_encode(text, merges) == encode(text, merges)


def test_reference_split_text_keeps_specials_whole_and_joins_back_to_the_text():
    text = "a<|endoftext|><|endoftext|> b  c\n\n"
    chunks = reference_split_text(text, ["<|endoftext|>"])
    assert chunks[:3] == ["a", "<|endoftext|>", "<|endoftext|>"]
    assert "".join(chunks) == text
    import regex

    assert reference_split_text("I'll go", (),
                                GPT2_SPLIT_PATTERN) == regex.findall(GPT2_SPLIT_PATTERN, "I'll go")


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_get_stats_passes_on_solution_and_prints_what_it_compared(capsys):
    assert check_get_stats(solution("get_stats")) is None
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 1 get_stats: ")
    assert "aaabdaaabac" in out


def test_check_get_stats_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(get_stats\\) is not done yet"):
        check_get_stats(stub(1))


def test_check_get_stats_rejects_a_non_dict_result():
    fails(check_get_stats, lambda ids, counts=None: list(zip(ids, ids[1:], strict=False)), "not a dict")


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_merge_passes_on_solution(capsys):
    check_merge(solution("merge"))
    assert capsys.readouterr().out.startswith("✅ TODO 2 merge: 'aaa' -> [X, a]")


def test_check_merge_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2 \\(merge\\) is not done yet"):
        check_merge(stub(2))


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_train_bpe_passes_on_solution(capsys):
    fns = solution("get_stats", "merge", "train_bpe")
    check_train_bpe(fns["train_bpe"])
    assert capsys.readouterr().out.startswith("✅ TODO 3 train_bpe: 'aaabdaaabac' gives Z=aa, Y=ab")


def test_check_train_bpe_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(train_bpe\\) is not done yet"):
        check_train_bpe(stub(3))


def test_check_train_bpe_names_the_unfinished_todo_it_builds_on():
    fns = solution("train_bpe", "merge")  # get_stats missing from the namespace: give it the stub
    fns["train_bpe"].__globals__["get_stats"] = stub(1)
    with pytest.raises(TodoNotDone, match="uses TODO 1"):
        check_train_bpe(fns["train_bpe"])


def test_check_train_bpe_catches_a_naive_trainer_that_breaks_ties_by_first_seen():
    get_stats, merge = solution("get_stats", "merge").values()
    import collections

    import regex

    # a plausible learner version: max(counts, key=counts.get)
    def first_seen(text, vocab_size, split_pattern=None):
        chunks = collections.Counter([text] if split_pattern is None else regex.findall(split_pattern, text))
        words, freqs = [list(w.encode()) for w in chunks], list(chunks.values())
        merges = {}
        for new_id in range(256, vocab_size):
            counts = {}
            for ids, f in zip(words, freqs, strict=True):
                for p, n in get_stats(ids).items():
                    counts[p] = counts.get(p, 0) + n * f
            if not counts:
                break
            pair = max(counts, key=counts.get)
            merges[pair] = new_id
            words = [merge(ids, pair, new_id) for ids in words]
        return merges

    fails(check_train_bpe, first_seen, "tied at count 2")


def test_solution_train_bpe_matches_the_recount_reference_on_real_shakespeare():
    from shared.corpus import load_shakespeare

    text = load_shakespeare()[:8_000]
    train_bpe = solution("get_stats", "merge", "train_bpe")["train_bpe"]
    assert train_bpe(text, 256 + 120,
                     GPT4_SPLIT_PATTERN) == reference_train_bpe(text, 256 + 120, GPT4_SPLIT_PATTERN)


def test_solution_train_bpe_rejects_a_vocab_smaller_than_the_bytes():
    train_bpe = solution("get_stats", "merge", "train_bpe")["train_bpe"]
    with pytest.raises(ValueError, match="vocab_size=100 must be >= 256"):
        train_bpe("abc", 100)


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_encode_passes_on_solution(capsys):
    check_encode(solution("get_stats", "merge", "encode")["encode"])
    assert capsys.readouterr().out.startswith("✅ TODO 4 encode: 'aaabdaaabac' -> X d X a c")


def test_check_encode_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4 \\(encode\\) is not done yet"):
        check_encode(stub(4))


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_decode_passes_on_solution(capsys):
    check_decode(solution("decode"))
    assert capsys.readouterr().out.startswith("✅ TODO 5 decode: X d X a c -> 'aaabdaaabac'")


def test_check_decode_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5 \\(decode\\) is not done yet"):
        check_decode(stub(5))


# ----------------------------------------------------------------------------------------------- TODO 6


def test_check_split_text_passes_on_solution(capsys):
    check_split_text(solution("split_text"))
    assert capsys.readouterr().out.startswith("✅ TODO 6 split_text: ")


def test_check_split_text_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 6 \\(split_text\\) is not done yet"):
        check_split_text(stub(6))


# ----------------------------------------------------------------------------------------------- property


@pytest.fixture(scope="module")
def tokenizer():
    """The solution's functions composed as the notebook's Tokenizer does,
    trained on a small multilingual text."""
    fns = solution(*TOKENIZER_FUNCTIONS)
    text = CHECK_PARAGRAPH * 3 + "".join(NASTY_STRINGS) * 4 + "안녕하세요 세계 こんにちは 你好 नमस्ते " * 10
    merges = fns["train_bpe"](text, 256 + 200, GPT4_SPLIT_PATTERN)
    specials = {"<|endoftext|>": 256 + len(merges)}
    vocab = fns["build_vocab"](merges, specials)

    def encode(s: str) -> list[int]:
        ids: list[int] = []
        for chunk in fns["split_text"](s, specials, GPT4_SPLIT_PATTERN):
            ids.extend([specials[chunk]] if chunk in specials else fns["encode"](chunk, merges))
        return ids

    return encode, lambda ids: fns["decode"](ids, vocab), specials


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_solution_tokenizer_round_trips_any_unicode_string(tokenizer, s):
    encode, decode, _ = tokenizer
    assert decode(encode(s)) == s


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=12), st.just("<|endoftext|>")), max_size=6))
def test_solution_tokenizer_maps_each_special_token_to_its_own_id_and_round_trips(tokenizer, parts):
    encode, decode, specials = tokenizer
    s = "".join(parts)
    ids = encode(s)
    assert decode(ids) == s
    assert ids.count(specials["<|endoftext|>"]) == s.count("<|endoftext|>")


def test_solution_tokenizer_compresses_its_training_languages(tokenizer):
    encode, _, _ = tokenizer
    text = "안녕하세요 세계 こんにちは 你好 नमस्ते"
    assert len(encode(text)) < len(text.encode("utf-8")) / 2
