"""Mutation catalogue of 05_block_builder (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.block_builder import (
    check_feed_forward,
    check_mini_former,
    check_train_model,
    check_transformer_block,
)

P = "05_block_builder"
BLOCK_PARTS = ("causal_self_attention", "feed_forward", "transformer_block")
MODEL_PARTS = (*BLOCK_PARTS, "mini_former")

# feed_forward
FF_H = "h = F.gelu(mlp.c_fc(x))"
FF_RET = "return mlp.c_proj(h)"
# transformer_block
PRE_ATTN = "x = keep * x + causal_self_attention(block.ln_1(x), block.attn)"
PRE_FFN = "x = keep * x + feed_forward(block.ln_2(x), block.mlp)"
POST_ATTN = "x = block.ln_1(keep * x + causal_self_attention(x, block.attn))"
POST_FFN = "x = block.ln_2(keep * x + feed_forward(x, block.mlp))"
KEEP = "keep = 1.0 if residual else 0.0"
# mini_former
EMBED = "x = tr.wte(idx) + tr.wpe(torch.arange(T, device=idx.device))"
BLOCK_CALL = "x = transformer_block(x, block, norm_placement, residual)"
HEAD = "return model.lm_head(tr.ln_f(x))"
# train_model
LR_LINE = 'group["lr"] = lr * min(1.0, (t + 1) / (warmup_steps + 1))'
BATCH = 'x, y = get_batch("train", batch_size, gen)'
SEED_LINE = "    gen = torch.Generator().manual_seed(seed)\n    opt"
OPT = (
    "opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0,\n"
    "                            foreach=True)"
)
CLIP = "        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
ZERO = "        opt.zero_grad(set_to_none=True)\n"

CATALOGUE = [
    Todo(
        P,
        1,
        check_feed_forward,
        ("feed_forward",),
        mutants=[
            Mutant(
                "tanh GELU",
                "logic",
                [(FF_H, "h = F.gelu(mlp.c_fc(x), approximate='tanh')")],
                ("tanh approximation",),
            ),
            Mutant("ReLU", "logic", [(FF_H, "h = F.relu(mlp.c_fc(x))")], ("that is ReLU",)),
            Mutant("no activation", "logic", [(FF_H, "h = mlp.c_fc(x)")], ("activation is missing",)),
            Mutant(
                "activation after the second layer",
                "logic",
                [(FF_H, "h = mlp.c_fc(x)"), (FF_RET, "return F.gelu(mlp.c_proj(h))")],
                ("BETWEEN the two Linear layers",),
            ),
            Mutant(
                "biases dropped",
                "logic",
                [
                    (FF_H, "h = F.gelu(F.linear(x, mlp.c_fc.weight))"),
                    (FF_RET, "return F.linear(h, mlp.c_proj.weight)"),
                ],
                ("biases are missing",),
            ),
            Mutant(
                "weight not transposed",
                "axis",
                [(FF_H, "h = F.gelu(x @ mlp.c_fc.weight + mlp.c_fc.bias)")],
                ("(out_features, in_features)", "W.T"),
            ),
            Mutant(
                "sigmoid approximation of GELU",
                "scale",
                [(FF_H, "z = mlp.c_fc(x)\n    h = z * torch.sigmoid(1.702 * z)")],
                ("sigmoid(1.702",),
            ),
            Mutant(
                "erf GELU without the sqrt(2)",
                "scale",
                [(FF_H, "z = mlp.c_fc(x)\n    h = 0.5 * z * (1 + torch.erf(z))")],
                ("sqrt(2)",),
            ),
            Mutant(
                "dropout left on",
                "logic",
                [(FF_H, "h = F.dropout(F.gelu(mlp.c_fc(x)), 0.1)")],
                ("random", "dropout"),
            ),
            Mutant(
                "hidden activations detached",
                "grad",
                [(FF_H, "h = F.gelu(mlp.c_fc(x)).detach()")],
                ("no gradient reached", "autograd graph"),
            ),
        ],
        correct=[
            Correct(
                "explicit erf formula with F.linear",
                [
                    (
                        FF_H,
                        "z = F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias)\n"
                        "    h = 0.5 * z * (1.0 + torch.erf(z / math.sqrt(2.0)))",
                    ),
                    (FF_RET, "return F.linear(h, mlp.c_proj.weight, mlp.c_proj.bias)"),
                ],
            ),
            Correct(
                "matmul with the transposed weights and nn.GELU",
                [
                    (FF_H, "h = nn.GELU()(x @ mlp.c_fc.weight.T + mlp.c_fc.bias)"),
                    (FF_RET, "return h @ mlp.c_proj.weight.T + mlp.c_proj.bias"),
                ],
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_transformer_block,
        BLOCK_PARTS,
        mutants=[
            Mutant(
                "LayerNorm after the residual add in Pre-LN",
                "logic",
                [(PRE_ATTN, POST_ATTN), (PRE_FFN, POST_FFN)],
                ("this is Post-LN",),
            ),
            Mutant(
                "residual stream replaced by its normalised copy",
                "logic",
                [
                    (
                        PRE_ATTN,
                        "x = block.ln_1(x)\n        x = keep * x + causal_self_attention(x, block.attn)",
                    ),
                    (PRE_FFN, "x = block.ln_2(x)\n        x = keep * x + feed_forward(x, block.mlp)"),
                ],
                ("replaced by its normalised copy",),
            ),
            Mutant(
                "no residual at all", "logic", [(KEEP, "keep = 0.0")], ("residual connections are missing",)
            ),
            Mutant(
                "Post-LN normalises the sublayer input",
                "logic",
                [
                    (POST_ATTN, "x = keep * x + causal_self_attention(block.ln_1(x), block.attn)"),
                    (POST_FFN, "x = keep * x + feed_forward(block.ln_2(x), block.mlp)"),
                ],
                ("this is Pre-LN", "normalises the SUM"),
            ),
            Mutant(
                "ln_1 and ln_2 swapped",
                "logic",
                [
                    (
                        "causal_self_attention(block.ln_1(x), block.attn)",
                        "causal_self_attention(block.ln_2(x), block.attn)",
                    ),
                    ("feed_forward(block.ln_2(x), block.mlp)", "feed_forward(block.ln_1(x), block.mlp)"),
                ],
                ("swapped",),
            ),
            Mutant(
                "feed-forward sublayer missing",
                "logic",
                [(PRE_FFN, "x = x")],
                ("feed-forward sublayer is missing",),
            ),
            Mutant(
                "residual argument ignored", "argument", [(KEEP, "keep = 1.0")], ("residual=False must drop",)
            ),
            Mutant(
                "norm_placement ignored",
                "argument",
                [('if norm_placement == "pre":', "if True:")],
                ("this is Pre-LN",),
            ),
            Mutant(
                "residual=False drops only the attention residual",
                "branch",
                [(PRE_FFN, "x = x + feed_forward(block.ln_2(x), block.mlp)")],
                ("BOTH sublayers",),
            ),
            Mutant(
                "ln_1 reused for the feed-forward",
                "logic",
                [("feed_forward(block.ln_2(x), block.mlp)", "feed_forward(block.ln_1(x), block.mlp)")],
                ("ln_2", "feed-forward"),
            ),
            Mutant(
                "parallel attention and feed-forward",
                "logic",
                [
                    (
                        PRE_ATTN + "  # (B, T, C)\n        " + PRE_FFN,
                        "a = causal_self_attention(block.ln_1(x), block.attn)\n"
                        "        x = keep * x + a + feed_forward(block.ln_2(x), block.mlp)",
                    )
                ],
                ("parallel",),
            ),
            Mutant(
                "input updated in place with +=",
                "in-place",
                [
                    (
                        PRE_ATTN,
                        "if residual:\n"
                        "            x += causal_self_attention(block.ln_1(x), block.attn)\n"
                        "        else:\n"
                        "            x = causal_self_attention(block.ln_1(x), block.attn)",
                    )
                ],
                ("in place",),
            ),
        ],
        correct=[
            Correct(
                "if/else on residual instead of keep",
                [
                    (
                        PRE_ATTN,
                        "a = causal_self_attention(block.ln_1(x), block.attn)\n"
                        "        x = x + a if residual else a",
                    ),
                    (
                        PRE_FFN,
                        "f = feed_forward(block.ln_2(x), block.mlp)\n        x = x + f if residual else f",
                    ),
                    (
                        POST_ATTN,
                        "a = causal_self_attention(x, block.attn)\n"
                        "        x = block.ln_1(x + a if residual else a)",
                    ),
                    (
                        POST_FFN,
                        "f = feed_forward(x, block.mlp)\n        x = block.ln_2(x + f if residual else f)",
                    ),
                ],
            ),
            Correct(
                "norm_placement tested for post first",
                [('if norm_placement == "pre":', 'if norm_placement != "post":')],
            ),
        ],
    ),
    Todo(
        P,
        3,
        check_mini_former,
        MODEL_PARTS,
        mutants=[
            Mutant(
                "no position embeddings",
                "positions",
                [(EMBED, "x = tr.wte(idx)")],
                ("position embeddings are missing",),
            ),
            Mutant(
                "every block reads the embeddings",
                "logic",
                [
                    (
                        "        " + BLOCK_CALL,
                        "        out = transformer_block(x, block, norm_placement, residual)\n    x = out",
                    )
                ],
                ("PREVIOUS block's output",),
            ),
            Mutant("no final norm", "logic", [(HEAD, "return model.lm_head(x)")], ("final norm is missing",)),
            Mutant(
                "block 0 every time",
                "logic",
                [(BLOCK_CALL, "x = transformer_block(x, tr.h[0], norm_placement, residual)")],
                ("not block 0",),
            ),
            Mutant(
                "norm_placement and residual not passed on",
                "argument",
                [(BLOCK_CALL, "x = transformer_block(x, block)")],
                ("pass norm_placement",),
            ),
            Mutant(
                "residual not passed on",
                "argument",
                [(BLOCK_CALL, "x = transformer_block(x, block, norm_placement)")],
                ("pass", "residual"),
            ),
            Mutant(
                "positions start at 1",
                "positions",
                [
                    (
                        "tr.wpe(torch.arange(T, device=idx.device))",
                        "tr.wpe(torch.arange(1, T + 1, device=idx.device))",
                    )
                ],
                ("start at 0",),
            ),
            Mutant(
                "token embeddings scaled by sqrt(d_model)",
                "scale",
                [
                    (
                        "x = tr.wte(idx) + tr.wpe(",
                        "x = tr.wte(idx) * math.sqrt(tr.wte.weight.shape[1]) + tr.wpe(",
                    )
                ],
                ("sqrt(d_model)",),
            ),
            Mutant("B and T swapped", "axis", [("B, T = idx.shape", "T, B = idx.shape")], ("idx.shape[1]",)),
            Mutant(
                "positions for the whole block_size",
                "shape",
                [
                    (
                        "tr.wpe(torch.arange(T, device=idx.device))",
                        "tr.wpe(torch.arange(model.config.block_size, device=idx.device))",
                    )
                ],
                ("torch.arange(T)",),
            ),
            Mutant(
                "position table read through .data",
                "grad",
                [("tr.wpe(torch.arange(T, device=idx.device))", "tr.wpe.weight.data[:T]")],
                ("no gradient reached", "transformer.wpe.weight"),
            ),
        ],
        correct=[
            Correct(
                "positions from idx.size(1) without device",
                [(EMBED, "x = tr.wte(idx) + tr.wpe(torch.arange(idx.size(1)))")],
            ),
            Correct(
                "blocks by index",
                [
                    (
                        "    for block in tr.h:\n        " + BLOCK_CALL,
                        "    for i in range(len(tr.h)):\n"
                        "        x = transformer_block(x, tr.h[i], norm_placement, residual)",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        4,
        check_train_model,
        ("train_model",),
        mutants=[
            Mutant(
                "no gradient clipping",
                "logic",
                [(CLIP, "")],
                ("must be clipped to 1", "BEFORE optimizer.step()"),
            ),
            Mutant(
                "clipping after the step",
                "logic",
                [(CLIP + "        opt.step()\n", "        opt.step()\n" + CLIP)],
                ("must be clipped to 1", "BEFORE optimizer.step()"),
            ),
            Mutant(
                "generator re-seeded every step",
                "state",
                [
                    (
                        "        " + BATCH,
                        '        x, y = get_batch("train", batch_size, torch.Generator().manual_seed(seed))',
                    )
                ],
                ("same batch", "ONCE"),
            ),
            Mutant(
                "seed ignored",
                "argument",
                [(SEED_LINE, "    gen = torch.Generator().manual_seed(1234)\n    opt")],
                ("first batch", "manual_seed(seed)"),
            ),
            Mutant("no zero_grad", "grad", [(ZERO, "")], ("ACCUMULATE", "zero_grad")),
            Mutant(
                "zero_grad between backward and step",
                "grad",
                [(ZERO + "        loss.backward()\n", "        loss.backward()\n" + ZERO)],
                ("never moved",),
            ),
            Mutant("no warmup", "branch", [(LR_LINE, 'group["lr"] = lr')], ("never warmed up",)),
            Mutant(
                "warmup starts at zero",
                "off-by-one",
                [(LR_LINE, 'group["lr"] = lr * min(1.0, t / warmup_steps)')],
                ("off by one",),
            ),
            Mutant(
                "warmup reaches lr one step early",
                "off-by-one",
                [(LR_LINE, 'group["lr"] = lr * min(1.0, (t + 1) / warmup_steps)')],
                ("warmup_steps=0",),
            ),
            Mutant(
                "returns a tensor",
                "dtype",
                [("    return losses", "    return torch.tensor(losses)")],
                ("list of 8 Python floats",),
            ),
            Mutant(
                "losses kept as tensors",
                "dtype",
                [("losses.append(loss.item())", "losses.append(loss)")],
                ("Python floats", "loss.item()"),
            ),
            Mutant(
                "batch_size ignored",
                "argument",
                [(BATCH, 'x, y = get_batch("train", BATCH_SIZE, gen)')],
                ("pass the batch_size argument",),
            ),
            Mutant(
                "trains on the validation split",
                "argument",
                [(BATCH, 'x, y = get_batch("val", batch_size, gen)')],
                ("training split",),
            ),
            Mutant(
                "optimizer created every step",
                "state",
                [
                    ("    " + OPT + "  # foreach: one batched update for all tensors, faster on CPU\n", ""),
                    (
                        "    for t in range(steps):\n",
                        "    for t in range(steps):\n"
                        "        opt = torch.optim.AdamW(model.parameters(), lr=lr)\n",
                    ),
                ],
                ("ONCE", "moment"),
            ),
            Mutant(
                "plain SGD", "logic", [(OPT, "opt = torch.optim.SGD(model.parameters(), lr=lr)")], ("SGD",)
            ),
        ],
        correct=[
            Correct(
                "AdamW with its default hyper-parameters",
                [(OPT, "opt = torch.optim.AdamW(model.parameters(), lr=lr)")],
            ),
            Correct(
                "LambdaLR warmup and model.zero_grad",
                [
                    (
                        "    losses = []\n",
                        "    losses = []\n    sched = torch.optim.lr_scheduler.LambdaLR(\n"
                        "        opt, lambda t: min(1.0, (t + 1) / (warmup_steps + 1)))\n",
                    ),
                    ("        for group in opt.param_groups:\n            " + LR_LINE + "\n", ""),
                    (ZERO, "        model.zero_grad()\n"),
                    ("        opt.step()\n", "        opt.step()\n        sched.step()\n"),
                ],
            ),
        ],
    ),
]
