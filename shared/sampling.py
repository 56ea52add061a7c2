"""The filters ``GPT.generate`` applies to the next-token logits before it samples.

Temperature, top-k (Fan et al. 2018) and nucleus / top-p (Holtzman et al. 2020) sampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row, set the rest to −inf (Fan et al. 2018).

    logits: (…, V) -> (…, V). Ties with the k-th largest value are kept too.
    """
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (…, 1) the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter (Holtzman et al. 2020, §3.1): keep the smallest set of most likely tokens
    whose probability mass reaches p — the token that crosses p included — set the rest to −inf.

    A token is kept when the mass of the tokens strictly more likely than it is still < p.
    logits: (…, V) -> (…, V).
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (…, V)
    probs = F.softmax(sorted_logits, dim=-1)  # (…, V)
    mass_before = probs.cumsum(dim=-1) - probs  # (…, V) mass of the more likely tokens
    drop_sorted = mass_before >= p  # (…, V); the first token always has mass_before 0 < p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sampling_probs(
    logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The distribution ``generate`` samples the next token from: softmax(logits / temperature) after
    the top-k filter, then the top-p filter. temperature = 0 is greedy decoding: a one-hot at the argmax.

    logits: (…, V) -> probabilities (…, V), each row summing to 1.
    """
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.size(-1)).to(logits.dtype)  # (…, V)
    z = logits / temperature
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    return F.softmax(z, dim=-1)  # (…, V)
