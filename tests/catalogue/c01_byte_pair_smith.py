"""Mutation catalogue of 01_byte_pair_smith (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.byte_pair_smith import (
    check_decode,
    check_encode,
    check_get_stats,
    check_merge,
    check_split_text,
    check_train_bpe,
)

P = "01_byte_pair_smith"

# TODO 1: get_stats
STATS_LOOP = "    for pair in itertools.pairwise(ids):\n        counts[pair] = counts.get(pair, 0) + 1\n"
STATS_INIT = "counts = {} if counts is None else counts"
STATS_SIGNATURE = "counts: dict[tuple[int, int], int] | None = None) -> dict[tuple[int, int], int]:"

# TODO 2: merge
MERGE_MATCH = "            out.append(new_id)\n            i += 2\n"
MERGE_BODY = """    a, b = pair
    out = []
    i = 0
    n = len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
"""

# TODO 3: train_bpe
HEAP_POP = "        _, pair = heapq.heappop(heap)\n"
CHUNKS = "    chunks = [text] if split_pattern is None else regex.findall(split_pattern, text)"

# TODO 4: encode
ENCODE_PICK = 'min(stats, key=lambda p: merges.get(p, float("inf")))'

# TODO 5: decode
DECODE_LINE = 'return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")'

CATALOGUE = [
    Todo(
        P,
        1,
        check_get_stats,
        ("get_stats",),
        mutants=[
            Mutant(
                "misses the last pair",
                "off-by-one",
                [("for pair in itertools.pairwise(ids):", "for pair in itertools.pairwise(ids[:-1]):")],
                ("last pair (ids[-2], ids[-1]) is missing",),
            ),
            Mutant(
                "indexes one past the end",
                "off-by-one",
                [
                    (
                        STATS_LOOP,
                        "    for i in range(len(ids)):\n        pair = (ids[i], ids[i + 1])\n"
                        "        counts[pair] = counts.get(pair, 0) + 1\n",
                    )
                ],
                ("IndexError", "range(len(ids) - 1)"),
            ),
            Mutant(
                "ignores the running counts",
                "argument",
                [(STATS_INIT, "counts = {}")],
                ("add to it in place and return that same dict",),
            ),
            Mutant(
                "copies the running counts",
                "in-place",
                [(STATS_INIT, "counts = {} if counts is None else dict(counts)")],
                ("returned a new dict", "same dict"),
            ),
            Mutant(
                "mutable default counts",
                "state",
                [
                    (
                        STATS_SIGNATURE,
                        "counts: dict[tuple[int, int], int] = {}) -> dict[tuple[int, int], int]:",
                    ),
                    (STATS_INIT, "counts = counts"),
                ],
                ("mutable default", "previous call"),
            ),
            Mutant(
                "overwrites instead of adding",
                "logic",
                [("counts[pair] = counts.get(pair, 0) + 1", "counts[pair] = 1")],
                ("every count is 1", "counts.get(pair, 0) + 1"),
            ),
            Mutant(
                "counts non-overlapping pairs",
                "logic",
                [
                    (
                        "for pair in itertools.pairwise(ids):",
                        "for pair in zip(ids[::2], ids[1::2], strict=False):",
                    )
                ],
                ("overlapping pairs too",),
            ),
            Mutant(
                "treats (a, b) and (b, a) as one pair",
                "logic",
                [
                    (
                        "counts[pair] = counts.get(pair, 0) + 1",
                        "pair = tuple(sorted(pair))\n        counts[pair] = counts.get(pair, 0) + 1",
                    )
                ],
                ("order matters",),
            ),
        ],
        correct=[
            Correct(
                "zip with a slice",
                [("for pair in itertools.pairwise(ids):", "for pair in zip(ids, ids[1:], strict=False):")],
            ),
            Correct(
                "index loop and explicit None test",
                [
                    (STATS_INIT, "if counts is None:\n        counts = {}"),
                    (
                        STATS_LOOP,
                        "    for i in range(len(ids) - 1):\n        pair = (ids[i], ids[i + 1])\n"
                        "        counts[pair] = counts.get(pair, 0) + 1\n",
                    ),
                ],
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_merge,
        ("merge",),
        mutants=[
            Mutant(
                "overlapping matches",
                "off-by-one",
                [("            i += 2", "            i += 1")],
                ("overlapping pairs", "[X, a]"),
            ),
            Mutant(
                "skips a pair at the very end",
                "off-by-one",
                [("if i + 1 < n and", "if i + 2 < n and")],
                ("ends at the last item was not merged",),
            ),
            Mutant(
                "drops the last item",
                "off-by-one",
                [("    while i < n:", "    while i < n - 1:")],
                ("last item was dropped",),
            ),
            Mutant(
                "reads past the end",
                "off-by-one",
                [("if i + 1 < n and ", "if ")],
                ("IndexError", "i + 1 < len(ids)"),
            ),
            Mutant(
                "merges in place",
                "in-place",
                [
                    (
                        MERGE_BODY,
                        """    a, b = pair
    i = 0
    while i < len(ids) - 1:
        if ids[i] == a and ids[i + 1] == b:
            ids[i : i + 2] = [new_id]
        i += 1
    return ids
""",
                    )
                ],
                ("changed its input list", "new list"),
            ),
            Mutant(
                "replaces only the first occurrence",
                "logic",
                [
                    (
                        MERGE_MATCH,
                        "            out.append(new_id)\n            out.extend(ids[i + 2 :])\n"
                        "            break\n",
                    )
                ],
                ("only the first occurrence",),
            ),
            Mutant(
                "hard-codes the new id",
                "argument",
                [("out.append(new_id)", "out.append(256)")],
                ("`new_id` argument",),
            ),
        ],
        correct=[
            Correct(
                "for loop with a skip flag",
                [
                    (
                        MERGE_BODY,
                        """    out = []
    skip = False
    for i, x in enumerate(ids):
        if skip:
            skip = False
            continue
        if i + 1 < len(ids) and (x, ids[i + 1]) == pair:
            out.append(new_id)
            skip = True
        else:
            out.append(x)
    return out
""",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        3,
        check_train_bpe,
        ("get_stats", "merge", "train_bpe"),
        mutants=[
            Mutant(
                "counts pairs across chunk boundaries",
                "logic",
                [
                    (
                        CHUNKS,
                        '    chunks = ["".join(regex.findall(split_pattern, text)) '
                        "if split_pattern else text]",
                    )
                ],
                ("ONE sequence", "across chunk boundaries"),
            ),
            Mutant(
                "ignores split_pattern",
                "argument",
                [(CHUNKS, "    chunks = [text]")],
                ("ONE sequence", "across chunk boundaries"),
            ),
            Mutant(
                "ties broken by the largest pair",
                "logic",
                [
                    (
                        HEAP_POP,
                        "        heapq.heappop(heap)\n"
                        "        pair = max(counts, key=lambda p: (counts[p], p))\n",
                    )
                ],
                ("tied at count 2", "smallest"),
            ),
            Mutant(
                "ties broken by dict order",
                "logic",
                [(HEAP_POP, "        heapq.heappop(heap)\n        pair = max(counts, key=counts.get)\n")],
                ("a tie:", "smallest pair"),
            ),
            Mutant(
                "never subtracts the old pairs",
                "logic",
                [("counts[p] -= n * freqs[w]", "pass")],
                ("subtract EVERY pair of the old word",),
            ),
            Mutant(
                "subtracts without the word frequency",
                "scale",
                [("counts[p] -= n * freqs[w]", "counts[p] -= n")],
                ("subtract EVERY pair of the old word",),
            ),
            Mutant(
                "counts each distinct chunk once",
                "scale",
                [("word_counts = collections.Counter(chunks)", "word_counts = dict.fromkeys(chunks, 1)")],
                ("counted once", "how often the chunk occurs"),
            ),
            Mutant(
                "one merge too many",
                "off-by-one",
                [("for new_id in range(256, vocab_size):", "for new_id in range(256, vocab_size + 1):")],
                ("vocab_size - 256 merges",),
            ),
            Mutant(
                "one merge too few",
                "off-by-one",
                [("for new_id in range(256, vocab_size):", "for new_id in range(256, vocab_size - 1):")],
                ("vocab_size - 256 merges",),
            ),
            Mutant(
                "no early stop",
                "branch",
                [("        if not heap:\n            break  # no pair left to merge\n", "")],
                ("stop early", "no pair is left"),
            ),
            Mutant(
                "characters instead of bytes",
                "dtype",
                [
                    (
                        'words = [list(w.encode("utf-8")) for w in word_counts]',
                        "words = [[ord(c) for c in w] for w in word_counts]",
                    )
                ],
                ("UTF-8 bytes", "ord()"),
            ),
            Mutant(
                "forgets to index the new pairs",
                "logic",
                [("                where[p].add(w)\n", "")],
                ("index the new pairs",),
            ),
        ],
        correct=[
            Correct(
                "no skip of words that lost the pair",
                [
                    (
                        "            if len(new) == len(old):\n"
                        "                continue  # this word lost the pair in an earlier merge\n",
                        "",
                    )
                ],
            ),
            Correct(
                "recount every pair before every merge",
                [
                    ("    heap = [(-n, pair) for pair, n in counts.items()]", "    heap = []"),
                    (
                        """    for new_id in range(256, vocab_size):
        while heap and counts.get(heap[0][1], 0) != -heap[0][0]:
            heapq.heappop(heap)  # a stale entry: that pair's count changed after it was pushed
        if not heap:
            break  # no pair left to merge
        _, pair = heapq.heappop(heap)
        merges[pair] = new_id
""",
                        """    for new_id in range(256, vocab_size):
        counts = {}
        for ids, f in zip(words, freqs, strict=True):
            for p, n in get_stats(ids).items():
                counts[p] = counts.get(p, 0) + n * f
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges[pair] = new_id
        words = [merge(ids, pair, new_id) for ids in words]
        continue
""",
                    ),
                ],
            ),
        ],
    ),
    Todo(
        P,
        4,
        check_encode,
        ("get_stats", "merge", "encode"),
        mutants=[
            Mutant(
                "latest merge first",
                "logic",
                [(ENCODE_PICK, "min(stats, key=lambda p: -merges.get(p, -1))")],
                ("LOWEST rank",),
            ),
            Mutant(
                "most frequent pair first",
                "logic",
                [(ENCODE_PICK, "min(stats, key=lambda p: (p not in merges, -stats[p]))")],
                ("LOWEST rank", "not the most frequent pair"),
            ),
            Mutant(
                "first pair in text order",
                "logic",
                [(ENCODE_PICK, "next((p for p in stats if p in merges), None)")],
                ("LOWEST rank",),
            ),
            Mutant(
                "unknown pairs rank first",
                "logic",
                [(ENCODE_PICK, "min(stats, key=lambda p: merges.get(p, 0))")],
                ("float('inf')",),
            ),
            Mutant(
                "no stop when no pair is in merges",
                "branch",
                [("        if pair not in merges:\n            break  # nothing left to merge\n", "")],
                ("KeyError", "not in `merges`"),
            ),
            Mutant(
                "stops one token early",
                "off-by-one",
                [("while len(ids) >= 2:", "while len(ids) > 2:")],
                ("len(ids) >= 2",),
            ),
            Mutant(
                "characters instead of bytes",
                "dtype",
                [('ids = list(text.encode("utf-8"))', "ids = [ord(c) for c in text]")],
                ("UTF-8 bytes",),
            ),
        ],
        correct=[
            Correct(
                "every merge once in rank order",
                [
                    (
                        """    while len(ids) >= 2:
        stats = get_stats(ids)
        pair = min(stats, key=lambda p: merges.get(p, float("inf")))  # learned first = lowest rank
        if pair not in merges:
            break  # nothing left to merge
        ids = merge(ids, pair, merges[pair])
""",
                        """    for pair, new_id in sorted(merges.items(), key=lambda kv: kv[1]):
        ids = merge(ids, pair, new_id)
""",
                    )
                ],
            ),
            Correct(
                "while True with an explicit length test",
                [
                    (
                        "    while len(ids) >= 2:\n",
                        "    while True:\n        if len(ids) < 2:\n            break\n",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        5,
        check_decode,
        ("decode",),
        mutants=[
            Mutant(
                "decodes token by token",
                "logic",
                [(DECODE_LINE, 'return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)')],
                ("PART of a character", "decode ONCE"),
            ),
            Mutant(
                "strict UTF-8",
                "validation",
                [('.decode("utf-8", errors="replace")', '.decode("utf-8")')],
                ("UnicodeDecodeError", "errors='replace'"),
            ),
            Mutant(
                "drops invalid bytes",
                "validation",
                [('"utf-8", errors="replace")', '"utf-8", errors="ignore")')],
                ("errors='replace'", "U+FFFD"),
            ),
            Mutant(
                "decodes as latin-1",
                "dtype",
                [('.decode("utf-8", errors="replace")', '.decode("latin-1")')],
                ("latin-1",),
            ),
            Mutant(
                "ids taken as bytes",
                "logic",
                [('b"".join(vocab[i] for i in ids)', "bytes(ids)")],
                ("vocab[i]", "above 255"),
            ),
            Mutant(
                "ignores the vocab",
                "argument",
                [(DECODE_LINE, 'return "".join(chr(i) for i in ids)')],
                ("vocab",),
            ),
            Mutant(
                "str() of the bytes",
                "dtype",
                [(DECODE_LINE, 'return str(b"".join(vocab[i] for i in ids))')],
                ("decode",),
            ),
        ],
        correct=[
            Correct(
                "bytearray in a loop",
                [
                    (
                        DECODE_LINE,
                        """buf = bytearray()
    for i in ids:
        buf += vocab[i]
    return bytes(buf).decode("utf-8", errors="replace")""",
                    )
                ],
            ),
            Correct(
                "map and str()",
                [(DECODE_LINE, 'return str(b"".join(map(vocab.__getitem__, ids)), "utf-8", "replace")')],
            ),
        ],
    ),
    Todo(
        P,
        6,
        check_split_text,
        ("split_text",),
        mutants=[
            Mutant(
                "drops whitespace chunks",
                "logic",
                [
                    (
                        "return regex.findall(pattern, text)",
                        "return [c for c in regex.findall(pattern, text) if not c.isspace()]",
                    )
                ],
                ("keep the whitespace chunks",),
            ),
            Mutant(
                "specials go through the pattern",
                "branch",
                [("if not specials:", "if True:")],
                ("cut into pieces", "FIRST"),
            ),
            Mutant(
                "unescaped specials",
                "logic",
                [("regex.escape(s) for s in specials", "s for s in specials")],
                ("regex.escape",),
            ),
            Mutant(
                "shortest special first",
                "logic",
                [("key=len, reverse=True", "key=len, reverse=False")],
                ("longer special tokens first",),
            ),
            Mutant(
                "split without a capture group",
                "logic",
                [
                    ('regex.split(f"({alternatives})", text)', "regex.split(alternatives, text)"),
                    (
                        "        if i % 2 == 1:\n            chunks.append(piece)  # a special token, whole\n"
                        "        elif piece:",
                        "        if piece:",
                    ),
                ],
                ("capture group",),
            ),
            Mutant(
                "hard-coded pattern",
                "argument",
                [
                    ("return regex.findall(pattern, text)", "return regex.findall(GPT4_SPLIT_PATTERN, text)"),
                    (
                        "chunks.extend(regex.findall(pattern, piece))",
                        "chunks.extend(regex.findall(GPT4_SPLIT_PATTERN, piece))",
                    ),
                ],
                ("`pattern` argument",),
            ),
            Mutant(
                "sorts the caller's specials in place",
                "in-place",
                [
                    (
                        "specials = sorted(special_tokens, key=len, reverse=True)",
                        "special_tokens.sort(key=len, reverse=True)\n    specials = special_tokens",
                    )
                ],
                ("sorted(special_tokens",),
            ),
        ],
        correct=[
            Correct(
                "keeps empty pieces (findall of '' is empty)", [("        elif piece:", "        else:")]
            ),
            Correct(
                "scan by hand",
                [
                    (
                        """    alternatives = "|".join(regex.escape(s) for s in specials)
    pieces = regex.split(f"({alternatives})", text)  # the capture group keeps the specials: odd indices
    chunks = []
    for i, piece in enumerate(pieces):
        if i % 2 == 1:
            chunks.append(piece)  # a special token, whole
        elif piece:
            chunks.extend(regex.findall(pattern, piece))
    return chunks""",
                        """    chunks = []
    start = i = 0
    while i < len(text):
        hit = next((s for s in specials if text.startswith(s, i)), None)
        if hit is None:
            i += 1
            continue
        chunks.extend(regex.findall(pattern, text[start:i]))
        chunks.append(hit)
        i += len(hit)
        start = i
    chunks.extend(regex.findall(pattern, text[start:]))
    return chunks""",
                    )
                ],
            ),
        ],
    ),
]
