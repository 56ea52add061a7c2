"""Mutation catalogue of 10_grouped_query (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.grouped_query import (
    check_convert_to_gqa,
    check_grouped_query_attention,
    check_kv_cache_bytes,
    check_mean_pool_kv,
    check_repeat_kv,
)

P = "10_grouped_query"
REPEAT_LINE = "return kv[:, :, None].expand(B, nkv, n_rep, S, hs).reshape(B, nkv * n_rep, S, hs)"
GQA = ("repeat_kv", "grouped_query_attention")
SDPA = "y = F.scaled_dot_product_attention(q, k, v, is_causal=True)"
SPLIT = ".split([n_head * hs, n_kv_head * hs, n_kv_head * hs], dim=-1)"
MERGE = "return F.linear(y.transpose(1, 2).reshape(B, T, C), w_o, b_o)"
Q_VIEW = "q = q.view(B, T, n_head, hs).transpose(1, 2)"
K_VIEW = "k = k.view(B, T, n_kv_head, hs).transpose(1, 2)"
V_VIEW = "v = v.view(B, T, n_kv_head, hs).transpose(1, 2)"
REP_K = "k = repeat_kv(k, n_head // n_kv_head)  # (B, nh, T, hs)"
REP_V = "v = repeat_kv(v, n_head // n_kv_head)  # (B, nh, T, hs)"
POOL_LINE = "grouped = rows.reshape(n_kv_head, r, hs, *rows.shape[1:])  # (nkv, r, hs, ...)"
POOL_RETURN = "return grouped.mean(dim=1).reshape(n_kv_head * hs, *rows.shape[1:])"
CONVERT = ("mean_pool_kv", "convert_to_gqa")
FORMULA = "per_token = 2 * config.n_layer * config.kv_heads * config.head_dim"
TOTAL = "return per_token * seq_len * batch_size * BYTES_PER_ELEMENT[dtype]"

CATALOGUE = [
    Todo(
        P,
        1,
        check_repeat_kv,
        ("repeat_kv",),
        mutants=[
            Mutant(
                "tiled with repeat",
                "axis",
                [(REPEAT_LINE, "return kv.repeat(1, n_rep, 1, 1)")],
                ("wrong order", "repeat_interleave"),
            ),
            Mutant(
                "repeats the time axis",
                "axis",
                [(REPEAT_LINE, "return kv.repeat_interleave(n_rep, dim=2)")],
                ("time axis",),
            ),
            Mutant(
                "tiled with torch.cat",
                "axis",
                [(REPEAT_LINE, "return torch.cat([kv] * n_rep, dim=1)")],
                ("wrong order", "repeat_interleave"),
            ),
            Mutant(
                "new axis before the heads",
                "axis",
                [
                    (
                        REPEAT_LINE,
                        "return kv[:, None].expand(B, n_rep, nkv, S, hs).reshape(B, nkv * n_rep, S, hs)",
                    )
                ],
                ("wrong order",),
            ),
            Mutant(
                "view after expand",
                "shape",
                [
                    (
                        REPEAT_LINE,
                        "return kv[:, :, None].expand(B, nkv, n_rep, S, hs).view(B, nkv * n_rep, S, hs)",
                    )
                ],
                (".reshape, not .view",),
            ),
            Mutant(
                "repeats the batch axis",
                "axis",
                [(REPEAT_LINE, "return kv.repeat_interleave(n_rep, dim=0)")],
                ("batch axis",),
            ),
            Mutant(
                "n_rep hard-coded to 2",
                "argument",
                [(REPEAT_LINE, "return kv[:, :, None].expand(B, nkv, 2, S, hs).reshape(B, nkv * 2, S, hs)")],
                ("n_rep argument",),
            ),
        ],
        correct=[
            Correct("repeat_interleave", [(REPEAT_LINE, "return kv.repeat_interleave(n_rep, dim=1)")]),
            Correct(
                "stack then reshape",
                [(REPEAT_LINE, "return torch.stack([kv] * n_rep, dim=2).reshape(B, nkv * n_rep, S, hs)")],
            ),
            Correct(
                "unsqueeze + repeat",
                [
                    (
                        REPEAT_LINE,
                        "return kv.unsqueeze(2).repeat(1, 1, n_rep, 1, 1).reshape(B, nkv * n_rep, S, hs)",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_grouped_query_attention,
        GQA,
        mutants=[
            Mutant(
                "KV heads tiled in repeat_kv",
                "axis",
                [(REPEAT_LINE, "return kv.repeat(1, n_rep, 1, 1)")],
                ("wrong order", "repeat_interleave"),
            ),
            Mutant(
                "no causal mask",
                "branch",
                [(SDPA, "y = F.scaled_dot_product_attention(q, k, v)")],
                ("no causal mask",),
            ),
            Mutant(
                "k and v swapped",
                "logic",
                [("q, k, v = F.linear(x, w_qkv, b_qkv)", "q, v, k = F.linear(x, w_qkv, b_qkv)")],
                ("k and v are swapped",),
            ),
            Mutant(
                "scores scaled by 1/sqrt(C)",
                "scale",
                [
                    (
                        SDPA,
                        "att = (q @ k.transpose(-2, -1)) / math.sqrt(C)\n"
                        "    future = torch.ones(T, T, dtype=torch.bool).triu(1)\n"
                        '    att = att.masked_fill(future, float("-inf"))\n'
                        "    y = torch.softmax(att, dim=-1) @ v",
                    )
                ],
                ("1/sqrt(hs)",),
            ),
            Mutant(
                "heads merged without the transpose",
                "axis",
                [(MERGE, "return F.linear(y.reshape(B, T, C), w_o, b_o)")],
                ("y.transpose(1, 2)",),
            ),
            Mutant(
                "heads split without the transpose",
                "axis",
                [
                    (Q_VIEW, "q = q.reshape(B, n_head, T, hs)"),
                    (K_VIEW, "k = k.reshape(B, n_kv_head, T, hs)"),
                    (V_VIEW, "v = v.reshape(B, n_kv_head, T, hs)"),
                ],
                (".transpose(1, 2)", "mixes"),
            ),
            Mutant(
                "b_qkv ignored",
                "argument",
                [("q, k, v = F.linear(x, w_qkv, b_qkv)", "q, k, v = F.linear(x, w_qkv)")],
                ("b_qkv",),
            ),
            Mutant(
                "b_o ignored",
                "argument",
                [(MERGE, "return F.linear(y.transpose(1, 2).reshape(B, T, C), w_o)")],
                ("b_o",),
            ),
            Mutant(
                "split into C-sized chunks as in MHA",
                "shape",
                [(SPLIT, ".split(C, dim=-1)")],
                ("not C each",),
            ),
            Mutant(
                "n_rep = n_kv_head",
                "logic",
                [(REP_K, "k = repeat_kv(k, n_kv_head)"), (REP_V, "v = repeat_kv(v, n_kv_head)")],
                ("n_head // n_kv_head",),
            ),
            Mutant("only k repeated", "logic", [("    " + REP_V + "\n", "")], ("BOTH k and v",)),
            Mutant(
                "head size from the KV heads",
                "logic",
                [("hs = C // n_head\n", "hs = C // n_kv_head\n")],
                ("hs = C // n_head",),
            ),
        ],
        correct=[
            Correct(
                "SDPA enable_gqa without repeat_kv",
                [
                    ("    " + REP_K + "\n", ""),
                    ("    " + REP_V + "\n", ""),
                    (SDPA, "y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)"),
                ],
            ),
            Correct(
                "explicit softmax attention",
                [
                    (
                        SDPA,
                        "att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)\n"
                        "    allowed = torch.ones(T, T, dtype=torch.bool).tril()\n"
                        '    att = att.masked_fill(~allowed, float("-inf"))\n'
                        "    y = torch.softmax(att, dim=-1) @ v",
                    )
                ],
            ),
            Correct(
                "repeat_interleave in place of repeat_kv",
                [
                    (REP_K, "k = k.repeat_interleave(n_head // n_kv_head, dim=1)"),
                    (REP_V, "v = v.repeat_interleave(n_head // n_kv_head, dim=1)"),
                ],
            ),
        ],
    ),
    Todo(
        P,
        3,
        check_mean_pool_kv,
        ("mean_pool_kv",),
        mutants=[
            Mutant(
                "pooled across groups",
                "axis",
                [(POOL_LINE, "grouped = rows.reshape(r, n_kv_head, hs, *rows.shape[1:]).transpose(0, 1)")],
                ("ACROSS groups", "CONSECUTIVE"),
            ),
            Mutant(
                "first head of each group kept",
                "logic",
                [("grouped.mean(dim=1)", "grouped[:, 0]")],
                ("first head",),
            ),
            Mutant(
                "mean over head_dim",
                "axis",
                [("grouped.mean(dim=1)", "grouped.mean(dim=2, keepdim=True).expand_as(grouped)[:, 0]")],
                ("head_dim",),
            ),
            Mutant(
                "bias left unpooled",
                "branch",
                [
                    (
                        "None if b_qkv is None else convert(b_qkv)",
                        "None if b_qkv is None else b_qkv[: len(convert(b_qkv))]",
                    )
                ],
                ("pool the bias",),
            ),
            Mutant(
                "summed, not averaged", "scale", [("grouped.mean(dim=1)", "grouped.sum(dim=1)")], ("summed",)
            ),
            Mutant(
                "q rows pooled too",
                "logic",
                [
                    (
                        "torch.cat([q, pool(k), pool(v)], dim=0)",
                        "torch.cat([pool(q), pool(k), pool(v)], dim=0)",
                    )
                ],
                ("q rows too",),
            ),
            Mutant(
                "group size r = n_kv_head",
                "logic",
                [("r = n_head // n_kv_head\n", "r = n_kv_head\n")],
                ("r = n_head // n_kv_head",),
            ),
            Mutant(
                "None bias not handled",
                "branch",
                [
                    (
                        "return convert(w_qkv), None if b_qkv is None else convert(b_qkv)",
                        "return convert(w_qkv), convert(b_qkv)",
                    )
                ],
                ("None",),
            ),
        ],
        correct=[
            Correct(
                "hs from d_model", [("hs = w_qkv.shape[0] // (3 * n_head)", "hs = w_qkv.shape[1] // n_head")]
            ),
            Correct(
                "loop over the groups",
                [
                    (POOL_LINE, "size = r * hs"),
                    (
                        POOL_RETURN,
                        "return torch.cat([rows[g * size : (g + 1) * size].reshape(r, hs, "
                        "*rows.shape[1:]).mean(0) for g in range(n_kv_head)])",
                    ),
                ],
            ),
            Correct("sum / r", [("grouped.mean(dim=1)", "(grouped.sum(dim=1) / r)")]),
        ],
    ),
    Todo(
        P,
        4,
        check_convert_to_gqa,
        CONVERT,
        mutants=[
            Mutant(
                "only the converted tensors loaded",
                "logic",
                [
                    (
                        "    new.load_state_dict(state)\n",
                        "    new.load_state_dict({k: v for k, v in state.items() if 'c_attn' in k}, "
                        "strict=False)\n",
                    )
                ],
                ("differs from the original", "copy every other tensor"),
            ),
            Mutant(
                "original model modified in place",
                "in-place",
                [
                    (
                        "state = {key: value.clone() for key, value in model.state_dict().items()}",
                        "state = model.state_dict()\n    model.transformer.wte.weight.data.mul_(1.0001)",
                    )
                ],
                ("original model changed",),
            ),
            Mutant(
                "original config changed in place",
                "in-place",
                [
                    (
                        "config = dataclasses.replace(model.config, n_kv_head=n_kv_head)",
                        "model.config.n_kv_head = n_kv_head\n    config = model.config",
                    )
                ],
                ("original model's config", "dataclasses.replace"),
            ),
            Mutant(
                "only the first layer converted",
                "off-by-one",
                [("for i in range(config.n_layer):", "for i in range(1):")],
                ("EVERY layer",),
            ),
            Mutant(
                "pooled bias not stored",
                "branch",
                [('        if b is not None:\n            state[prefix + "bias"] = b\n', "")],
                ("AND bias",),
            ),
            Mutant(
                "new GPT built from the old config",
                "argument",
                [("new = GPT(config)", "new = GPT(model.config)")],
                ("dataclasses.replace",),
            ),
            Mutant(
                "bias looked up with [] (bias=False models)",
                "branch",
                [('state.get(prefix + "bias")', 'state[prefix + "bias"]')],
                ("bias=False",),
            ),
        ],
        correct=[
            Correct(
                "copy into the new model's tensors",
                [
                    (
                        "    new.load_state_dict(state)\n",
                        "    with torch.no_grad():\n"
                        "        for key, tensor in new.state_dict().items():\n"
                        "            tensor.copy_(state[key])\n",
                    )
                ],
            ),
            Correct(
                "pool from the blocks' modules",
                [
                    (
                        'w, b = mean_pool_kv(state[prefix + "weight"], state.get(prefix + "bias"), '
                        "config.n_head, n_kv_head)",
                        "c_attn = model.transformer.h[i].attn.c_attn\n"
                        "        w, b = mean_pool_kv(c_attn.weight.detach(), None if c_attn.bias is None "
                        "else c_attn.bias.detach(),\n                            config.n_head, n_kv_head)",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        5,
        check_kv_cache_bytes,
        ("kv_cache_bytes",),
        mutants=[
            Mutant(
                "factor 2 for K and V forgotten",
                "scale",
                [(FORMULA, "per_token = config.n_layer * config.kv_heads * config.head_dim")],
                ("factor 2", "keys AND values"),
            ),
            Mutant(
                "n_head for the KV heads",
                "logic",
                [(FORMULA, FORMULA.replace("config.kv_heads", "config.n_head"))],
                ("you used n_head",),
            ),
            Mutant(
                "n_kv_head, None for MHA",
                "branch",
                [(FORMULA, FORMULA.replace("config.kv_heads", "config.n_kv_head"))],
                ("config.kv_heads", "None"),
            ),
            Mutant(
                "elements, not bytes", "scale", [(" * BYTES_PER_ELEMENT[dtype]", "")], ("bytes per element",)
            ),
            Mutant(
                "dtype not validated",
                "validation",
                [("if dtype not in BYTES_PER_ELEMENT:", "if False:")],
                ("dtype", "ValueError"),
            ),
            Mutant(
                "ValueError without the argument's name",
                "validation",
                [
                    (
                        'raise ValueError(f"{name}={value!r} must be a positive int")',
                        'raise ValueError("bad input")',
                    )
                ],
                ("does not name the bad argument",),
            ),
            Mutant(
                "batch size left out",
                "argument",
                [(TOTAL, "return per_token * seq_len * BYTES_PER_ELEMENT[dtype]")],
                ("batch size is missing",),
            ),
            Mutant(
                "n_layer left out",
                "logic",
                [(FORMULA, "per_token = 2 * config.kv_heads * config.head_dim")],
                ("n_layer is missing",),
            ),
            Mutant(
                "head_dim as d_model / n_head",
                "dtype",
                [
                    (
                        FORMULA,
                        "per_token = 2 * config.n_layer * config.kv_heads * (config.d_model / config.n_head)",
                    )
                ],
                ("int",),
            ),
            Mutant(
                "d_model per KV head",
                "logic",
                [(FORMULA, FORMULA.replace("config.head_dim", "config.d_model"))],
                ("head_dim",),
            ),
            Mutant(
                "dtype hard-coded to bf16",
                "argument",
                [(TOTAL, 'return per_token * seq_len * batch_size * BYTES_PER_ELEMENT["bf16"]')],
                ("dtype argument is ignored",),
            ),
            Mutant(
                "zero length accepted",
                "off-by-one",
                [("or value < 1:", "or value < 0:")],
                ("seq_len", "instead of raising"),
            ),
        ],
        correct=[
            Correct(
                "math.prod",
                [(TOTAL, "return math.prod([per_token, seq_len, batch_size, BYTES_PER_ELEMENT[dtype]])")],
            ),
            Correct(
                "n_kv_head or n_head",
                [
                    (
                        FORMULA,
                        "per_token = 2 * config.n_layer * (config.n_kv_head or "
                        "config.n_head) * (config.d_model // config.n_head)",
                    )
                ],
            ),
        ],
    ),
]
