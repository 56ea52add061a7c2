"""The mixture-of-experts feed-forward layer that ``GPTConfig(n_experts=E)`` puts in every block."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from shared.model import GPTConfig


class MoE(nn.Module):
    """Mixture-of-experts feed-forward layer with top-k routing (Shazeer et al. 2017; Fedus et al. 2021).

    For each token x: router probabilities p = softmax(W_r x) over E experts; the top-k experts
    are chosen and their outputs combined with the top-k probabilities renormalised to sum to 1:
    y = Σ_{e ∈ topk} (p_e / Σ_{topk} p) · Expert_e(x)   (k > 1; Shazeer et al. 2017, eq. 3-5).
    For k = 1 the renormalised weight would always be 1 and the router would get no gradient from
    the language-model loss, so k = 1 uses the Switch gate y = p_e · Expert_e(x) (Fedus et al.
    2021, §2.1, eq. 2).

    Switch load-balancing loss (Fedus et al. 2021, eq. 4), stored in ``self.aux_loss`` after each
    forward:  aux = E · Σ_i f_i · P_i, where f_i is the fraction of the N·k (token, slot)
    assignments sent to expert i and P_i the mean router probability of expert i over the N tokens.
    It equals 1 for perfectly uniform routing and E when every token goes to one expert.
    (For k = 1 this is the paper's definition; dividing by N·k keeps "uniform = 1" for k > 1.)

    Dispatch gathers each expert's tokens with one index per expert (a loop over E experts, never
    over tokens), runs the expert on them as one batch and scatter-adds the weighted result.
    Each expert is the model's dense ``MLP``.
    """

    def __init__(self, config: GPTConfig) -> None:
        from shared.model import MLP  # imported here: shared.model imports this module

        super().__init__()
        self.n_experts = config.n_experts
        self.top_k = config.moe_top_k
        self.router = nn.Linear(config.d_model, config.n_experts, bias=False)
        self.experts = nn.ModuleList(MLP(config) for _ in range(config.n_experts))
        self.aux_loss: torch.Tensor | None = None
        self.last_load: torch.Tensor | None = None  # (E,) fraction of assignments per expert

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, C)
        N, E, k = x.size(0), self.n_experts, self.top_k
        probs = F.softmax(self.router(x), dim=-1, dtype=torch.float32)  # (N, E)
        top_p, top_i = probs.topk(k, dim=-1)  # (N, k) each
        if k > 1:
            top_p = top_p / top_p.sum(dim=-1, keepdim=True)  # (N, k), rows sum to 1
        weights = top_p.to(x.dtype)  # (N, k)

        out = torch.zeros_like(x)  # (N, C)
        for e, expert in enumerate(self.experts):
            token_idx, slot = torch.where(top_i == e)  # (n_e,) each: which tokens chose e
            if token_idx.numel() == 0:
                continue
            y = expert(x[token_idx]) * weights[token_idx, slot, None]  # (n_e, C)
            out.index_add_(0, token_idx, y)  # (N, C)

        load = torch.bincount(top_i.flatten(), minlength=E).to(probs.dtype) / (N * k)  # (E,) f_i
        importance = probs.mean(dim=0)  # (E,) P_i
        self.aux_loss = E * torch.sum(load * importance)  # scalar; f_i carries no gradient
        self.last_load = load.detach()
        return out.reshape(shape)  # (..., C)
