"""Mutation catalogue of 02_meaning_space (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.meaning_space import (
    check_analogy,
    check_cosine_matrix,
    check_keep_probability,
    check_nearest_neighbours,
    check_one_hot,
    check_sample_negatives,
    check_sgns_loss,
    check_skipgram_pairs,
    check_train_skipgram,
)

P = "02_meaning_space"

# TODO 1: one_hot
ZEROS = "out = torch.zeros(len(ids), vocab_size)  # (N, V)"
SET_ONES = "out[torch.arange(len(ids)), ids] = 1.0"
ONE_HOT_BODY = ZEROS + "\n    " + SET_ONES + "\n    return out"

# TODO 2: cosine_matrix
A_UNIT = "a_unit = a / a.norm(dim=1, keepdim=True).clamp_min(eps)"
B_UNIT = "b_unit = b / b.norm(dim=1, keepdim=True).clamp_min(eps)"
COS_RETURN = "    return a_unit @ b_unit.T"

# TODO 3: skipgram_pairs
RIGHT = "        chunks.append(torch.stack([ids[:-o], ids[o:]], dim=1))  # (T - o, 2) context to the right\n"
LEFT = "        chunks.append(torch.stack([ids[o:], ids[:-o]], dim=1))  # (T - o, 2) context to the left\n"
OFFSETS = "    for o in range(1, window + 1):\n        if"

# TODO 4: keep_probability
KEEP_RETURN = "    return torch.sqrt(t / f).clamp(max=1.0)"
FREQ = "    f = counts / counts.sum()  # (V,)"

# TODO 5: sample_negatives
DRAWS = "draws = torch.multinomial(weights, math.prod(shape), replacement=True, generator=generator)  # (n,)"

# TODO 6: sgns_loss
LOSS = "return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()"
NEG = "neg = (u_neg @ v.unsqueeze(-1)).squeeze(-1)"

# TODO 7: train_skipgram
TRAIN_FUNCTIONS = ("keep_probability", "skipgram_pairs", "sample_negatives", "sgns_loss", "train_skipgram")
NEGATIVES = "negatives = sample_negatives(counts, (len(batch), n_negatives), g)  # (B, k)"
LOSS_CALL = "loss = sgns_loss(emb_in(batch[:, 0]), emb_out(batch[:, 1]), emb_out(negatives))"

# TODO 8: nearest_neighbours
NN_FUNCTIONS = ("cosine_matrix", "nearest_neighbours")
EXCLUDE_QUERY = "    sims[torch.arange(len(query_ids)), query_ids] = -math.inf\n"
TOPK = "    top = sims.topk(k, dim=1)\n"

# TODO 9: analogy
AN_FUNCTIONS = ("cosine_matrix", "analogy")
TARGET = "target = unit[a] - unit[b] + unit[c]  # (D,)"
EXCLUDE_ABC = "    sims[[a, b, c]] = -math.inf\n"
AN_RETURN = "    return sims.topk(k).indices.tolist()"

CATALOGUE = [
    Todo(
        P,
        1,
        check_one_hot,
        ("one_hot",),
        mutants=[
            Mutant(
                "left as int64",
                "dtype",
                [
                    (ZEROS, "out = torch.zeros(len(ids), vocab_size, dtype=torch.long)  # (N, V)"),
                    (SET_ONES, "out[torch.arange(len(ids)), ids] = 1"),
                ],
                ("float",),
            ),
            Mutant(
                "float64",
                "dtype",
                [(ZEROS, "out = torch.zeros(len(ids), vocab_size, dtype=torch.float64)")],
                ("float32",),
            ),
            Mutant(
                "sized by the largest id",
                "argument",
                [("torch.zeros(len(ids), vocab_size)", "torch.zeros(len(ids), int(ids.max()) + 1)")],
                ("wrong shape", "vocab_size"),
            ),
            Mutant(
                "F.one_hot without num_classes",
                "argument",
                [(ONE_HOT_BODY, "return F.one_hot(ids).float()")],
                ("vocab_size",),
            ),
            Mutant(
                "transposed (V, N)",
                "axis",
                [
                    (ZEROS, "out = torch.zeros(vocab_size, len(ids))"),
                    (SET_ONES, "out[ids, torch.arange(len(ids))] = 1.0"),
                ],
                ("transposed",),
            ),
            Mutant("sets whole columns", "axis", [(SET_ONES, "out[:, ids] = 1.0")], ("torch.arange",)),
        ],
        correct=[
            Correct(
                "F.one_hot with num_classes", [(ONE_HOT_BODY, "return F.one_hot(ids, vocab_size).float()")]
            ),
            Correct("rows of an identity matrix", [(ONE_HOT_BODY, "return torch.eye(vocab_size)[ids]")]),
            Correct("scatter_", [(SET_ONES, "out.scatter_(1, ids[:, None], 1.0)")]),
        ],
    ),
    Todo(
        P,
        2,
        check_cosine_matrix,
        ("cosine_matrix",),
        mutants=[
            Mutant(
                "normalises one side",
                "scale",
                [(COS_RETURN, "    return a_unit @ b.T")],
                ("only one side is normalised",),
            ),
            Mutant(
                "normalises columns",
                "axis",
                [
                    (A_UNIT, "a_unit = a / a.norm(dim=0, keepdim=True).clamp_min(eps)"),
                    (B_UNIT, "b_unit = b / b.norm(dim=0, keepdim=True).clamp_min(eps)"),
                ],
                ("ROW",),
            ),
            Mutant("raw dot product", "scale", [(COS_RETURN, "    return a @ b.T")], ("raw dot product",)),
            Mutant(
                "divides by the squared norm",
                "scale",
                [
                    (A_UNIT, "a_unit = a / (a**2).sum(dim=1, keepdim=True).clamp_min(eps)"),
                    (B_UNIT, "b_unit = b / (b**2).sum(dim=1, keepdim=True).clamp_min(eps)"),
                ],
                ("squared",),
            ),
            Mutant(
                "no clamp at eps",
                "stability",
                [
                    (A_UNIT, "a_unit = a / a.norm(dim=1, keepdim=True)"),
                    (B_UNIT, "b_unit = b / b.norm(dim=1, keepdim=True)"),
                ],
                ("zero row", "eps"),
            ),
            Mutant(
                "norms without keepdim",
                "shape",
                [
                    (A_UNIT, "a_unit = a / a.norm(dim=1).clamp_min(eps)"),
                    (B_UNIT, "b_unit = b / b.norm(dim=1).clamp_min(eps)"),
                ],
                ("keepdim=True",),
            ),
            Mutant(
                "(M, N) instead of (N, M)",
                "axis",
                [(COS_RETURN, "    return b_unit @ a_unit.T")],
                ("b_unit.T",),
            ),
            Mutant(
                "normalises a in place",
                "in-place",
                [(A_UNIT, "a /= a.norm(dim=1, keepdim=True).clamp_min(eps)\n    a_unit = a")],
                ("in place",),
            ),
        ],
        correct=[
            Correct(
                "F.normalize",
                [
                    (A_UNIT, "a_unit = F.normalize(a, dim=1, eps=eps)"),
                    (B_UNIT, "b_unit = F.normalize(b, dim=1, eps=eps)"),
                ],
            ),
            Correct(
                "F.cosine_similarity with broadcasting",
                [
                    (
                        COS_RETURN,
                        "    return F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1, eps=eps)",
                    )
                ],
            ),
            Correct(
                "divide the dot products by the outer product of norms",
                [
                    (
                        COS_RETURN,
                        "    na = a.norm(dim=1).clamp_min(eps)\n    nb = b.norm(dim=1).clamp_min(eps)\n"
                        "    return (a @ b.T) / (na[:, None] * nb[None, :])",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        3,
        check_skipgram_pairs,
        ("skipgram_pairs",),
        mutants=[
            Mutant(
                "pairs the centre with itself",
                "off-by-one",
                [("    chunks = []\n", "    chunks = [torch.stack([ids, ids], dim=1)]\n")],
                ("paired with itself",),
            ),
            Mutant(
                "offsets from 0",
                "off-by-one",
                [(OFFSETS, "    for o in range(0, window + 1):\n        if")],
                ("offset 0", "ids[:-0]"),
            ),
            Mutant(
                "window off by one",
                "off-by-one",
                [(OFFSETS, "    for o in range(1, window):\n        if")],
                ("off by one",),
            ),
            Mutant("one side only", "logic", [(LEFT, "")], ("only one side",)),
            Mutant(
                "wraps around with roll",
                "shape",
                [
                    (RIGHT, "        chunks.append(torch.stack([ids, ids.roll(-o)], dim=1))\n"),
                    (LEFT, "        chunks.append(torch.stack([ids, ids.roll(o)], dim=1))\n"),
                ],
                ("wrap around",),
            ),
            Mutant(
                "float pairs for a short text",
                "dtype",
                [("return torch.zeros(0, 2, dtype=torch.long)", "return torch.zeros(0, 2)")],
                ("int64",),
            ),
            Mutant(
                "the notebook's WINDOW instead of the argument",
                "argument",
                [(OFFSETS, "    for o in range(1, WINDOW + 1):\n        if")],
                ("`window` argument",),
            ),
        ],
        correct=[
            Correct("no early break", [("        if o >= len(ids):\n            break\n", "")]),
            Correct(
                "two plain loops",
                [
                    (
                        """    chunks = []
    for o in range(1, window + 1):
        if o >= len(ids):
            break
"""
                        + RIGHT
                        + LEFT
                        + """    if not chunks:
        return torch.zeros(0, 2, dtype=torch.long)
    return torch.cat(chunks)""",
                        """    out = []
    for i in range(len(ids)):
        for j in range(max(0, i - window), min(len(ids), i + window + 1)):
            if j != i:
                out.append((int(ids[i]), int(ids[j])))
    return torch.tensor(out, dtype=torch.long).reshape(-1, 2)""",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        4,
        check_keep_probability,
        ("keep_probability",),
        mutants=[
            Mutant(
                "no square root",
                "scale",
                [(KEEP_RETURN, "    return (t / f).clamp(max=1.0)")],
                ("missing square root",),
            ),
            Mutant("no clamp", "branch", [(KEEP_RETURN, "    return torch.sqrt(t / f)")], ("clamped to 1",)),
            Mutant(
                "clamp from below",
                "branch",
                [(KEEP_RETURN, "    return torch.sqrt(t / f).clamp(min=1.0)")],
                ("clamped to 1",),
            ),
            Mutant(
                "discard probability",
                "logic",
                [(KEEP_RETURN, "    return 1 - torch.sqrt(t / f).clamp(max=1.0)")],
                ("DISCARD",),
            ),
            Mutant(
                "raw counts instead of frequencies",
                "scale",
                [(FREQ, "    f = counts")],
                ("relative frequency",),
            ),
            Mutant(
                "the notebook's SUBSAMPLE_T",
                "argument",
                [(KEEP_RETURN, "    return torch.sqrt(SUBSAMPLE_T / f).clamp(max=1.0)")],
                ("`t` argument",),
            ),
            Mutant(
                "normalises counts in place",
                "in-place",
                [(FREQ, "    counts /= counts.sum()\n    f = counts")],
                ("in place",),
            ),
        ],
        correct=[
            Correct(
                "torch.minimum",
                [(KEEP_RETURN, "    return torch.minimum(torch.ones_like(f), (t / f) ** 0.5)")],
            ),
            Correct(
                "without f",
                [(FREQ + "\n" + KEEP_RETURN, "    return (t * counts.sum() / counts).sqrt().clamp(max=1.0)")],
            ),
        ],
    ),
    Todo(
        P,
        5,
        check_sample_negatives,
        ("sample_negatives",),
        mutants=[
            Mutant(
                "raw unigram",
                "scale",
                [("counts.float() ** power", "counts.float()")],
                ("raw unigram distribution", "0.75"),
            ),
            Mutant(
                "uniform",
                "logic",
                [(DRAWS, "draws = torch.randint(0, len(counts), (math.prod(shape),), generator=generator)")],
                ("uniform",),
            ),
            Mutant(
                "ignores the generator",
                "argument",
                [("replacement=True, generator=generator)  # (n,)", "replacement=True)  # (n,)")],
                ("generator",),
            ),
            Mutant(
                "a fixed seed inside",
                "state",
                [
                    (
                        "replacement=True, generator=generator)  # (n,)",
                        "replacement=True, generator=torch.Generator().manual_seed(0))",
                    )
                ],
                ("generator",),
            ),
            Mutant(
                "hard-coded power",
                "argument",
                [("counts.float() ** power", "counts.float() ** 0.75")],
                ("`power` argument",),
            ),
            Mutant(
                "without replacement",
                "logic",
                [
                    (
                        "(weights, math.prod(shape), replacement=True",
                        "(weights, math.prod(shape), replacement=False",
                    )
                ],
                ("replacement=True",),
            ),
            Mutant(
                "flat result",
                "shape",
                [("    return draws.view(shape)", "    return draws")],
                (".view(shape)",),
            ),
            Mutant(
                "two-dimensional shapes only",
                "shape",
                [("weights, math.prod(shape), replacement", "weights, shape[0] * shape[1], replacement")],
                ("math.prod(shape)",),
            ),
        ],
        correct=[
            Correct(
                "normalised probabilities first",
                [
                    (
                        "weights = counts.float() ** power  # (V,)",
                        "weights = (counts / counts.sum()) ** power  # (V,)",
                    )
                ],
            ),
            Correct(
                "reshape and numel",
                [
                    (
                        "weights, math.prod(shape), replacement",
                        "weights, torch.Size(shape).numel(), replacement",
                    ),
                    ("    return draws.view(shape)", "    return draws.reshape(shape)"),
                ],
            ),
        ],
    ),
    Todo(
        P,
        6,
        check_sgns_loss,
        ("sgns_loss",),
        mutants=[
            Mutant(
                "negatives pulled together",
                "scale",
                [("F.logsigmoid(-neg)", "F.logsigmoid(neg)")],
                ("pushed APART",),
            ),
            Mutant(
                "log of sigmoid",
                "stability",
                [
                    (
                        LOSS,
                        "return -(torch.log(torch.sigmoid(pos)) + "
                        "torch.log(torch.sigmoid(-neg)).sum(-1)).mean()",
                    )
                ],
                ("F.logsigmoid",),
            ),
            Mutant(
                "averages the negatives",
                "scale",
                [("F.logsigmoid(-neg).sum(-1)", "F.logsigmoid(-neg).mean(-1)")],
                ("sum the K negative terms",),
            ),
            Mutant(
                "sums over the batch",
                "scale",
                [(LOSS, "return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).sum()")],
                ("average over the batch",),
            ),
            Mutant(
                "positive log-likelihood",
                "scale",
                [(LOSS, "return (F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()")],
                ("NEGATIVE",),
            ),
            Mutant(
                "averages over all 1 + K terms",
                "scale",
                [(LOSS, "return -torch.cat([F.logsigmoid(pos)[:, None], F.logsigmoid(-neg)], dim=1).mean()")],
                ("1 + K",),
            ),
            Mutant(
                "squeeze() drops K = 1",
                "shape",
                [(NEG, "neg = (u_neg @ v.unsqueeze(-1)).squeeze()")],
                ("K = 1", "squeeze(-1)"),
            ),
            Mutant(
                "a (B, B) matrix of positive scores",
                "axis",
                [("pos = (v * u_pos).sum(-1)  # (B,)", "pos = v @ u_pos.T")],
                ("(B, B)",),
            ),
        ],
        correct=[
            Correct("einsum", [(NEG, 'neg = torch.einsum("bkd,bd->bk", u_neg, v)')]),
            Correct("softplus", [(LOSS, "return (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()")]),
            Correct("bmm", [(NEG, "neg = torch.bmm(u_neg, v[:, :, None])[:, :, 0]")]),
        ],
    ),
    Todo(
        P,
        7,
        check_train_skipgram,
        TRAIN_FUNCTIONS,
        mutants=[
            Mutant(
                "uniform negatives",
                "logic",
                [
                    (
                        NEGATIVES,
                        "negatives = torch.randint(0, vocab_size, (len(batch), n_negatives), generator=g)",
                    )
                ],
                ("negatives", "count^0.75"),
            ),
            Mutant(
                "both tables start at zero",
                "logic",
                [("emb_in.weight.uniform_(-0.5 / dim, 0.5 / dim, generator=g)", "emb_in.weight.zero_()")],
                ("did not fall", "both tables start at zero"),
            ),
            Mutant(
                "never steps the optimizer", "logic", [("            opt.step()\n", "")], ("did not fall",)
            ),
            Mutant(
                "optimizes the input table only",
                "argument",
                [
                    (
                        "\n    opt = torch.optim.Adam([emb_in.weight, emb_out.weight], lr=lr)",
                        "\n    opt = torch.optim.Adam([emb_in.weight], lr=lr)",
                    )
                ],
                ("output table", "optimizer"),
            ),
            Mutant(
                "trains on every pair of each pass",
                "off-by-one",
                [
                    (
                        "pairs[torch.randperm(len(pairs), generator=g)][: n_pairs - seen]",
                        "pairs[torch.randperm(len(pairs), generator=g)]",
                    )
                ],
                ("one per batch",),
            ),
            Mutant(
                "context vectors from the input table",
                "logic",
                [
                    (
                        LOSS_CALL,
                        "loss = sgns_loss(emb_in(batch[:, 0]), emb_in(batch[:, 1]), emb_out(negatives))",
                    )
                ],
                ("output table",),
            ),
            Mutant(
                "keeps the loss tensors",
                "grad",
                [("losses.append(loss.item())", "losses.append(loss)")],
                ("loss.item()",),
            ),
            Mutant(
                "the notebook's WINDOW",
                "argument",
                [("pairs = skipgram_pairs(kept, window)  # (P, 2)", "pairs = skipgram_pairs(kept, WINDOW)")],
                ("`window` argument",),
            ),
            Mutant(
                "the notebook's N_NEGATIVES",
                "argument",
                [(NEGATIVES, "negatives = sample_negatives(counts, (len(batch), N_NEGATIVES), g)")],
                ("n_negatives",),
            ),
            Mutant(
                "the notebook's LR",
                "argument",
                [
                    (
                        "\n    opt = torch.optim.Adam([emb_in.weight, emb_out.weight], lr=lr)",
                        "\n    opt = torch.optim.Adam([emb_in.weight, emb_out.weight], lr=LR)",
                    )
                ],
                ("lr",),
            ),
            Mutant(
                "never subsamples",
                "argument",
                [
                    (
                        "kept = ids[torch.rand(len(ids), generator=g) < keep[ids]]  # (T',) subsampled text",
                        "kept = ids",
                    )
                ],
                ("subsample",),
            ),
        ],
        correct=[
            Correct(
                "zero_grad() and a range loop",
                [
                    ("opt.zero_grad(set_to_none=True)", "opt.zero_grad()"),
                    (
                        "        for batch in pairs.split(batch_size):\n",
                        "        for start in range(0, len(pairs), batch_size):\n"
                        "            batch = pairs[start : start + batch_size]\n",
                    ),
                ],
            ),
            Correct(
                "subsampling mask computed separately",
                [
                    (
                        "kept = ids[torch.rand(len(ids), generator=g) < keep[ids]]  # (T',) subsampled text",
                        "u = torch.rand(len(ids), generator=g)\n        kept = ids[u < keep[ids]]",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        8,
        check_nearest_neighbours,
        NN_FUNCTIONS,
        mutants=[
            Mutant("includes the query", "logic", [(EXCLUDE_QUERY, "")], ("query word itself came first",)),
            Mutant(
                "ranks by dot product",
                "scale",
                [
                    (
                        "sims = cosine_matrix(emb[query_ids], emb)  # (Q, V)",
                        "sims = emb[query_ids] @ emb.T  # (Q, V)",
                    )
                ],
                ("dot product",),
            ),
            Mutant(
                "excludes every query from every row",
                "axis",
                [(EXCLUDE_QUERY, "    sims[:, query_ids] = -math.inf\n")],
                ("its own query",),
            ),
            Mutant(
                "excludes the diagonal",
                "axis",
                [(EXCLUDE_QUERY, "    sims.fill_diagonal_(-math.inf)\n")],
                ("query word itself came first",),
            ),
            Mutant(
                "lowest cosine first",
                "logic",
                [(TOPK, "    top = sims.topk(k, dim=1, largest=False)\n")],
                ("highest first",),
            ),
            Mutant(
                "one neighbour too many",
                "off-by-one",
                [(TOPK, "    top = sims.topk(k + 1, dim=1)\n")],
                ("k neighbours",),
            ),
            Mutant(
                "returns (ids, scores)",
                "logic",
                [("    return top.values, top.indices", "    return top.indices, top.values")],
                ("(scores, ids)",),
            ),
        ],
        correct=[
            Correct(
                "sort and slice",
                [
                    (
                        TOPK + "    return top.values, top.indices",
                        "    s, i = sims.sort(dim=1, descending=True)\n    return s[:, :k], i[:, :k]",
                    )
                ],
            ),
            Correct(
                "scatter the exclusion",
                [(EXCLUDE_QUERY, "    sims = sims.scatter(1, query_ids[:, None], -math.inf)\n")],
            ),
            Correct(
                "one query at a time",
                [
                    (
                        EXCLUDE_QUERY + TOPK + "    return top.values, top.indices",
                        "    rows = []\n    for r, q in enumerate(query_ids.tolist()):\n"
                        "        row = sims[r].clone()\n        row[q] = -math.inf\n"
                        "        rows.append(row.topk(k))\n"
                        "    return torch.stack([t.values for t in rows]), "
                        "torch.stack([t.indices for t in rows])",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        9,
        check_analogy,
        AN_FUNCTIONS,
        mutants=[
            Mutant("returns an input word", "logic", [(EXCLUDE_ABC, "")], ("input word", "'king'")),
            Mutant(
                "raw vectors, not unit vectors",
                "scale",
                [(TARGET, "target = emb[a] - emb[b] + emb[c]")],
                ("unit",),
            ),
            Mutant("wrong sign", "logic", [(TARGET, "target = unit[a] + unit[b] - unit[c]")], ("a - b + c",)),
            Mutant("excludes only a", "logic", [(EXCLUDE_ABC, "    sims[a] = -math.inf\n")], ("input word",)),
            Mutant(
                "ignores k", "argument", [(AN_RETURN, "    return sims.topk(1).indices.tolist()")], ("k ids",)
            ),
            Mutant(
                "normalises emb in place",
                "in-place",
                [("unit = F.normalize(emb, dim=1)", "unit = emb.div_(emb.norm(dim=1, keepdim=True))")],
                ("in place",),
            ),
            Mutant(
                "filters a, b, c after the top k",
                "logic",
                [
                    (
                        EXCLUDE_ABC + AN_RETURN,
                        "    return [i for i in sims.topk(k).indices.tolist() if i not in (a, b, c)]",
                    )
                ],
                ("BEFORE",),
            ),
            Mutant(
                "ranks by the raw dot product",
                "scale",
                [("sims = cosine_matrix(target[None], emb)[0]", "sims = emb @ target")],
                ("cosine",),
            ),
        ],
        correct=[
            Correct(
                "dot product with unit vectors",
                [("sims = cosine_matrix(target[None], emb)[0]", "sims = unit @ target")],
            ),
            Correct("argsort", [(AN_RETURN, "    return torch.argsort(sims, descending=True)[:k].tolist()")]),
        ],
    ),
]
