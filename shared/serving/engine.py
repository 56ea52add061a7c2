"""A small paged-attention serving engine with continuous batching, for the tiny GPT of ``shared.model``.

The KV cache is cut into fixed-size blocks (Kwon et al. 2023, "Efficient Memory Management for Large
Language Model Serving with PagedAttention", §4.1–4.3): each layer owns a pool of
``num_blocks`` blocks of ``block_size`` positions, a sequence owns a *block table* (the list of its
block ids, in position order), and attention gathers a sequence's keys and values through that table.
A block is taken from a free list only when a sequence's next position needs one, so the memory a
sequence holds is its length rounded up to a block, not the maximum length. Blocks carry reference
counts: ``fork`` shares every block of a sequence with a new one, and the first write into a shared
block copies it (copy-on-write, §4.4).

The scheduler works at the granularity of iterations (Yu et al. 2022, "Orca", §3.1): every ``step``
admits waiting requests while blocks are free and the batch has room, runs one decode step for every
running sequence, and retires finished ones at once. When a running sequence needs a block and none is
free, the most recently admitted sequence is preempted: its blocks are freed and it goes back to the
front of the queue, to be recomputed from its tokens when it is admitted again (Kwon et al. 2023, §4.5,
"recomputation"). ``policy="static"`` is the baseline both papers improve on: take a batch, reserve
memory for the maximum length of every member, run it until its longest member is done (the finished
rows are padding), and admit nothing meanwhile.

Shapes: B running sequences, nh query heads, nkv key/value heads, hs head size, bs block size,
nb blocks in a block table, S = nb · bs key slots, C = d_model, V vocabulary.

    engine = Engine(model, num_blocks=64, block_size=8, max_batch=16)
    engine.add_request(Request("a", tok.encode("ROMEO:"), max_tokens=20, temperature=0))
    while engine.has_unfinished():
        for event in engine.step(): ...

The engine is not thread-safe: call every method from one thread (the HTTP server runs it in one task).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from shared.kv_cache import KVCache
from shared.model import GPT
from shared.positions import apply_rope, rope_cos_sin
from shared.sampling import sampling_probs
from shared.utils import is_int, is_real

__all__ = [
    "POLICIES",
    "OutOfBlocks",
    "BlockAllocator",
    "Request",
    "TokenEvent",
    "Engine",
    "paged_attention",
    "blocks_needed",
]

POLICIES = ("continuous", "static")


class OutOfBlocks(RuntimeError):
    """The allocator's free list is empty."""


def blocks_needed(num_positions: int, block_size: int) -> int:
    """Blocks that hold ``num_positions`` positions: ceil(num_positions / block_size)."""
    return -(-num_positions // block_size)


class BlockAllocator:
    """A free list of block ids 0 … num_blocks − 1 with a reference count per block.

    ``allocate`` pops a free block (count 1), ``share`` adds a reference, ``free`` drops one and returns
    the block to the free list when the count reaches 0. Freeing a free block is an error (a double
    free would hand one block to two sequences).
    """

    def __init__(self, num_blocks: int) -> None:
        if not is_int(num_blocks) or num_blocks < 1:
            raise ValueError(f"num_blocks={num_blocks!r} must be a positive int")
        self.num_blocks = num_blocks
        self.free_list: list[int] = list(range(num_blocks - 1, -1, -1))  # pop() hands out 0, 1, 2, ...
        self.ref_counts: list[int] = [0] * num_blocks

    @property
    def num_free(self) -> int:
        return len(self.free_list)

    def allocate(self) -> int:
        if not self.free_list:
            raise OutOfBlocks(f"out of KV blocks: all {self.num_blocks} blocks are in use")
        block = self.free_list.pop()
        self.ref_counts[block] = 1
        return block

    def share(self, block: int) -> None:
        if self.ref_counts[block] < 1:
            raise ValueError(f"block {block} is free: it cannot be shared")
        self.ref_counts[block] += 1

    def free(self, block: int) -> None:
        if self.ref_counts[block] < 1:
            raise ValueError(f"block {block} is already free (double free)")
        self.ref_counts[block] -= 1
        if self.ref_counts[block] == 0:
            self.free_list.append(block)


@dataclass
class Request:
    """One completion request: a non-empty prompt, how many tokens to generate and how to sample them.

    temperature 0 is greedy decoding; ``seed`` seeds the request's own ``torch.Generator``, so its
    samples do not depend on what else is in the batch.
    """

    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class TokenEvent:
    """What one ``step`` produced for one request: a new token, and whether the request is done.

    finish_reason: None while running, "length" when max_tokens were generated, "abort" when aborted
    (then token_id is None).
    """

    request_id: str
    token_id: int | None
    finished: bool
    finish_reason: str | None


@dataclass(eq=False)
class Sequence:
    """A request being served. ``tokens`` = prompt + generated tokens; the K/V of positions
    0 … num_cached − 1 are in the blocks of ``block_table``; the newest token (position
    len(tokens) − 1) is fed in the next decode step."""

    request: Request
    tokens: list[int]
    generator: torch.Generator
    block_table: list[int] = field(default_factory=list)
    num_cached: int = 0
    num_generated: int = 0
    admitted_at: int = -1  # admission counter: the largest is the latest admitted
    done: bool = False  # static batching: a finished row still in its batch (padding)

    @property
    def request_id(self) -> str:
        return self.request.request_id


def paged_attention(
    q: torch.Tensor,
    k_pool: torch.Tensor,
    v_pool: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
) -> torch.Tensor:
    """Attention of one query per sequence over keys and values read through block tables.

    q: (B, nh, hs) queries; k_pool, v_pool: (num_blocks, nkv, bs, hs); block_tables: (B, nb) long, each
    row the sequence's block ids in position order (padded with any valid id); context_lens: (B,) the
    number of keys of each sequence (position p lives in block block_tables[b, p // bs] at slot p % bs).
    Key slots at or beyond a sequence's length are masked out. Returns (B, nh, hs):
    softmax(q kᵀ / sqrt(hs)) v per head, query head h reading KV head h // (nh / nkv).
    """
    B, nh, hs = q.shape
    nkv, bs = k_pool.size(1), k_pool.size(2)
    nb = block_tables.size(1)
    k = k_pool[block_tables].permute(0, 2, 1, 3, 4).reshape(B, nkv, nb * bs, hs)  # (B, nkv, S, hs)
    v = v_pool[block_tables].permute(0, 2, 1, 3, 4).reshape(B, nkv, nb * bs, hs)  # (B, nkv, S, hs)
    if nkv != nh:
        k = k.repeat_interleave(nh // nkv, dim=1)  # (B, nh, S, hs)
        v = v.repeat_interleave(nh // nkv, dim=1)  # (B, nh, S, hs)
    scores = (q[:, :, None, :] @ k.transpose(-2, -1))[:, :, 0] / math.sqrt(hs)  # (B, nh, S)
    valid = torch.arange(nb * bs, device=q.device)[None, :] < context_lens[:, None]  # (B, S)
    scores = scores.masked_fill(~valid[:, None, :], float("-inf"))  # (B, nh, S)
    weights = F.softmax(scores, dim=-1)  # (B, nh, S)
    return (weights[:, :, None, :] @ v)[:, :, 0]  # (B, nh, hs)


class Engine:
    """Paged KV cache + scheduler around a ``GPT`` (see the module docstring).

    model: a causal GPT (no sliding window, no ALiBi, no prefix mask). num_blocks × block_size is the
    KV memory in positions; max_batch bounds the running batch; policy "continuous" (iteration-level
    scheduling with preemption) or "static" (whole batches, memory reserved for max_context each).
    The pools are ``k_pools[layer]``, ``v_pools[layer]``: (num_blocks, nkv, block_size, hs).
    Counters for experiments: ``num_preemptions``, ``num_steps``, ``padded_rows`` (static padding rows
    computed), and ``blocks_in_use`` / ``tokens_cached`` / ``utilisation()``.
    """

    def __init__(
        self,
        model: GPT,
        *,
        num_blocks: int,
        block_size: int = 8,
        max_batch: int = 16,
        policy: str = "continuous",
    ) -> None:
        if not isinstance(model, GPT):
            raise ValueError(f"Engine needs a shared.model.GPT, got {type(model).__name__}")
        c = model.config
        if c.attn_mask != "causal" or c.sliding_window is not None or c.pos_encoding == "alibi":
            raise ValueError(
                "Engine serves causal models without sliding window or ALiBi; got "
                f"attn_mask={c.attn_mask!r}, sliding_window={c.sliding_window!r}, "
                f"pos_encoding={c.pos_encoding!r}"
            )
        if model.mask_fn is not None:
            raise ValueError("Engine cannot serve a model with a custom mask_fn")
        for name, value in (("num_blocks", num_blocks), ("block_size", block_size), ("max_batch", max_batch)):
            if not is_int(value) or value < 1:
                raise ValueError(f"Engine.{name}={value!r} must be a positive int")
        if policy not in POLICIES:
            raise ValueError(f"Engine.policy={policy!r} must be one of {POLICIES}")
        self.model = model.eval()
        self.config = c
        self.max_context = c.block_size
        self.block_size = block_size
        self.max_batch = max_batch
        self.policy = policy
        self.attention = paged_attention  # the decode step's attention (a notebook may plug in its own)
        self.allocator = BlockAllocator(num_blocks)
        p = next(model.parameters())
        shape = (num_blocks, c.kv_heads, block_size, c.head_dim)
        self.k_pools = [torch.zeros(shape, device=p.device, dtype=p.dtype) for _ in range(c.n_layer)]
        self.v_pools = [torch.zeros(shape, device=p.device, dtype=p.dtype) for _ in range(c.n_layer)]
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._events: list[TokenEvent] = []  # abort events waiting for the next step
        self._admissions = 0
        self.num_preemptions = 0
        self.num_steps = 0
        self.padded_rows = 0

    # -- public interface ---------------------------------------------------------------------------

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return sum(not s.done for s in self.running)

    @property
    def num_blocks(self) -> int:
        return self.allocator.num_blocks

    @property
    def blocks_in_use(self) -> int:
        return self.allocator.num_blocks - self.allocator.num_free

    @property
    def tokens_cached(self) -> int:
        """Positions whose K/V are stored, counting a position shared by several sequences once."""
        distinct: dict[int, int] = {}
        for s in self.running:
            for i, block in enumerate(s.block_table):
                filled = min(self.block_size, max(0, s.num_cached - i * self.block_size))
                distinct[block] = max(distinct.get(block, 0), filled)
        return sum(distinct.values())

    def utilisation(self) -> float:
        """Bytes holding real tokens / bytes reserved (tokens_cached / (blocks_in_use · block_size))."""
        return self.tokens_cached / max(1, self.blocks_in_use * self.block_size)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running or self._events)

    def add_request(self, req: Request) -> None:
        """Queue a request. ValueError naming the field for one that this engine can never serve."""
        self._validate(req)
        ids = self._all_ids()
        if req.request_id in ids:
            raise ValueError(f"request_id={req.request_id!r} is already in the engine")
        gen = torch.Generator(device=self.k_pools[0].device)
        if req.seed is None:
            gen.seed()
        else:
            gen.manual_seed(req.seed)
        self.waiting.append(Sequence(req, list(req.prompt_ids), gen))

    def abort(self, request_id: str) -> None:
        """Drop a request and free its blocks now; the next step reports (id, None, True, "abort")."""
        for s in list(self.waiting):
            if s.request_id == request_id:
                self.waiting.remove(s)
                self._events.append(TokenEvent(request_id, None, True, "abort"))
                return
        for s in self.running:
            if s.request_id == request_id:
                self._release(s)
                self.running.remove(s)
                if not s.done:
                    self._events.append(TokenEvent(request_id, None, True, "abort"))
                return

    def fork(self, parent_id: str, child: Request) -> None:
        """Start ``child`` as a copy of the running sequence ``parent_id`` that shares all its blocks.

        The child's prompt is the parent's tokens so far (child.prompt_ids is ignored); it generates
        child.max_tokens more with its own temperature and seed. No block is copied until one of the two
        writes into a shared block (copy-on-write). Preemption here is per sequence: a preempted fork drops
        its references and is recomputed on its own, so its sharing is lost (vLLM gang-schedules the
        sequences of one request instead, Kwon et al. 2023, §4.5).
        """
        parent = next((s for s in self.running if s.request_id == parent_id and not s.done), None)
        if parent is None:
            raise ValueError(f"fork: parent_id={parent_id!r} is not a running request")
        if self.policy != "continuous":
            raise ValueError("fork needs policy='continuous'")
        if len(self.running) >= self.max_batch:
            raise ValueError(f"fork: the batch is full (max_batch={self.max_batch})")
        req = Request(child.request_id, list(parent.tokens), child.max_tokens, child.temperature, child.seed)
        self.add_request(req)
        seq = self.waiting.pop()
        for block in parent.block_table:
            self.allocator.share(block)
        seq.block_table = list(parent.block_table)
        seq.num_cached = parent.num_cached
        seq.admitted_at = self._admissions
        self._admissions += 1
        self.running.append(seq)

    def step(self) -> list[TokenEvent]:
        """One iteration: schedule, prefill the admitted, one decode step for all running, retire."""
        self.num_steps += 1
        events, self._events = self._events, []
        if self.policy == "continuous":
            self._schedule_continuous()
        else:
            self._schedule_static()
        if self.running:
            events += self._decode_step()
        return events

    # -- scheduling ---------------------------------------------------------------------------------

    def _schedule_continuous(self) -> None:
        # 1. every running sequence needs a slot for its newest token; preempt the latest admitted if not
        preempted = False
        for s in sorted(self.running, key=lambda s: s.admitted_at):
            while s in self.running:
                try:
                    self._reserve_slot(s, len(s.tokens) - 1)
                    break
                except OutOfBlocks:
                    victim = max(self.running, key=lambda r: r.admitted_at)
                    self._preempt(victim)
                    preempted = True
        if preempted:
            return  # admit nothing while memory is short
        # 2. admit from the front of the queue while the batch has room and blocks are free
        admitted = []
        while self.waiting and len(self.running) < self.max_batch:
            s = self.waiting[0]
            if blocks_needed(len(s.tokens), self.block_size) > self.allocator.num_free:
                break
            self.waiting.popleft()
            self._admit(s, reserve_positions=len(s.tokens))
            admitted.append(s)
        self._prefill(admitted)

    def _schedule_static(self) -> None:
        if self.running:
            return  # the batch runs until every member is done
        per_seq = blocks_needed(self.max_context, self.block_size)  # memory for the maximum length
        while self.waiting and len(self.running) < self.max_batch and self.allocator.num_free >= per_seq:
            self._admit(self.waiting.popleft(), reserve_positions=self.max_context)
        self._prefill(self.running)

    def _admit(self, s: Sequence, reserve_positions: int) -> None:
        """Give s blocks for its first reserve_positions positions (the caller prefills tokens[:-1])."""
        for _ in range(blocks_needed(reserve_positions, self.block_size)):
            s.block_table.append(self.allocator.allocate())
        s.admitted_at = self._admissions
        self._admissions += 1
        self.running.append(s)

    def _preempt(self, s: Sequence) -> None:
        """Free s's blocks and put it back at the front of the queue (recomputed when re-admitted)."""
        self._release(s)
        s.num_cached = 0
        self.running.remove(s)
        self.waiting.appendleft(s)
        self.num_preemptions += 1

    def _release(self, s: Sequence) -> None:
        for block in s.block_table:
            self.allocator.free(block)
        s.block_table = []

    def _reserve_slot(self, s: Sequence, pos: int) -> None:
        """Make position pos writable for s: allocate its block, or copy it if it is shared."""
        i = pos // self.block_size
        if i == len(s.block_table):
            s.block_table.append(self.allocator.allocate())
        elif self.allocator.ref_counts[s.block_table[i]] > 1:  # copy-on-write
            new = self.allocator.allocate()
            old = s.block_table[i]
            for pool in self.k_pools + self.v_pools:
                pool[new] = pool[old]
            self.allocator.free(old)
            s.block_table[i] = new

    # -- compute ------------------------------------------------------------------------------------

    @torch.no_grad()
    def _prefill(self, seqs: list[Sequence]) -> None:
        """Compute the K/V of every tokens[:-1] in one forward of the model's own (contiguous-cache) path,
        right-padded to the longest (causal attention: padding after a sequence cannot change it), and
        scatter each sequence's positions into its blocks."""
        seqs = [s for s in seqs if len(s.tokens) > 1]
        if not seqs:
            return
        bs, dev = self.block_size, self.k_pools[0].device
        n_max = max(len(s.tokens) - 1 for s in seqs)
        idx = torch.tensor([s.tokens[:-1] + [0] * (n_max - len(s.tokens) + 1) for s in seqs], device=dev)
        cache: KVCache = self.model.new_kv_cache(len(seqs), max_len=n_max)
        self.model(idx, kv_cache=cache)  # (B, n_max): fills cache.k/v[layer] (B, nkv, n_max, hs)
        for b, s in enumerate(seqs):
            n = len(s.tokens) - 1
            nb = blocks_needed(n, bs)
            blocks = torch.tensor(s.block_table[:nb], device=dev)
            for layer in range(self.config.n_layer):
                for pool, kv in (
                    (self.k_pools[layer], cache.k[layer]),
                    (self.v_pools[layer], cache.v[layer]),
                ):
                    x = F.pad(kv[b, :, :n], (0, 0, 0, nb * bs - n))  # (nkv, nb·bs, hs), zeros after n
                    pool[blocks] = x.view(x.size(0), nb, bs, -1).transpose(0, 1)  # (nb, nkv, bs, hs)
            s.num_cached = n

    @torch.no_grad()
    def decode_logits(self, seqs: list[Sequence]) -> torch.Tensor:
        """Feed each sequence's newest token at its own position; write its K/V; return logits (B, V).

        Each sequence's slot for position len(tokens) − 1 must be reserved (``_reserve_slot``).
        """
        c, model, bs = self.config, self.model, self.block_size
        dev = self.k_pools[0].device
        B = len(seqs)
        idx = torch.tensor([s.tokens[-1] for s in seqs], device=dev)  # (B,)
        pos = torch.tensor([len(s.tokens) - 1 for s in seqs], device=dev)  # (B,)
        nb = max(len(s.block_table) for s in seqs)
        tables = torch.tensor([s.block_table + [0] * (nb - len(s.block_table)) for s in seqs], device=dev)
        blk = tables[torch.arange(B, device=dev), pos // bs]  # (B,) the block each new K/V goes to
        slot = pos % bs  # (B,)
        x = model.transformer.wte(idx)  # (B, C)
        if c.pos_encoding == "learned":
            x = x + model.transformer.wpe(pos)
        elif c.pos_encoding == "sinusoidal":
            x = x + model.sinusoid[pos].to(x.dtype)
        x = x[:, None, :]  # (B, 1, C)
        rope = None
        if c.pos_encoding == "rope":
            cos, sin = rope_cos_sin(pos, c.head_dim, c.rope_base)  # (B, hs/2) each
            rope = (cos[:, None, None, :], sin[:, None, None, :])  # broadcast over (B, h, 1, hs/2)
        for layer, block in enumerate(model.transformer.h):

            def attend(h: torch.Tensor, layer: int = layer, attn=block.attn) -> torch.Tensor:
                nh, nkv, hs = attn.n_head, attn.n_kv_head, attn.head_dim
                q, k, v = attn.c_attn(h).split([nh * hs, nkv * hs, nkv * hs], dim=2)  # (B, 1, ·)
                q = q.view(B, 1, nh, hs).transpose(1, 2)  # (B, nh, 1, hs)
                k = k.view(B, 1, nkv, hs).transpose(1, 2)  # (B, nkv, 1, hs)
                v = v.view(B, 1, nkv, hs).transpose(1, 2)  # (B, nkv, 1, hs)
                if rope is not None:
                    q, k = apply_rope(q, *rope), apply_rope(k, *rope)
                self.k_pools[layer][blk, :, slot] = k[:, :, 0]  # (B, nkv, hs) into their slots
                self.v_pools[layer][blk, :, slot] = v[:, :, 0]
                y = self.attention(q[:, :, 0], self.k_pools[layer], self.v_pools[layer], tables, pos + 1)
                return attn.c_proj(y.reshape(B, 1, nh * hs))  # (B, 1, C)

            if block.pre_norm:
                x = x + attend(block.ln_1(x))
                x = x + block.mlp(block.ln_2(x))
            else:
                x = block.ln_1(x + attend(x))
                x = block.ln_2(x + block.mlp(x))
        for s in seqs:
            s.num_cached = len(s.tokens)
        return model.lm_head(model.transformer.ln_f(x))[:, 0]  # (B, V)

    def _decode_step(self) -> list[TokenEvent]:
        held = {}  # static padding rows: a finished member recomputes its last cached position
        for s in self.running:
            if s.done:
                held[s.request_id] = s.tokens.pop()
                self.padded_rows += 1
        logits = self.decode_logits(self.running)  # (B, V)
        events = []
        for s, row in zip(list(self.running), logits, strict=True):
            if s.done:
                s.tokens.append(held[s.request_id])
                continue
            r = s.request
            probs = sampling_probs(row[None], r.temperature)  # (1, V)
            if r.temperature == 0:
                token = int(probs.argmax())
            else:
                token = int(torch.multinomial(probs, 1, generator=s.generator))
            s.tokens.append(token)
            s.num_generated += 1
            finished = s.num_generated == r.max_tokens
            events.append(TokenEvent(r.request_id, token, finished, "length" if finished else None))
            if finished:
                if self.policy == "static":
                    s.done = True
                else:
                    self._release(s)
                    self.running.remove(s)
        if self.policy == "static" and all(s.done for s in self.running):
            for s in self.running:
                self._release(s)
            self.running = []
        return events

    # -- checks -------------------------------------------------------------------------------------

    def _all_ids(self) -> set[str]:
        return {s.request_id for s in self.waiting} | {s.request_id for s in self.running if not s.done}

    def _validate(self, req: Request) -> None:
        if not isinstance(req, Request):
            raise ValueError(f"add_request needs a Request, got {type(req).__name__}")
        if not isinstance(req.request_id, str) or not req.request_id:
            raise ValueError(f"request_id={req.request_id!r} must be a non-empty string")
        ids = req.prompt_ids
        if not isinstance(ids, list) or not ids:
            raise ValueError(f"prompt_ids must be a non-empty list of token ids, got {ids!r}")
        V = self.config.vocab_size
        if not all(is_int(t) and 0 <= t < V for t in ids):
            raise ValueError(f"prompt_ids must hold ints in [0, {V}); got {ids!r}")
        if not is_int(req.max_tokens) or req.max_tokens < 1:
            raise ValueError(f"max_tokens={req.max_tokens!r} must be an int >= 1")
        if len(ids) + req.max_tokens > self.max_context:
            raise ValueError(
                f"max_tokens={req.max_tokens}: prompt_ids ({len(ids)} tokens) + max_tokens must be <= "
                f"max_context={self.max_context}"
            )
        if not is_real(req.temperature) or not math.isfinite(req.temperature) or req.temperature < 0:
            raise ValueError(f"temperature={req.temperature!r} must be a finite number >= 0")
        if req.seed is not None and not is_int(req.seed):
            raise ValueError(f"seed={req.seed!r} must be an int or None")
        worst = len(ids) + req.max_tokens - 1  # positions cached at the last decode step
        if self.policy == "static":
            worst = self.max_context
        need = blocks_needed(worst, self.block_size)
        if need > self.num_blocks:
            raise ValueError(
                f"max_tokens={req.max_tokens}: the request needs {need} blocks "
                f"of {self.block_size} positions but the engine has num_blocks={self.num_blocks}"
            )
