"""Checks for project 01 (byte-pair encoding): one check per TODO of ``01_byte_pair_smith/solution.ipynb``.

Each check compares the learner's function against three things: hand-worked examples (Wikipedia's
"aaabdaaabac" from Gage, 1994), the plain reference implementations below (written for clarity, not
speed: training recounts every pair before every merge), and properties (``decode(encode(s)) == s``
over nasty strings; the chunks of the pre-tokenizer join back to the text).

Tie rule used everywhere (so that training is deterministic): the pair with the highest count wins;
among equal counts, the smallest pair in lexicographic order of ids wins, i.e.
``min(counts, key=lambda p: (-counts[p], p))``.

References: Gage (1994), "A New Algorithm for Data Compression", C Users Journal; Sennrich, Haddow &
Birch (2016), "Neural Machine Translation of Rare Words with Subword Units", ACL, §3.2; Radford et al.
(2019), "Language Models are Unsupervised Multitask Learners", §2.2 (byte-level BPE and the regex
pre-tokenizer).
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Iterable

import regex

from shared.checks import CheckFailed, call, expect, expect_equal, fmt, hint_on_crash, learner_check
from shared.tokenizers import GPT2_PATTERN, GPT4_PATTERN, merge_pair

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "NASTY_STRINGS",
    "HAND_TEXT",
    "HAND_MERGES",
    "reference_get_stats",
    "reference_merge",
    "reference_train_bpe",
    "reference_encode",
    "reference_build_vocab",
    "reference_decode",
    "reference_split_text",
    "check_get_stats",
    "check_merge",
    "check_train_bpe",
    "check_encode",
    "check_decode",
    "check_split_text",
]

Pair = tuple[int, int]

# The pre-tokenizers of GPT-2 (Radford et al., 2019, §2.2) and GPT-4's cl100k_base, from shared.tokenizers.
GPT2_SPLIT_PATTERN = GPT2_PATTERN
GPT4_SPLIT_PATTERN = GPT4_PATTERN

# Wikipedia's worked example of byte-pair encoding: aaabdaaabac -> ZabdZabac -> ZYdZYac -> XdXac.
HAND_TEXT = "aaabdaaabac"
HAND_MERGES: dict[Pair, int] = {(97, 97): 256, (97, 98): 257, (256, 257): 258}  # Z=aa, Y=ab, X=ZY
HAND_IDS = [258, 100, 258, 97, 99]  # X d X a c

# Strings that break careless tokenizers: empty, one byte, NUL, control whitespace, combining marks,
# multi-byte scripts, astral-plane characters, emoji ZWJ sequences and flags, a right-to-left script.
NASTY_STRINGS = [
    "",
    "a",
    "aaa",
    "\x00",
    " \t\r\n  \n\n",
    "hello world",
    "안녕하세요 👋 (Korean: hello)",
    "e\u0301 vs \u00e9, n\u0303, Z\u0324\u0354\u0367\u0311\u0313",
    "👩🏽‍💻 👨‍👩‍👧‍👦 🇯🇵 🏳️‍🌈",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 \U0001f600",
    "中文、日本語、한국어、हिन्दी、العربية",
    "I'll don't WE'VE it's 'tis 123456 3.14",
    "\ufeffBOM and \u200bzero-width\u200d joiners",
]

# A short English paragraph to train and encode on in the checks (written for this module).
CHECK_PARAGRAPH = (
    "The tokenizer reads bytes, not words. It counts every pair of neighbouring tokens, merges the most "
    "frequent pair into a new token, and repeats. After a few hundred merges the common words are single "
    "tokens: the, and, of, to. Rare words stay in pieces, and nothing is ever unknown, because every string "
    "is a sequence of bytes. Isn't that neat? It's 2024; we've 1,000,000 reasons.\n    def merge(ids, pair, "
    "new_id):  # the heart of it\n        return ids\n"
)


# ----------------------------------------------------------------------------------------------
# Plain references (clarity over speed)


def reference_get_stats(ids: list[int]) -> dict[Pair, int]:
    """Count every adjacent pair, overlapping ones included ("aaa" holds (a, a) twice)."""
    counts: dict[Pair, int] = {}
    for i in range(len(ids) - 1):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts


reference_merge = merge_pair  # non-overlapping, left to right ("aaa" -> [X, a])


def _chunks(text: str, split_pattern: str | None) -> list[str]:
    return [text] if split_pattern is None else regex.findall(split_pattern, text)


def _unordered_stats(ids: list[int]) -> dict[Pair, int]:
    """The pair counts of a learner who sorts each pair, so that (b, a) counts as (a, b)."""
    counts: dict[Pair, int] = {}
    for a, b in zip(ids, ids[1:], strict=False):
        pair = (min(a, b), max(a, b))
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def _smallest_best(counts: dict[Pair, int]) -> Pair:
    return min(counts, key=lambda p: (-counts[p], p))


def _naive_bpe(
    word_freqs: dict[str, int], vocab_size: int, pick: Callable[[dict[Pair, int]], Pair] = _smallest_best
) -> dict[Pair, int]:
    words = [list(w.encode("utf-8")) for w in word_freqs]
    freqs = list(word_freqs.values())
    merges: dict[Pair, int] = {}
    for new_id in range(256, vocab_size):
        counts: dict[Pair, int] = {}
        for ids, freq in zip(words, freqs, strict=True):
            for pair, n in reference_get_stats(ids).items():
                counts[pair] = counts.get(pair, 0) + n * freq
        if not counts:
            break
        pair = pick(counts)
        merges[pair] = new_id
        words = [reference_merge(ids, pair, new_id) for ids in words]
    return merges


def _counts_after(word_freqs: dict[str, int], merges: list[tuple[Pair, int]]) -> dict[Pair, int]:
    """Pair counts over the whole text after applying ``merges`` (what training sees at that step)."""
    counts: dict[Pair, int] = {}
    for word, freq in word_freqs.items():
        ids = list(word.encode("utf-8"))
        for pair, new_id in merges:
            ids = reference_merge(ids, pair, new_id)
        for pair, n in reference_get_stats(ids).items():
            counts[pair] = counts.get(pair, 0) + n * freq
    return counts


def reference_train_bpe(text: str, vocab_size: int, split_pattern: str | None = None) -> dict[Pair, int]:
    """Plain byte-level BPE: before every merge, recount every pair in every distinct chunk.

    ``split_pattern=None`` treats the whole text as one sequence. Returns ``{pair: new_id}`` in the
    order learned (new ids 256, 257, ...); stops early when no pair is left.
    """
    return _naive_bpe(collections.Counter(_chunks(text, split_pattern)), vocab_size)


def reference_encode(text: str, merges: dict[Pair, int]) -> list[int]:
    """Apply every merge, in the order learned, to the whole byte sequence.

    Equivalent to "repeatedly merge the lowest-rank pair present": a merge can only create pairs
    involving its new token, and every merge that uses that token was learned later.
    """
    ids = list(text.encode("utf-8"))
    for pair, new_id in sorted(merges.items(), key=lambda kv: kv[1]):
        ids = reference_merge(ids, pair, new_id)
    return ids


def reference_build_vocab(merges: dict[Pair, int]) -> dict[int, bytes]:
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in sorted(merges.items(), key=lambda kv: kv[1]):
        vocab[new_id] = vocab[a] + vocab[b]
    return vocab


def reference_decode(ids: list[int], vocab: dict[int, bytes]) -> str:
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


def reference_split_text(text: str, special_tokens: Iterable[str] = (),
                         pattern: str = GPT4_SPLIT_PATTERN) -> list[str]:
    specials = set(special_tokens)
    out: list[str] = []
    start = 0
    i = 0
    ordered = sorted(specials, key=len, reverse=True)
    while i < len(text):  # scan for the earliest (then longest) special token by hand
        hit = next((s for s in ordered if s and text.startswith(s, i)), None)
        if hit is None:
            i += 1
            continue
        out.extend(regex.findall(pattern, text[start:i]))
        out.append(hit)
        i += len(hit)
        start = i
    out.extend(regex.findall(pattern, text[start:]))
    return out


# ----------------------------------------------------------------------------------------------
# Helpers for readable messages


def _show(ids: Iterable[int], vocab: dict[int, bytes] | None = None) -> str:
    """Token ids with the bytes each stands for: [256='aa', 97='a']."""
    vocab = vocab or {}
    parts = []
    for i in ids:
        b = vocab.get(i, bytes([i]) if isinstance(i, int) and 0 <= i < 256 else None)
        parts.append(f"{i}={b.decode('utf-8', 'backslashreplace')!r}" if b is not None else str(i))
    return "[" + ", ".join(parts) + "]"


def _first_difference(got: list, expected: list) -> int:
    for k, (g, e) in enumerate(zip(got, expected, strict=False)):
        if g != e:
            return k
    return min(len(got), len(expected))


def _synthetic_text(n_words: int = 1500, seed: int = 0) -> str:
    """Zipf-distributed words from a small alphabet: many repeats, many ties, overlapping pairs."""
    rng = random.Random(seed)
    vocab = ["the", "a", "aa", "aaa", "banana", "bandana", "nab", "ab", "ba", "an", "nana", "cab", "abba",
             "baba", "aab", "caan", "nan", "bab", "cabana", "ananas"]
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    words = rng.choices(vocab, weights=weights, k=n_words)
    seps = rng.choices([" ", " ", " ", ", ", ".\n", "  "], k=n_words)
    return "".join(w + s for w, s in zip(words, seps, strict=True))


# ----------------------------------------------------------------------------------------------
# TODO 1: get_stats


@learner_check(todo=1, name="get_stats")
def check_get_stats(get_stats: Callable) -> str:
    """``get_stats(ids, counts=None)`` counts adjacent pairs and accumulates into ``counts``."""
    hand = list(HAND_TEXT.encode())
    with hint_on_crash("ids[i + 1] does not exist for the last i (IndexError): loop i over "
                       "range(len(ids) - 1), or walk zip(ids, ids[1:])"):
        got = call(get_stats, hand)
    expect(isinstance(got, dict), f"get_stats({hand}) returned {type(got).__name__}, not a dict",
           hint="return a dict {(a, b): count}")
    expected = {(97, 97): 4, (97, 98): 2, (98, 100): 1, (100, 97): 1, (98, 97): 1, (97, 99): 1}
    if got != expected:
        missing_last = reference_get_stats(hand[:-1]) == got
        missed_overlaps = got.get((97, 97)) == 2
        hint = "zip(ids, ids[1:]) gives every neighbouring pair (ids[i], ids[i + 1])"
        if missing_last:
            hint = ("the last pair (ids[-2], ids[-1]) is missing: loop i over "
                    "range(len(ids) - 1), not len(ids) - 2")
        elif got and set(got) == set(expected) and set(got.values()) == {1}:
            hint = ("every count is 1: add one to the count so far, counts[pair] = counts.get(pair, 0) + 1, "
                    "instead of setting it to 1")
        elif got == _unordered_stats(hand):
            hint = ("order matters: (a, b) and (b, a) are different pairs (a then b is not b then a); "
                    "count each pair as it appears, without sorting it")
        elif missed_overlaps:
            hint = "'aaab' holds the pair (a, a) twice (positions 0-1 and 1-2): count overlapping pairs too"
        expect_equal(got, expected, f"get_stats on 'aaabdaaabac' = {hand}", hint)
    for ids in ([], [7], [1, 2], [5, 5, 5, 5], [1, 2, 1, 2, 1], list("안녕 🙂".encode())):
        got = call(get_stats, list(ids))
        hint = "an empty or one-item list has no pairs; otherwise every neighbouring pair counts"
        if isinstance(got, dict) and set(got) - set(reference_get_stats(ids)):
            hint = ("pairs from a previous call are still there: a mutable default argument (counts={}) is "
                    "made once and shared by every call; default to None and make a new dict inside")
        expect_equal(got, reference_get_stats(ids), f"get_stats({ids})", hint)
    running = {(1, 2): 5, (9, 9): 1}
    before = list(running.items())
    out = call(get_stats, [1, 2, 3], running)
    expect(out is running,
           "get_stats([1, 2, 3], counts) returned a new dict instead of the `counts` it was given",
           hint="when `counts` is given, add to it in place and return that same dict "
                "(training counts pairs across many chunks this way)")
    expect_equal(dict(out), {(1, 2): 6, (9, 9): 1, (2, 3): 1},
                 f"get_stats([1, 2, 3], counts={dict(before)})",
                 "add 1 per occurrence to the existing counts, keep the entries that are already there")
    ids = [4, 4, 4]
    call(get_stats, ids)
    expect(ids == [4, 4, 4], "get_stats changed its input list", hint="only read `ids`, never modify it")
    return ("counts on 'aaabdaaabac' (4 × (a, a), overlaps included), empty/short inputs, bytes of Korean "
            "and emoji, and accumulation into a running `counts` dict all match")


# ----------------------------------------------------------------------------------------------
# TODO 2: merge


def _merge_first(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """What a merge that stops after its first match returns."""
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


@learner_check(todo=2, name="merge")
def check_merge(merge: Callable) -> str:
    """``merge(ids, pair, new_id)`` replaces non-overlapping occurrences left to right."""
    a = 97
    cases = [
        ([a, a, a], (a, a), 256, "'aaa' with pair (a, a)"),
        ([a, a, a, a], (a, a), 256, "'aaaa' with pair (a, a)"),
        ([a, a, a, a, a], (a, a), 256, "'aaaaa' with pair (a, a)"),
        (list(HAND_TEXT.encode()), (a, a), 256, "'aaabdaaabac' with pair (a, a)"),
        ([1, 2, 3, 1, 2], (1, 2), 300, "a pair at both ends"),
        ([3, 1, 2], (1, 2), 300, "a pair at the very end"),
        ([1, 2, 3], (3, 1), 300, "a pair that does not occur"),
        ([2, 1], (1, 2), 300, "the pair reversed"),
        ([], (1, 2), 300, "an empty list"),
        ([1], (1, 2), 300, "a single item"),
    ]
    for ids, pair, new_id, label in cases:
        original = list(ids)
        with hint_on_crash("reading ids[i + 1] at the last item raises IndexError: test i + 1 < len(ids) "
                           "before comparing ids[i + 1]"):
            got = call(merge, ids, pair, new_id)
        expected = reference_merge(original, pair, new_id)
        if got != expected:
            hint = "scan left to right; on a match append new_id and skip both items, else append ids[i]"
            if isinstance(got, list) and got.count(new_id) > expected.count(new_id):
                hint = ("overlapping pairs: after a match jump past BOTH items (i += 2), so 'aaa' with (a, "
                        "a) becomes [X, a], not [X, X, a]")
            elif isinstance(got, list) and new_id != 256 and [new_id if x == 256 else x
                                                              for x in got] == expected:
                hint = "append the `new_id` argument, not a fixed id such as 256"
            else:
                hint = " OR ".join(h for answer, h in [
                    (reference_merge(original[:-2], pair, new_id) + original[-2:],
                     "the pair that ends at the last item was not merged: the check for a match must "
                     "allow i + 1 == len(ids) - 1"),
                    (_merge_first(original, pair, new_id),
                     "only the first occurrence was replaced: keep scanning to the end after a match"),
                    (expected[:-1], "the last item was dropped: visit every i < len(ids) and append an "
                                    "unmatched last item as it is"),
                ] if len(original) >= 2 and got == answer) or hint
            expect_equal(got, expected, f"merge({original}, {pair}, {new_id}) — {label}", hint)
        expect(ids == original, f"merge changed its input list for {label}: {fmt(ids)}",
               hint="build and return a new list; training keeps the old word to subtract its pairs")
    return ("'aaa' -> [X, a] (overlaps handled), pairs at the ends, absent pairs, empty and 1-item lists, "
            "and the input left untouched")


# ----------------------------------------------------------------------------------------------
# TODO 3: train_bpe


def _merge_list(merges: dict[Pair, int]) -> list[tuple[Pair, int]]:
    return sorted(merges.items(), key=lambda kv: kv[1])


def _describe_merge(item: tuple[Pair, int] | None, vocab: dict[int, bytes]) -> str:
    if item is None:
        return "(none)"
    (a, b), new_id = item
    left, right = vocab.get(a, b"?"), vocab.get(b, b"?")
    return f"{new_id} = ({a}, {b}) = {left!r} + {right!r}"


_EARLY_STOP = ("a missing early stop: when no pair is left (an empty heap or counts dict), stop early, since "
               "popping an empty heap or min() of an empty dict raises")
_OUT_OF_SYNC = ("counts and the pair -> words index went out of sync: when a word changes, subtract EVERY "
                "pair of the old word (x frequency), add every pair of the new word, index the new pairs "
                "under that word (where[p].add(w)), and never pick a pair whose count has dropped to 0")


def _train(train_bpe: Callable, text: str, vocab_size: int, pattern: str | None = None,
           runs_out: bool = False) -> dict[Pair, int]:
    """Call the learner's train_bpe; a crash gets a hint (it usually means the incremental counts broke, or,
    when the text ``runs_out`` of pairs before vocab_size, that training did not stop early)."""
    try:
        return call(train_bpe, text, vocab_size, pattern)
    except CheckFailed as err:
        first, second = (_EARLY_STOP, _OUT_OF_SYNC) if runs_out else (_OUT_OF_SYNC, _EARLY_STOP)
        raise CheckFailed(f"{err}\n   hint: could be {first}; or {second}") from None


def _describe_got(got_list: list, k: int) -> str:
    if k >= len(got_list):
        return "(no more merges)"
    try:
        return _describe_merge(got_list[k], reference_build_vocab(dict(got_list)))
    except (TypeError, ValueError, KeyError):
        return fmt(got_list[k])


@learner_check(todo=3, name="train_bpe")
def check_train_bpe(train_bpe: Callable) -> str:
    """``train_bpe(text, vocab_size, split_pattern=None)`` matches a recount-every-merge reference."""
    got = _train(train_bpe, HAND_TEXT, 259)
    expect(isinstance(got, dict), f"train_bpe returned {type(got).__name__}, not a dict",
           hint="return the merges as a dict {(a, b): new_id}, filled in the order they were learned")
    if got != HAND_MERGES:
        hint = "merge 1 is (a, a) with count 4; then (a, b) and (Z, a) both have count 2"
        n = min(len(got), len(HAND_MERGES))
        if len(got) != len(HAND_MERGES) and _merge_list(got)[:n] == _merge_list(HAND_MERGES)[:n]:
            hint = (f"{len(got)} merges for vocab_size=259: the vocabulary counts the 256 byte tokens too, "
                    "so learn exactly vocab_size - 256 merges (new ids 256 .. vocab_size - 1)")
        elif _merge_list(got)[:1] == _merge_list(HAND_MERGES)[:1]:
            hint = ("after merge 1, (97, 98) 'ab' and (256, 97) 'Za' are tied at count 2: ties go to the "
                    "smallest pair, (97, 98) — e.g. min(counts, key=lambda p: (-counts[p], "
                    "p)) or a heap of (-count, pair)")
        expect_equal(_merge_list(got), _merge_list(HAND_MERGES),
                     "train_bpe('aaabdaaabac', 259): merges as [(pair, new_id), ...]", hint)
    expect_equal(_train(train_bpe, HAND_TEXT, 256), {}, "train_bpe('aaabdaaabac', 256): no merges asked for",
                 "vocab_size 256 means zero merges: the 256 byte values are the whole vocabulary")
    expect_equal(_train(train_bpe, "abab", 300, runs_out=True), {(97, 98): 256, (256, 256): 257},
                 "train_bpe('abab', 300): stop when no pair is left",
                 "when no pair occurs any more, stop early instead of merging a pair with count 0")

    cases = [
        ("a generated text of repeated words (split with GPT-2's pattern)", _synthetic_text(), 256 + 60,
         GPT2_SPLIT_PATTERN),
        ("an English paragraph (split with the GPT-4 pattern)", CHECK_PARAGRAPH, 256 + 80,
         GPT4_SPLIT_PATTERN),
        ("an English paragraph as ONE sequence (split_pattern=None)", CHECK_PARAGRAPH, 256 + 40, None),
        ("Korean, emoji and runs of 'a' (GPT-4 pattern)",
         "안녕하세요 안녕 안녕하세요 👋👋 👋 " * 3 + "aaaa aaa aa " * 5, 256 + 30, GPT4_SPLIT_PATTERN),
    ]
    for label, text, vocab_size, pattern in cases:
        got = _train(train_bpe, text, vocab_size, pattern)
        expected = reference_train_bpe(text, vocab_size, pattern)
        if got == expected:
            continue
        got_list, exp_list = _merge_list(got) if isinstance(got, dict) else list(got), _merge_list(expected)
        k = _first_difference(got_list, exp_list)
        vocab = reference_build_vocab(expected)
        chunks = collections.Counter(_chunks(text, pattern))
        counts = _counts_after(chunks, exp_list[:k])
        got_pair = got_list[k][0] if k < len(got_list) and isinstance(got_list[k], tuple) else None
        exp_pair = exp_list[k][0] if k < len(exp_list) else None
        unknown = [x for item in got_list if isinstance(item, tuple) and isinstance(item[0], tuple)
                   for x in item[0] if isinstance(x, int) and x >= 256 + len(got_list)]
        if unknown:
            hint = (f"token id {unknown[0]} is neither a byte (0-255) nor a merge: work on UTF-8 bytes, "
                    "list(chunk.encode('utf-8')), not ord() of the characters")
        elif got_pair is not None and exp_pair is not None and counts.get(got_pair) == counts.get(exp_pair):
            hint = (f"a tie: {got_pair} and {exp_pair} both occur {counts[exp_pair]} times at this point; "
                    "break ties by the smallest pair: min(counts, key=lambda p: (-counts[p], p)) or a heap "
                    "of (-count, pair)")
        elif _merge_list(_naive_bpe(dict.fromkeys(chunks, 1), vocab_size)) == got_list:
            hint = ("each distinct chunk was counted once: weight its pairs by how often the chunk occurs "
                    "in the text (collections.Counter of the chunks)")
        elif pattern is not None and _merge_list(reference_train_bpe(text, vocab_size, None))[:k + 1] == \
                got_list[:k + 1]:
            hint = ("your merges are those of the whole text as ONE sequence: pairs were counted across "
                    "chunk boundaries (e.g. 'e' + ' ' between two words). Split with the pattern, then count "
                    "pairs within each chunk only")
        elif k > 0:
            hint = ("the first merges agree, then the counts drift: when a word changes, subtract EVERY "
                    "pair of the old word and add every pair of the new one, each times the word's "
                    "frequency, and index the new pairs under that word")
        else:
            hint = ("the very first merge differs: count pairs within each "
                    "chunk, never across chunk boundaries")
        raise CheckFailed(
            f"train_bpe on {label}, vocab_size={vocab_size}: merge #{k + 1} differs "
            f"(first {k} agree, {len(exp_list)} expected in all)\n"
            f"   expected: {_describe_merge(exp_list[k] if k < len(exp_list) else None, vocab)}\n"
            f"   got:      {_describe_got(got_list, k)}\n"
            f"   hint: {hint}"
        )
    return ("'aaabdaaabac' gives Z=aa, Y=ab (tie broken by the smallest pair), X=ZY; early stop; and 4 texts "
            "(repeated words, English, one whole sequence, Korean/emoji) match "
            "a recount-every-merge reference")


# ----------------------------------------------------------------------------------------------
# TODO 4: encode


@learner_check(todo=4, name="encode")
def check_encode(encode: Callable) -> str:
    """``encode(text, merges)`` applies merges lowest rank first."""
    with hint_on_crash("stop when the lowest-rank pair present is not in `merges` (nothing is left to "
                       "merge): merges[pair] of an unknown pair raises KeyError"):
        got = call(encode, HAND_TEXT, HAND_MERGES)
    hint = "start from list(text.encode('utf-8')) and keep merging while some pair is in `merges`"
    if got == list(HAND_TEXT.encode()):
        hint = ("no merge was applied: pairs that are not in `merges` must rank last, merges.get(p, "
                "float('inf')), so that min() picks a known pair while there is one")
    expect_equal(got, HAND_IDS,
                 "encode('aaabdaaabac', {aa: 256, ab: 257, (256, 257): 258}) should be X d X a c", hint)
    order = {(98, 99): 256, (97, 98): 257}
    got = call(encode, "abc", order)
    if got != [97, 256]:
        hint = ("apply merges in the order they were learned: among the pairs present, merge the one with "
                "the LOWEST rank (smallest new id) first — not the most frequent pair, not the latest merge")
        expect_equal(got, [97, 256], f"encode('abc', {order}): (b, c) was learned first", hint)
    chain = {(97, 98): 256, (256, 99): 257, (99, 100): 258}
    got = call(encode, "abcd", chain)
    if got != [257, 100]:
        expect_equal(got, [257, 100],
                     f"encode('abcd', {chain}): ab -> 256, then (256, c) -> 257 beats (c, d) -> 258",
                     "merges build on earlier merges: after each merge, look again for the lowest-rank pair")
    expect_equal(call(encode, "", HAND_MERGES), [], "encode('') ", "the empty string has no bytes: return []")
    expect_equal(call(encode, "ab", {(97, 98): 256}), [256], "encode('ab', {(a, b): 256})",
                 "two tokens can still merge into one: keep merging while len(ids) >= 2")
    expect_equal(call(encode, "한", {}), [237, 149, 156], "encode('한', no merges)",
                 "encode UTF-8 bytes, not characters: list(text.encode('utf-8'))")
    merges = reference_train_bpe(CHECK_PARAGRAPH, 256 + 120, None)
    vocab = reference_build_vocab(merges)
    for text in [CHECK_PARAGRAPH[:200], "the tokenizer merges pairs", "aaaa bbbb", *NASTY_STRINGS]:
        got = call(encode, text, merges)
        expected = reference_encode(text, merges)
        if got != expected:
            k = _first_difference(got, expected)
            raise CheckFailed(
                f"encode({text[:40]!r}, 120 merges learned from a paragraph) differs at token {k}\n"
                f"   expected: {_show(expected[max(0, k - 2):k + 4], vocab)}\n"
                f"   got:      {_show(got[max(0, k - 2):k + 4], vocab)}\n"
                "   hint: merge the pair with the lowest rank first, then look again; "
                "stop when no pair is in `merges`"
            )
    return ("'aaabdaaabac' -> X d X a c, lowest-rank-first order ('abc', 'abcd' chains), empty and "
            f"multi-byte input, and {3 + len(NASTY_STRINGS)} strings encoded with 120 merges all match the "
            "reference")


# ----------------------------------------------------------------------------------------------
# TODO 5: decode


@learner_check(todo=5, name="decode")
def check_decode(decode: Callable) -> str:
    """``decode(ids, vocab)`` joins bytes first, then decodes once with ``errors='replace'``."""
    vocab = reference_build_vocab(HAND_MERGES)
    with hint_on_crash("the ids are token ids, not bytes: ids above 255 are merged tokens; look up the "
                       "bytes of each one, vocab[i], and join those"):
        got = call(decode, HAND_IDS, vocab)
    expect_equal(got, HAND_TEXT, "decode(X d X a c)",
                 "look up each id's bytes in vocab, join them, decode the result as UTF-8")
    expect_equal(call(decode, [], vocab), "", "decode([])", "no ids decode to the empty string")
    split_char = [237, 149, 156]  # '한' as three single-byte tokens
    got = call(decode, split_char, vocab)
    hint = ("a token can hold PART of a character: join all the bytes first and decode ONCE, never token by "
            "token")
    if got == bytes(split_char).decode("latin-1"):
        hint = "decode the bytes as UTF-8, not latin-1 (which turns every byte into a character of its own)"
    expect_equal(got, "한", "decode([237, 149, 156]): the three bytes of '한', one token each", hint)
    partial = dict(vocab)
    partial[300] = b"\xed\x95"  # a merged token that ends mid-character
    expect_equal(call(decode, [300, 156, 33], partial), "한!",
                 "decode with a token holding 2 of 3 bytes of '한'",
                 "join the bytes of all tokens before decoding: b''.join(vocab[i] for i in ids).decode(...)")
    try:
        got = decode([255, 104, 105], vocab)
    except NotImplementedError:
        raise
    except UnicodeDecodeError as err:
        raise CheckFailed(f"decode([255, 104, 105]) raised UnicodeDecodeError: {err}\n"
                          "   hint: not every byte sequence is valid UTF-8 (a model can emit any ids): "
                          "use .decode('utf-8', errors='replace')") from None
    except Exception as err:
        raise CheckFailed(f"decode([255, 104, 105]) raised {type(err).__name__}: {err}") from None
    expect_equal(got, "\ufffdhi", "decode([255, 104, 105]): 0xFF is never valid UTF-8",
                 "use errors='replace' so an invalid byte becomes U+FFFD '\ufffd'")
    merges = reference_train_bpe(CHECK_PARAGRAPH + NASTY_STRINGS[6] * 3 + NASTY_STRINGS[8] * 3, 256 + 100,
                                 None)
    vocab = reference_build_vocab(merges)
    for text in NASTY_STRINGS:
        got = call(decode, reference_encode(text, merges), vocab)
        expect_equal(got, text, f"decode(encode({text!r})) with 100 merges",
                     "join all bytes, then decode once; a single token can end in the middle of a character")
    return (f"X d X a c -> 'aaabdaaabac', a character split across tokens decodes whole, 0xFF -> U+FFFD, and "
            f"{len(NASTY_STRINGS)} nasty strings (empty, emoji, Korean, combining marks) round-trip")


# ----------------------------------------------------------------------------------------------
# TODO 6: split_text (regex pre-tokenizer and special tokens)


_SPECIALS_ITERABLE = ("special_tokens may be any iterable (a tuple, or the dict token -> id that the "
                      "Tokenizer passes): sort a copy, sorted(special_tokens, key=len, reverse=True), "
                      "never the caller's object in place")


@learner_check(todo=6, name="split_text")
def check_split_text(split_text: Callable) -> str:
    """``split_text(text, special_tokens=(), pattern=...)`` cuts special tokens out whole,
    regex-splits the rest."""
    samples = [
        "Hello world's 123 cats!!",
        "  leading and trailing spaces  ",
        "I'll go; you'LL stay. We've 1234567 ducats\n\nROMEO:\nO, she doth teach the torches to burn bright!",
        "def f(x):\n    return x**2  # square\n",
        "안녕하세요 世界 مرحبا 👋🏽",
        "",
        "\n\n\n",
    ]
    for pattern, name in ((GPT2_SPLIT_PATTERN, "GPT2_SPLIT_PATTERN"), (GPT4_SPLIT_PATTERN,
                                                                       "GPT4_SPLIT_PATTERN")):
        for text in samples:
            with hint_on_crash(_SPECIALS_ITERABLE):
                got = call(split_text, text, special_tokens=(), pattern=pattern)
            expected = reference_split_text(text, (), pattern)
            if got != expected:
                hint = "with no special tokens this is exactly regex.findall(pattern, text)"
                other = GPT4_SPLIT_PATTERN if pattern == GPT2_SPLIT_PATTERN else GPT2_SPLIT_PATTERN
                if got == regex.findall(other, text):
                    hint = "use the `pattern` argument: these chunks come from the other pattern"
                elif isinstance(got, list) and "".join(map(str, got)) != text:
                    hint = ("''.join(chunks) must give back the text exactly: keep the whitespace chunks "
                            "(never strip or drop them)")
                expect_equal(got, expected, f"split_text({text!r}, pattern={name})", hint)
    special = ["<|endoftext|>"]
    cases = [
        ("Hi<|endoftext|> there", special, ["Hi", "<|endoftext|>", " there"]),
        ("<|endoftext|>", special, ["<|endoftext|>"]),
        ("a<|endoftext|><|endoftext|>b", special, ["a", "<|endoftext|>", "<|endoftext|>", "b"]),
        ("x <|fim|> y<|endoftext|>", ["<|endoftext|>", "<|fim|>"], ["x", " ", "<|fim|>", " y",
                                                                    "<|endoftext|>"]),
        ("no special here, just text|end|", special, reference_split_text("no special here, just text|end|")),
        ("<|end|><|end|>x", ["<|end|>", "<|end|>x"], ["<|end|>", "<|end|>x"]),
        ("Hi<|endoftext|> there", {"<|endoftext|>": 256}, ["Hi", "<|endoftext|>", " there"]),  # as Tokenizer
    ]
    for text, specials, expected in cases:
        with hint_on_crash(_SPECIALS_ITERABLE):
            got = call(split_text, text, special_tokens=specials, pattern=GPT4_SPLIT_PATTERN)
        if got != expected:
            whole = isinstance(got, list) and any(s in specials for s in got)
            vanished = isinstance(got, list) and "".join(map(str, got)) == regex.sub(
                "|".join(regex.escape(s) for s in specials), "", text)
            if vanished and not whole:
                hint = ("the special tokens vanished: regex.split drops the separators unless the pattern "
                        "has a capture group, regex.split('(' + alternatives + ')', text)")
            elif text.startswith("<|end|><|end|>x"):
                hint = "try longer special tokens first, so '<|end|>x' is not cut as '<|end|>' + 'x'"
            elif not whole:
                hint = ("the special token was cut into pieces: split the special tokens out FIRST and keep "
                        "them whole (regex.split with a capture group around the alternatives, each passed "
                        "through regex.escape because '|' is a regex operator); only the text between them "
                        "goes through `pattern`")
            else:
                hint = ("''.join(chunks) must give back the text: keep every special token once, skip the "
                        "empty pieces between neighbouring specials, and split only the text between them")
            expect_equal(got, expected, f"split_text({text!r}, special_tokens={specials})", hint)
    return ("matches regex.findall for GPT-2's and GPT-4's patterns on 7 texts (whitespace kept), and "
            "special tokens come out whole: escaped, adjacent, longest first, never split by the pattern")
