"""Mutation catalogue of 18_serving_engine (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.serving_engine import (
    check_allocator,
    check_continuous_step,
    check_copy_on_write,
    check_paged_attention,
    check_parse_completion_request,
    check_static_step,
)

P = "18_serving_engine"


def _two(check, fns):
    return check(fns["allocate"], fns["release"])


def _cow(check, fns):
    return check(fns["fork"], fns["prepare_write"])


def _with_tok(check, fns):
    return check(fns["parse_completion_request"])


POP = "block = free.pop()"
SET1 = "refs[block] = 1"
EMPTY = "    if not free:\n        raise OutOfBlocks("
DOUBLE = '    if refs[block] < 1:\n        raise ValueError(f"block {block} is already free (double free)")\n'
DEC = "    refs[block] -= 1\n    if refs[block] == 0:\n        free.append(block)"

K_GATHER = "k = k_pool[block_tables].permute(0, 2, 1, 3, 4).reshape(B, nkv, nb * bs, hs)  # (B, nkv, S, hs)"
V_GATHER = "v = v_pool[block_tables].permute(0, 2, 1, 3, 4).reshape(B, nkv, nb * bs, hs)  # (B, nkv, S, hs)"
K_REP = "k = k.repeat_interleave(nh // nkv, dim=1)  # (B, nh, S, hs)"
V_REP = "v = v.repeat_interleave(nh // nkv, dim=1)  # (B, nh, S, hs)"
SCORES = "scores = (q[:, :, None, :] @ k.transpose(-2, -1))[:, :, 0] / math.sqrt(hs)  # (B, nh, S)"
VALID = "valid = torch.arange(nb * bs)[None, :] < context_lens[:, None]  # (B, S)"
MASK = 'scores = scores.masked_fill(~valid[:, None, :], float("-inf"))  # (B, nh, S)'
SOFTMAX = "weights = torch.softmax(scores, dim=-1)  # (B, nh, S)"

INCREF = "    for block in table:\n        refs[block] += 1\n    return list(table)"
SHARED = "elif refs[table[i]] > 1:"
COPY = "        for pool in pools:\n            pool[new] = pool[table[i]]\n"
REL_OLD = "        release(table[i], free, refs)\n"
INDEX = "    i = pos // block_size\n    if i == len(table):"

GROW = 'while seq in running and seq["blocks"] < blocks_needed(seq["tokens"], block_size):'
VICTIM = "victim = running.pop()  # the latest admitted"
REQUEUE = "waiting.appendleft(victim)"
ADMIT = "while not preempted and waiting and len(running) < max_batch:"
NEED = 'need = blocks_needed(waiting[0]["tokens"], block_size)'
FIT = "        if need > free:\n            break\n"
RETIRE_FREE = '        free += seq["blocks"]\n        seq["blocks"] = 0\n    return free, finished, preempted'

FORM = "    if not running:\n        reserve = blocks_needed(max_context, block_size)"
RESERVE = "reserve = blocks_needed(max_context, block_size)"
BATCH = "while waiting and len(running) < max_batch and free >= reserve:"
PAD = '        if seq["left"] == 0:\n            padded += 1\n            continue\n'
END = '    if running and all(seq["left"] == 0 for seq in running):'

NCHECK = 'if "n" in body and body["n"] is not None and not (is_int(body["n"]) and body["n"] == 1):'
UNKNOWN = '    if unknown:\n        raise RequestError(400, f"prompt has characters outside the vocabulary: {unknown[:5]}", "prompt")\n'  # noqa: E501
TOO_LONG = "if len(prompt) >= max_context:"
DEFAULT = "max_tokens = min(16, max_tokens_limit, room)"
MT_RANGE = "if not is_int(max_tokens) or not 1 <= max_tokens <= min(max_tokens_limit, room):"
TEMP = (
    "if isinstance(temperature, bool) or not isinstance(temperature, int | float) \\\n"
    "            or not 0 <= temperature <= 2:"
)
STREAM = "if not isinstance(stream, bool):"
SEED = "if seed is not None and not (is_int(seed) and 0 <= seed < 2**63):"
BODY = "if not isinstance(body, dict):"

CATALOGUE = [
    Todo(
        P,
        1,
        check_allocator,
        ("allocate", "release"),
        run=_two,
        mutants=[
            Mutant(
                "pops from the front of the free list",
                "logic",
                [(POP, "block = free.pop(0)")],
                ("END of the free list",),
            ),
            Mutant("ref count not set on allocation", "state", [(SET1, "pass")], ("ref count 1",)),
            Mutant(
                "block read but not removed from the free list",
                "in-place",
                [(POP, "block = free[-1]")],
                ("remove the block",),
            ),
            Mutant(
                "empty free list raises IndexError",
                "validation",
                [(EMPTY, "    if False:\n        raise OutOfBlocks(")],
                ("OutOfBlocks",),
            ),
            Mutant(
                "shared block freed at the first release",
                "logic",
                [(DEC, "    refs[block] = 0\n    free.append(block)")],
                ("still shared",),
            ),
            Mutant(
                "count decremented but block never returned",
                "state",
                [(DEC, "    refs[block] -= 1")],
                ("never returns",),
            ),
            Mutant("double free accepted", "validation", [(DOUBLE, "")], ("double free",)),
            Mutant(
                "block returned while its count is 1",
                "off-by-one",
                [(DEC, "    if refs[block] <= 2:\n        free.append(block)\n    refs[block] -= 1")],
                ("still shared",),
            ),
            Mutant(
                "freed block put at the front of the free list",
                "logic",
                [("        free.append(block)", "        free.insert(0, block)")],
                ("freed last is reused first",),
            ),
        ],
        correct=[
            Correct("count incremented from 0", [(SET1, "refs[block] += 1")]),
            Correct(
                "try/except around pop",
                [
                    (EMPTY, "    if False:\n        raise OutOfBlocks("),
                    (
                        POP,
                        "try:\n        block = free.pop()\n    except IndexError:\n"
                        "        raise OutOfBlocks('out of KV blocks') from None",
                    ),
                ],
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_paged_attention,
        ("paged_attention",),
        mutants=[
            Mutant("padding slots not masked", "branch", [(MASK, "pass")], ("padding slots",)),
            Mutant(
                "mask keeps one slot too many",
                "off-by-one",
                [(VALID, "valid = torch.arange(nb * bs)[None, :] <= context_lens[:, None]  # (B, S)")],
                ("off by one in the mask",),
            ),
            Mutant(
                "no 1/sqrt(hs) scale",
                "scale",
                [(" / math.sqrt(hs)  # (B, nh, S)", "  # (B, nh, S)")],
                ("missing scale",),
            ),
            Mutant(
                "scaled by 1/hs",
                "scale",
                [(" / math.sqrt(hs)  # (B, nh, S)", " / hs  # (B, nh, S)")],
                ("sqrt(hs), not hs",),
            ),
            Mutant(
                "blocks merged without the permute",
                "axis",
                [
                    (K_GATHER, "k = k_pool[block_tables].reshape(B, nkv, nb * bs, hs)"),
                    (V_GATHER, "v = v_pool[block_tables].reshape(B, nkv, nb * bs, hs)"),
                ],
                ("permute",),
            ),
            Mutant(
                "KV heads tiled with repeat",
                "axis",
                [(K_REP, "k = k.repeat(1, nh // nkv, 1, 1)"), (V_REP, "v = v.repeat(1, nh // nkv, 1, 1)")],
                ("repeat_interleave",),
            ),
            Mutant(
                "block table ignored",
                "logic",
                [
                    (
                        K_GATHER,
                        "k = k_pool[:nb].permute(1, 0, 2, 3).reshape(1, nkv, nb * bs, hs).expand(B, -1, -1, -1)",  # noqa: E501
                    ),
                    (
                        V_GATHER,
                        "v = v_pool[:nb].permute(1, 0, 2, 3).reshape(1, nkv, nb * bs, hs).expand(B, -1, -1, -1)",  # noqa: E501
                    ),
                ],
                ("block table was ignored",),
            ),
            Mutant(
                "softmax over the heads",
                "axis",
                [(SOFTMAX, "weights = torch.softmax(scores, dim=1)")],
                ("dim=-1",),
            ),
            Mutant(
                "mask filled with 0 instead of -inf",
                "logic",
                [(MASK, "scores = scores.masked_fill(~valid[:, None, :], 0.0)")],
                ("-inf",),
            ),
        ],
        correct=[
            Correct(
                "scaled_dot_product_attention with a boolean mask",
                [
                    (
                        "    scores = (q[:, :, None, :] @ k.transpose(-2, -1))[:, :, 0] / math.sqrt(hs)  # (B, nh, S)\n",  # noqa: E501
                        "",
                    ),
                    (
                        "    "
                        + MASK
                        + "\n    "
                        + SOFTMAX
                        + "\n    return (weights[:, :, None, :] @ v)[:, :, 0]",
                        "    out = torch.nn.functional.scaled_dot_product_attention(q[:, :, None], k, v, "
                        "attn_mask=valid[:, None, None, :])\n    return out[:, :, 0]",
                    ),
                ],
            ),
            Correct(
                "gather via index_select and view",
                [
                    (
                        K_GATHER,
                        "k = k_pool.index_select(0, block_tables.flatten()).view(B, nb, nkv, bs, hs)"
                        ".transpose(1, 2).reshape(B, nkv, nb * bs, hs)",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        3,
        check_copy_on_write,
        ("allocate", "release", "fork", "prepare_write"),
        run=_cow,
        mutants=[
            Mutant(
                "fork does not add references",
                "state",
                [(INCREF, "    return list(table)")],
                ("refs[block] += 1",),
            ),
            Mutant(
                "fork sets the count to 2 instead of adding one",
                "state",
                [(INCREF, "    for block in table:\n        refs[block] = 2\n    return list(table)")],
                ("do not set the count to 2",),
            ),
            Mutant(
                "fork returns the parent's list",
                "in-place",
                [(INCREF, "    for block in table:\n        refs[block] += 1\n    return table")],
                ("copy of the table",),
            ),
            Mutant(
                "no copy-on-write: shared block written in place",
                "branch",
                [(SHARED, "elif False:")],
                ("only when shared",),
            ),
            Mutant("copied block left empty", "logic", [(COPY, "")], ("copy the contents",)),
            Mutant(
                "only the first pool copied",
                "logic",
                [(COPY, "        pools[0][new] = pools[0][table[i]]\n")],
                ("every pool",),
            ),
            Mutant("old block not released", "state", [(REL_OLD, "")], ("release the old block",)),
            Mutant(
                "copies even an unshared block",
                "branch",
                [(SHARED, "elif refs[table[i]] >= 1:")],
                ("copy only when shared",),
            ),
            Mutant(
                "block index off by one",
                "off-by-one",
                [(INDEX, "    i = (pos - 1) // block_size\n    if i == len(table):")],
                ("pos // block_size",),
            ),
            Mutant(
                "copied in the wrong direction",
                "logic",
                [(COPY, "        for pool in pools:\n            pool[table[i]] = pool[new]\n")],
                ("copy from the old block",),
            ),
        ],
        correct=[
            Correct(
                "copy.clone per pool and a new list via slicing",
                [
                    ("return list(table)", "return table[:]"),
                    (
                        COPY,
                        "        for pool in pools:\n            pool[new].copy_(pool[table[i]].clone())\n",
                    ),
                ],
            ),
        ],
    ),
    Todo(
        P,
        4,
        check_continuous_step,
        ("continuous_step",),
        mutants=[
            Mutant(
                "preempts the oldest sequence",
                "logic",
                [(VICTIM, "victim = running.pop(0)")],
                ("LATEST admitted",),
            ),
            Mutant(
                "preempted sequence sent to the back of the queue",
                "logic",
                [(REQUEUE, "waiting.append(victim)")],
                ("FRONT of the queue",),
            ),
            Mutant(
                "retires one step late",
                "off-by-one",
                [
                    (
                        'finished = [seq for seq in running if seq["left"] == 0]',
                        'finished = [seq for seq in running if seq["left"] < 0]',
                    )
                ],
                ("retire at once",),
            ),
            Mutant(
                "batch size not bounded",
                "validation",
                [(ADMIT, "while not preempted and waiting:")],
                ("max_batch",),
            ),
            Mutant(
                "skips ahead to a request that fits",
                "logic",
                [
                    (
                        "    while not preempted and waiting and len(running) < max_batch:\n"
                        '        need = blocks_needed(waiting[0]["tokens"], block_size)\n'
                        "        if need > free:\n            break\n        seq = waiting.popleft()\n",
                        "    for seq in list(waiting):\n"
                        "        if preempted or len(running) >= max_batch:\n            break\n"
                        '        need = blocks_needed(seq["tokens"], block_size)\n'
                        "        if need > free:\n            continue\n        waiting.remove(seq)\n",
                    )
                ],
                ("first come, first served",),
            ),
            Mutant(
                "finished sequences keep their blocks",
                "state",
                [(RETIRE_FREE, "    return free, finished, preempted")],
                ("given back",),
            ),
            Mutant(
                "blocks for tokens - 1 positions",
                "off-by-one",
                [
                    (
                        GROW,
                        'while seq in running and seq["blocks"] < blocks_needed(seq["tokens"] - 1, block_size):',  # noqa: E501
                    ),
                    (NEED, 'need = blocks_needed(waiting[0]["tokens"] - 1, block_size)'),
                ],
                ("ceil(tokens / block_size)",),
            ),
            Mutant("admission ignores the free blocks", "validation", [(FIT, "")], ("blocks",)),
            Mutant(
                "preempted sequence keeps its blocks",
                "state",
                [('                free += victim["blocks"]\n                victim["blocks"] = 0\n', "")],
                ("preempt",),
            ),
        ],
        correct=[
            Correct(
                "admission with an explicit counter",
                [
                    (ADMIT, "while not preempted and len(waiting) > 0 and len(running) < max_batch:"),
                    (NEED, 'need = -(-waiting[0]["tokens"] // block_size)'),
                ],
            ),
        ],
    ),
    Todo(
        P,
        5,
        check_static_step,
        ("static_step",),
        mutants=[
            Mutant(
                "joins a running batch",
                "logic",
                [(FORM, "    if True:\n        reserve = blocks_needed(max_context, block_size)")],
                ("nothing joins a batch",),
            ),
            Mutant(
                "reserves only the prompt",
                "logic",
                [
                    (
                        '            seq["blocks"] = reserve\n            free -= reserve\n',
                        '            seq["blocks"] = blocks_needed(seq["tokens"], block_size)\n'
                        '            free -= seq["blocks"]\n',
                    )
                ],
                ("max_context",),
            ),
            Mutant(
                "a reservation that fits exactly is refused",
                "off-by-one",
                [(BATCH, "while waiting and len(running) < max_batch and free > reserve:")],
                ("fits exactly",),
            ),
            Mutant(
                "batch size not bounded",
                "validation",
                [(BATCH, "while waiting and free >= reserve:")],
                ("max_batch",),
            ),
            Mutant(
                "padding rows not counted",
                "logic",
                [(PAD, '        if seq["left"] == 0:\n            continue\n')],
                ("padded",),
            ),
            Mutant(
                "finished members leave at once",
                "logic",
                [
                    (
                        END,
                        '    for seq in [s for s in running if s["left"] == 0]:\n'
                        '        free += seq["blocks"]\n        seq["blocks"] = 0\n        running.remove(seq)\n'  # noqa: E501
                        "    if False:",
                    )
                ],
                ("pad to the longest",),
            ),
            Mutant(
                "blocks not given back at the end",
                "state",
                [
                    (
                        '            free += seq["blocks"]\n            seq["blocks"] = 0\n        running.clear()',  # noqa: E501
                        "            pass\n        running.clear()",
                    )
                ],
                ("give all blocks back",),
            ),
            Mutant(
                "reservation off by one block",
                "off-by-one",
                [(RESERVE, "reserve = blocks_needed(max_context - block_size, block_size)")],
                ("max_context",),
            ),
            Mutant(
                "finished member reported every step",
                "logic",
                [
                    (
                        PAD,
                        '        if seq["left"] == 0:\n            padded += 1\n            finished.append(seq)\n'  # noqa: E501
                        "            continue\n",
                    )
                ],
                ("finished",),
            ),
        ],
        correct=[
            Correct(
                "padding counted in one sum",
                [
                    (PAD, ""),
                    (
                        '    for seq in running:\n        seq["tokens"] += 1',
                        '    padded = sum(seq["left"] == 0 for seq in running)\n'
                        '    for seq in [s for s in running if s["left"] > 0]:\n        seq["tokens"] += 1',
                    ),
                ],
            ),
        ],
    ),
    Todo(
        P,
        6,
        check_parse_completion_request,
        ("parse_completion_request",),
        run=_with_tok,
        mutants=[
            Mutant("n is not checked", "validation", [(NCHECK, "if False:")], ("n = 1",)),
            Mutant("unknown characters not refused", "validation", [(UNKNOWN, "")], ("prompt",)),
            Mutant(
                "prompt as long as the context accepted",
                "off-by-one",
                [(TOO_LONG, "if len(prompt) > max_context:")],
                ("shorter than max_context",),
            ),
            Mutant(
                "default max_tokens ignores the room left",
                "logic",
                [(DEFAULT, "max_tokens = min(16, max_tokens_limit)")],
                ("defaults",),
            ),
            Mutant(
                "bool accepted as max_tokens",
                "validation",
                [
                    (
                        MT_RANGE,
                        "if not isinstance(max_tokens, int) or not 1 <= max_tokens <= min(max_tokens_limit, room):",  # noqa: E501
                    )
                ],
                ("not a bool",),
            ),
            Mutant(
                "prompt + max_tokens may exceed the context",
                "validation",
                [(MT_RANGE, "if not is_int(max_tokens) or not 1 <= max_tokens <= max_tokens_limit:")],
                ("len(prompt) + max_tokens <= max_context",),
            ),
            Mutant(
                "temperature above 2 accepted",
                "validation",
                [
                    (
                        TEMP,
                        "if isinstance(temperature, bool) or not isinstance(temperature, int | float) \\\n"
                        "            or not 0 <= temperature:",
                    )
                ],
                ("[0, 2]",),
            ),
            Mutant("stream taken as truthy", "validation", [(STREAM, "if False:")], ("bool",)),
            Mutant(
                "negative seed accepted",
                "validation",
                [(SEED, "if seed is not None and not is_int(seed):")],
                ("seed",),
            ),
            Mutant("non-dict body crashes", "validation", [(BODY, "if body is None:")], ("crash",)),
        ],
        correct=[
            Correct(
                "prompt checks split, temperature via float()",
                [
                    (
                        "    if not isinstance(prompt, str) or not prompt:\n",
                        "    if not isinstance(prompt, str):\n"
                        "        raise RequestError(400, 'prompt must be a string', 'prompt')\n"
                        "    if prompt == '':\n",
                    ),
                ],
            ),
        ],
    ),
]
