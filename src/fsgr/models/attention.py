"""Attention building blocks shared by the encoder and decoder (M2-Transformer lineage, on SDPA).

`MultiHeadAttention` is the bare projection + scaled-dot-product attention (no residual, no LayerNorm): the layers
own their residual structure, including the lineage's double residual + LayerNorm (`model.double_residual`).
Attention always goes through `torch.nn.functional.scaled_dot_product_attention` so GPUs get fused kernels; masks are
either boolean (True = may attend) or an additive float bias (the encoder's log-geometry term).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class MultiHeadAttention(nn.Module):
    """q/k/v/o linears (d x d, with bias) around SDPA. Dropout acts on the attention weights, as in the reference."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.heads = heads
        self.d_head = d_model // heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.d_head).transpose(1, 2)  # (B, h, n, dh)

    def project_kv(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n, d) inputs -> per-head keys and values (B, h, n, dh); cached by incremental decoding."""
        return self.split_heads(self.k_proj(keys)), self.split_heads(self.v_proj(values))

    def attend(self, queries: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """queries (B, nq, d); k, v already projected (B, h, nk, dh); mask broadcastable to (B, h, nq, nk)."""
        q = self.split_heads(self.q_proj(queries))
        if mask is not None and mask.dtype != torch.bool:
            mask = mask.to(q.dtype)  # additive bias must match q's dtype under autocast
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        b, _, nq, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, self.heads * self.d_head))

    def weights(self, queries: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The attention weights SDPA does not return, computed explicitly (maps only; no mask, no dropout):
        queries (B, nq, d), k projected (B, h, nk, dh) -> softmax(q k^T / sqrt(dh)) (B, h, nq, nk)."""
        q = self.split_heads(self.q_proj(queries))
        return (q @ k.transpose(-1, -2) / self.d_head ** 0.5).softmax(dim=-1)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        k, v = self.project_kv(keys, values)
        return self.attend(queries, k, v, mask)


class ResidualAttention(nn.Module):
    """One attention sub-layer with its residual + LayerNorm.

    double_residual=True (REF/M2 lineage): the M2 wrapper returns LN_m(q_in + Do(att)), and the layer adds its own
    residual on top: LN_l(x + Do(LN_m(q_in + Do(att)))). q_in is what was fed as queries (x + PE in the encoder).
    double_residual=False: the textbook post-LN LN(x + Do(att)).
    """

    def __init__(self, d_model: int, heads: int, dropout: float, double_residual: bool):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, heads, dropout)
        self.double_residual = double_residual
        self.inner_norm = nn.LayerNorm(d_model) if double_residual else None
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def project_kv(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head keys and values (B, h, n, dh) of this sub-layer (computed once and cached by decoding)."""
        return self.attn.project_kv(keys, values)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor] = None,
                queries: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, n, d) the residual stream; `queries` what attends (default x; the encoder feeds x + PE); k, v from
        `project_kv`; mask broadcastable to (B, h, n, nk), boolean (True = attend) or an additive bias."""
        queries = x if queries is None else queries
        att = self.attn.attend(queries, k, v, mask)
        if self.double_residual:
            att = self.inner_norm(queries + self.dropout(att))
        return self.norm(x + self.dropout(att))


class FeedForward(nn.Module):
    """PWFF: LN(x + Do(W2 Do(ReLU(W1 x)))), as in the reference."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.inner_dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.fc2(self.inner_dropout(F.relu(self.fc1(x))))))
