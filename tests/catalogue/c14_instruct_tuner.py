"""Mutation catalogue of 14_instruct_tuner (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.instruct_tuner import (
    check_build_example,
    check_init_lora,
    check_lora_forward,
    check_merge_lora,
    check_sft_batch,
    check_sft_train,
)

P = "14_instruct_tuner"

ENCODE = "    ids = tok.encode(USER + prompt + ASSISTANT + response + END)"
START = "response_start = 1 + len(prompt) + 1"
SFT_LINE = "y[b, start - 1 : n] = ids_t[start:]"
T_LINE = "T = max(len(ids) for ids, _ in examples) - 1"
IDS_T = "ids_t = torch.tensor(ids, dtype=torch.long)  # (n + 1,)"
OPT = "opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)"
ZERO = "        opt.zero_grad(set_to_none=True)\n"
B_INIT = "B = torch.zeros(out_features, r)"
A_LINE = "A = torch.empty(r, in_features).uniform_(-bound, bound, generator=generator)  # (r, in)"
A_DRAW = ".uniform_(-bound, bound, generator=generator)  # (r, in)"
FROZEN = "frozen = F.linear(x, weight, bias)  # (..., out)"
LOW = "low_rank = (x @ A.T) @ B.T  # (..., r) -> (..., out)"
OUT = "return frozen + scale * low_rank"
MERGE = "return weight + scale * (B @ A)"

CATALOGUE = [
    Todo(P, 1, check_build_example, ("build_example",), mutants=[
        Mutant("no END token", "logic",
               [(ENCODE, "    ids = tok.encode(USER + prompt + ASSISTANT + response)")],
               ("END", "never learns to stop")),
        Mutant("no ASSISTANT token", "logic",
               [(ENCODE, "    ids = tok.encode(USER + prompt + response + END)")],
               ("ASSISTANT",)),
        Mutant("start one too early", "off-by-one", [("1 + len(prompt) + 1", "1 + len(prompt)")],
               ("one too early",)),
        Mutant("start one too late", "off-by-one", [(START, "response_start = 1 + len(prompt) + 2")],
               ("one too late",)),
        Mutant("start counted from the end without END", "off-by-one",
               [(START, "response_start = len(ids) - len(response)")], ("one too late",)),
        Mutant("start found by searching the first response character", "logic",
               [(START, "response_start = ids.index(tok.encode(response or END)[0])")], ("prompt",)),
        Mutant("spaces between the pieces", "logic",
               [(ENCODE, "    ids = tok.encode(USER + ' ' + prompt + ' ' + ASSISTANT + ' ' + response + "
                         "END)")],
               ("no spaces",)),
        Mutant("response before the prompt", "logic",
               [(ENCODE, "    ids = tok.encode(USER + response + ASSISTANT + prompt + END)")], ("order",)),
    ], correct=[
        Correct("start found after the ASSISTANT token",
                [(START, "response_start = ids.index(tok.encode(ASSISTANT)[0]) + 1")]),
        Correct("start as the length of the prompt part",
                [(START, "response_start = len(USER + prompt + ASSISTANT)")]),
        Correct("pieces encoded one by one",
                [(ENCODE, "    ids = (tok.encode(USER) + tok.encode(prompt) + tok.encode(ASSISTANT) + "
                          "tok.encode(response) + tok.encode(END))")]),
    ]),
    Todo(P, 2, check_sft_batch, ("sft_batch",), mutants=[
        Mutant("nothing masked", "branch", [(SFT_LINE, "y[b, :n] = ids_t[1:]")],
               ("not masked", "write prompts")),
        Mutant("response masked instead of the prompt", "logic",
               [(SFT_LINE, "y[b, : start - 1] = ids_t[1:start]")], ("inverted",)),
        Mutant("first response target masked", "off-by-one",
               [(SFT_LINE, "y[b, start : n] = ids_t[start + 1 :]")],
               ("FIRST response token", "start - 1")),
        Mutant("ASSISTANT target counted", "off-by-one",
               [(SFT_LINE, "y[b, start - 2 : n] = ids_t[start - 1 :]")],
               ("start - 2",)),
        Mutant("targets padded with pad_id", "logic",
               [("y = torch.full((len(examples), T), IGNORE_INDEX",
                 "y = torch.full((len(examples), T), pad_id")],
               ("padding",)),
        Mutant("targets not shifted", "off-by-one",
               [(SFT_LINE, "y[b, start - 1 : n] = ids_t[start - 1 : n]")],
               ("shifted", "ids[t + 1]")),
        Mutant("T from the first example", "shape", [(T_LINE, "T = len(examples[0][0]) - 1")],
               ("max(len(ids))",)),
        Mutant("T not shortened by one", "off-by-one", [(T_LINE, "T = max(len(ids) for ids, _ in examples)")],
               ("max(len(ids)) - 1",)),
        Mutant("inputs padded with 0", "argument",
               [("x = torch.full((len(examples), T), pad_id", "x = torch.full((len(examples), T), 0")],
               ("pad_id",)),
        Mutant("example lists padded in place", "in-place",
               [(IDS_T, "ids += [pad_id] * (T + 1 - len(ids))\n        ids_t = torch.tensor(ids[: n + 1])")],
               ("in place",)),
    ], correct=[
        Correct("pad_sequence of the shifted slices", [
            ("    x = torch.full((len(examples), T), pad_id, dtype=torch.long)  # (B, T)\n", ""),
            ("    y = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)  # (B, T)\n", ""),
            ("    for b, (ids, start) in enumerate(examples):",
             "    xs, ys = [], []\n    for b, (ids, start) in enumerate(examples):"),
            ("        x[b, :n] = ids_t[:-1]\n", "        xs.append(ids_t[:-1])\n"),
            (SFT_LINE, "ys.append(torch.cat([torch.full((start - 1,), IGNORE_INDEX), ids_t[start:]]))"),
            ("    return x, y",
             "    x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True, padding_value=pad_id)\n"
             "    y = torch.nn.utils.rnn.pad_sequence(ys, batch_first=True, padding_value=IGNORE_INDEX)\n"
             "    return x, y"),
        ]),
        Correct("targets copied, then the prompt masked",
                [(SFT_LINE, "y[b, :n] = ids_t[1:]\n        y[b, : start - 1] = IGNORE_INDEX")]),
    ]),
    Todo(P, 3, check_sft_train, ("sft_train",), mutants=[
        Mutant("zero_grad missing", "grad", [(ZERO, "")], ("zero_grad",)),
        Mutant("optimizer step missing", "logic", [("        opt.step()\n", "")], ("opt.step()",)),
        Mutant("losses kept as tensors", "grad", [("losses.append(loss.item())", "losses.append(loss)")],
               ("loss.item()",)),
        Mutant("frozen parameter trained", "logic",
               [("params = [p for p in model.parameters() if p.requires_grad]",
                 "params = [p.requires_grad_(True) for p in model.parameters()]")], ("frozen parameter",)),
        Mutant("weight_decay ignored", "argument",
               [(OPT, "opt = torch.optim.AdamW(params, lr=lr, foreach=True)")],
               ("weight_decay",)),
        Mutant("Adam with L2 instead of AdamW", "logic",
               [(OPT, "opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)")],
               ("AdamW",)),
        Mutant("lr hard-coded", "argument",
               [(OPT, "opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=weight_decay, foreach=True)")],
               ("lr=lr",)),
        Mutant("optimizer created every step", "state",
               [("    " + OPT + "\n", ""), ("        x, y = get_batch(step)\n",
                                   "        x, y = get_batch(step)\n        " + OPT + "\n")], ("once",)),
        Mutant("loss recorded after the update", "off-by-one",
               [("losses.append(loss.item())", "losses.append(model(x, y)[1].item())")], ("before",)),
        Mutant("same batch every step", "argument",
               [("        x, y = get_batch(step)\n", "        x, y = get_batch(0)\n")],
               ("get_batch(step)",)),
        Mutant("model.train() missing", "state", [("    model.train()\n", "")], ("model.train()",)),
        Mutant("model.eval() missing", "state", [("    model.eval()\n", "")], ("model.eval()",)),
    ], correct=[
        Correct("zero_grad after the step", [(ZERO, ""), ("        opt.step()\n",
                                                          "        opt.step()\n        opt.zero_grad()\n")]),
        Correct("filter on requires_grad, default loop", [
            (OPT, "opt = torch.optim.AdamW(filter(lambda p: p.requires_grad, model.parameters()), lr=lr, "
                  "weight_decay=weight_decay)")]),
        Correct("loss as a float recorded before backward", [
            ("        opt.zero_grad(set_to_none=True)\n        loss.backward()",
             "        losses.append(float(loss.detach()))\n        opt.zero_grad(set_to_none=True)\n        "
             "loss.backward()"),
            ("        losses.append(loss.item())\n", "")]),
    ]),
    Todo(P, 4, check_init_lora, ("init_lora",), mutants=[
        Mutant("B initialised non-zero", "logic",
               [(B_INIT, "B = torch.empty(out_features, r).uniform_(-bound, bound, generator=generator)")],
               ("B starts at zero", "EXACTLY equal to the base")),
        Mutant("scale inverted", "scale", [("return A, B, alpha / r", "return A, B, r / alpha")],
               ("inverted", "alpha / r")),
        Mutant("scale missing", "scale", [("return A, B, alpha / r", "return A, B, 1.0")],
               ("not alpha / r",)),
        Mutant("A all zero", "logic", [(A_DRAW, ".zero_()  # (r, in)")], ("A is constant",)),
        Mutant("A standard normal", "scale", [(A_DRAW, ".normal_(generator=generator)  # (r, in)")],
               ("1/sqrt(in_features)",)),
        Mutant("bound from out_features", "argument",
               [("bound = 1.0 / math.sqrt(in_features)", "bound = 1.0 / math.sqrt(out_features)")],
               ("1/sqrt(in_features)",)),
        Mutant("bound without the square root", "scale",
               [("bound = 1.0 / math.sqrt(in_features)", "bound = 1.0 / in_features")],
               ("1/sqrt(in_features)",)),
        Mutant("A transposed", "axis", [(A_LINE, "A = torch.empty(in_features, r)" + A_DRAW)],
               ("(r, in_features)",)),
        Mutant("scale by integer division", "dtype", [("return A, B, alpha / r", "return A, B, alpha // r")],
               ("//",)),
        Mutant("generator ignored", "argument", [(A_DRAW, ".uniform_(-bound, bound)  # (r, in)")],
               ("generator=generator",)),
    ], correct=[
        Correct("kaiming_uniform_ with a = sqrt(5)",
                [(A_LINE, "A = torch.nn.init.kaiming_uniform_(torch.empty(r, in_features), a=math.sqrt(5), "
                          "generator=generator)")]),
        Correct("rand scaled to ±bound",
                [(A_LINE, "A = (torch.rand(r, in_features, generator=generator) * 2 - 1) * bound")]),
    ]),
    Todo(P, 5, check_lora_forward, ("lora_forward",), mutants=[
        Mutant("scale missing", "scale", [(OUT, "return frozen + low_rank")], ("without the scale",)),
        Mutant("adapter ignored", "logic", [(OUT, "return frozen")], ("ignores the adapter",)),
        Mutant("bias dropped", "argument", [(FROZEN, "frozen = x @ weight.T")], ("x @ W.T + b",)),
        Mutant("scale on the frozen path too", "scale", [(OUT, "return scale * (frozen + low_rank)")],
               ("only the low-rank path",)),
        Mutant("scale divides", "scale", [(OUT, "return frozen + low_rank / scale")], ("multiply",)),
        Mutant("A and B in the wrong order", "axis", [(LOW, "low_rank = (x @ B.T) @ A.T")], ("x @ A.T",)),
        Mutant("weights not transposed", "axis", [(LOW, "low_rank = (x @ A) @ B")], ("x @ A.T",)),
        Mutant("adapter merged into the frozen weight in place", "in-place",
               [(FROZEN, "weight += scale * (B @ A)\n    frozen = F.linear(x, weight, bias)"),
                (OUT, "return frozen")],
               ("in place",)),
        Mutant("einsum only for 3-D inputs", "shape",
               [(LOW, "low_rank = torch.einsum('btr,or->bto', torch.einsum('bti,ri->btr', x, A), B)")],
               ("leading",)),
    ], correct=[
        Correct("einsum with an ellipsis",
                [(LOW, "low_rank = torch.einsum('...r,or->...o', torch.einsum('...i,ri->...r', x, A), B)")]),
        Correct("two F.linear calls", [(LOW, "low_rank = F.linear(F.linear(x, A), B)")]),
    ]),
    Todo(P, 6, check_merge_lora, ("merge_lora",), mutants=[
        Mutant("scale forgotten", "scale", [(MERGE, "return weight + B @ A")], ("scale is missing",)),
        Mutant("merged in place", "in-place", [(MERGE, "return weight.add_(scale * (B @ A))")],
               ("in place",)),
        Mutant("merged in place with +=", "in-place",
               [(MERGE, "weight += scale * (B @ A)\n    return weight")],
               ("in place",)),
        Mutant("product transposed", "axis", [(MERGE, "return weight + scale * (A.T @ B.T)")],
               ("(out_features, in_features)",)),
        Mutant("A and B in the wrong order", "axis", [(MERGE, "return weight + scale * (A @ B)")],
               ("B @ A",)),
        Mutant("scale divides", "scale", [(MERGE, "return weight + (B @ A) / scale")], ("multiply",)),
        Mutant("scale on the whole weight", "scale", [(MERGE, "return scale * (weight + B @ A)")],
               ("only the adapter",)),
        Mutant("merged in float64", "dtype",
               [(MERGE, "return weight.double() + scale * (B.double() @ A.double())")], ("dtype",)),
    ], correct=[
        Correct("addmm", [(MERGE, "return torch.addmm(weight, B, A, alpha=scale)")]),
        Correct("clone then add_", [(MERGE, "return weight.clone().add_(B @ A, alpha=scale)")]),
        Correct("einsum", [(MERGE, "return weight + scale * torch.einsum('or,ri->oi', B, A)")]),
    ]),
]
