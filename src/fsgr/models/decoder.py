"""Transformer caption decoder with an explicit key/value cache for incremental decoding.

Word embedding and output head are sized from the vocabulary handed in (never from a file: the reference's CUDA
device-side assert came from a table smaller than the vocabulary). x_t = word_emb(w_t) + pos_emb(t+1), pad -> pos 0.
Layer: s = Attn_self(x) (causal + key-pad mask) * m_pad; c = Attn_cross(q=s, k=E+PE, v=E) * m_pad; out = PWFF(c) * m_pad,
each attention sub-layer with the lineage's double residual + LN when `double_residual`. Head: untied, no bias,
log_softmax (computed in fp32).

Incremental decoding keeps no state in the module (unlike M2's "stateful" buffers): `init_cache` computes the
cross-attention keys/values once from the encoder output, and `step` takes a `DecoderCache` and returns a new one.

Prototypical memory (`model.pma`, fsgr.models.memory, docs/pma.md): a layer with memory puts its M key/value
prototypes in front of its self-attention keys/values, in the full pass and in every incremental step alike (they are
constant extra keys, not part of the cache). In training mode the layer also records a uniform sample of its token
keys/values; the trainer's hook commits it to the banks after each optimiser step (`fsgr.training.memory_hook`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsgr.models.attention import FeedForward, ResidualAttention
from fsgr.models.config import DecoderConfig, PMAConfig
from fsgr.models.memory import PAD_SCORE, LayerMemory, memory_layer_ids, valid_prototypes


def sinusoid_table(rows: int, d_model: int, pad_row: Optional[int] = 0) -> torch.Tensor:
    """Transformer sinusoid position table (rows, d); `pad_row` is zeroed (pad tokens use position 0)."""
    pos = torch.arange(rows, dtype=torch.float64)[:, None]
    i = torch.arange(d_model // 2, dtype=torch.float64)[None, :]
    angles = pos / 10000 ** (2 * i / d_model)
    table = torch.zeros(rows, d_model, dtype=torch.float64)
    table[:, 0::2] = angles.sin()
    table[:, 1::2] = angles.cos()
    if pad_row is not None:
        table[pad_row] = 0
    return table.float()


@dataclass
class DecoderCache:
    """Per-layer keys/values for incremental decoding. Rows = decoded sequences (images x beams/samples)."""

    self_k: list[torch.Tensor]      # per layer (N, h, t, dh): keys of the t tokens fed so far
    self_v: list[torch.Tensor]
    key_valid: torch.Tensor         # (N, t) bool: False where the fed token was <pad>
    cross_k: list[torch.Tensor]     # per layer (N, h, P, dh): from E + PE, computed once
    cross_v: list[torch.Tensor]     # per layer (N, h, P, dh): from E

    @property
    def length(self) -> int:
        return int(self.key_valid.shape[1])

    def select(self, rows: torch.Tensor, cross: bool = False) -> "DecoderCache":
        """Reorder/expand rows (beam search). Cross K/V are shared by all beams of an image, so they are only
        re-indexed when `cross` (rows move between images, e.g. expanding images to beams)."""
        pick = lambda ts: [t.index_select(0, rows) for t in ts]  # noqa: E731
        return replace(self, self_k=pick(self.self_k), self_v=pick(self.self_v),
                       key_valid=self.key_valid.index_select(0, rows),
                       cross_k=pick(self.cross_k) if cross else self.cross_k,
                       cross_v=pick(self.cross_v) if cross else self.cross_v)


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, double_residual: bool,
                 memory: Optional[PMAConfig] = None):
        super().__init__()
        self.self_attention = ResidualAttention(d_model, heads, dropout, double_residual)
        self.cross_attention = ResidualAttention(d_model, heads, dropout, double_residual)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.memory = LayerMemory(memory, d_model, heads) if memory is not None else None

    def forward(self, x: torch.Tensor, self_k: torch.Tensor, self_v: torch.Tensor, self_mask: torch.Tensor,
                cross_k: torch.Tensor, cross_v: torch.Tensor, m_pad: torch.Tensor,
                cross_weights: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        """x (N, L, d); self_k/v (N, h, t, dh) already include x's own keys; m_pad (N, L, 1). `cross_weights`: a list
        to append this layer's cross-attention weights (N, h, L, P) to (maps; computed only when given)."""
        s = self.self_attention(x, self_k, self_v, self_mask) * m_pad
        if cross_weights is not None:
            cross_weights.append(self.cross_attention.attn.weights(s, cross_k))
        c = self.cross_attention(s, cross_k, cross_v) * m_pad
        return self.feed_forward(c) * m_pad


class Decoder(nn.Module):
    def __init__(self, cfg: DecoderConfig, vocab_size: int, pad_id: int, dropout: float, double_residual: bool,
                 pma: Optional[PMAConfig] = None):
        super().__init__()
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad id {pad_id} outside the vocabulary of {vocab_size}")
        d = cfg.d_model
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.max_len = cfg.max_len
        self.word_emb = nn.Embedding(vocab_size, d, padding_idx=pad_id)
        self.pos_emb = nn.Embedding(cfg.max_len + 1, d)  # row 0: <pad>; positions 1..max_len
        self.pma = pma if pma is not None and pma.enabled else None
        with_memory = set(memory_layer_ids(self.pma, cfg.layers)) if self.pma else set()
        self.layers = nn.ModuleList(
            DecoderLayer(d, cfg.heads, cfg.d_ff, dropout, double_residual, self.pma if i in with_memory else None)
            for i in range(cfg.layers))
        self.out = nn.Linear(d, vocab_size, bias=False)  # untied from word_emb, as REF
        self.reset_embeddings()

    def reset_embeddings(self) -> None:
        """Non-xavier init (model.xavier_init=false): N(0, d^-1/2) words with a zero <pad> row, sinusoid positions."""
        d = self.word_emb.embedding_dim
        with torch.no_grad():
            nn.init.normal_(self.word_emb.weight, std=d ** -0.5)
            self.word_emb.weight[self.pad_id].zero_()
            self.pos_emb.weight.copy_(sinusoid_table(self.pos_emb.num_embeddings, d))

    # -- embeddings and masks ------------------------------------------------------------------------------------
    def embed(self, tokens: torch.Tensor, first_position: int = 0) -> torch.Tensor:
        """tokens (N, L) -> (N, L, d); token j gets position first_position + j + 1, pad tokens position 0."""
        n, length = tokens.shape
        last = first_position + length
        if last > self.max_len:
            raise ValueError(f"caption length {last} exceeds decoder.max_len {self.max_len}")
        positions = torch.arange(first_position + 1, last + 1, device=tokens.device).expand(n, length)
        positions = positions.masked_fill(tokens == self.pad_id, 0)
        return self.word_emb(tokens) + self.pos_emb(positions)

    def _logprobs(self, h: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.out(h).float(), dim=-1)

    # -- prototypical memory -------------------------------------------------------------------------------------
    def memory_layers(self) -> list[LayerMemory]:
        return [layer.memory for layer in self.layers if layer.memory is not None]

    def _record_plan(self, valid: torch.Tensor) -> Optional[tuple[torch.Tensor, ...]]:
        """Which tokens the banks sample in this pass (uniform scores for real tokens, PAD_SCORE for pad), computed
        once for all memory layers; None when nothing is recorded (eval mode, inference mode, no memory)."""
        if not self.training or torch.is_inference_mode_enabled() or self.pma is None:
            return None
        scores = torch.rand(valid.shape, device=valid.device).masked_fill(~valid, PAD_SCORE)
        return self.memory_layers()[0].plan(scores)

    def memory_prototypes(self) -> Optional[int]:
        """Valid prototypes across the memory layers; None when the memory is off."""
        return None if self.pma is None else valid_prototypes(self.memory_layers())

    # -- the layer stack, shared by the full pass and incremental decoding ---------------------------------------
    def _layers(self, x: torch.Tensor, valid: torch.Tensor, self_mask: torch.Tensor,
                cross_kv: list[tuple[torch.Tensor, torch.Tensor]],
                past_kv: Optional[list[tuple[torch.Tensor, torch.Tensor]]] = None,
                cross_weights: Optional[list[torch.Tensor]] = None,
                ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """x (N, L, d) of the L tokens fed now; valid (N, L) their non-pad mask; self_mask (N, 1, L, t+L) over the
        keys of the past t tokens (past_kv, per layer) and of these. -> hidden states (N, L, d) and every layer's
        self-attention keys/values including these tokens (what a cache keeps). `cross_weights`: a list that gets
        each layer's cross-attention weights (N, h, L, P), in layer order."""
        m_pad = valid.unsqueeze(-1)
        plan = self._record_plan(valid)
        new_kv = []
        for i, layer in enumerate(self.layers):
            k_tok, v_tok = layer.self_attention.project_kv(x, x)
            k, v = k_tok, v_tok
            if past_kv is not None:
                k = torch.cat([past_kv[i][0], k_tok], dim=2)
                v = torch.cat([past_kv[i][1], v_tok], dim=2)
            new_kv.append((k, v))
            mask = self_mask
            if layer.memory is not None:   # constant extra keys: in front at every step, never cached
                if plan is not None:
                    layer.memory.record(k_tok, v_tok, plan)
                k, v, mask = layer.memory.extend(k, v, self_mask, valid)
            x = layer(x, k, v, mask, *cross_kv[i], m_pad.to(x.dtype), cross_weights)
        return x, new_kv

    def _cross_kv(self, memory: torch.Tensor, memory_pos: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's cross-attention keys (from E + PE) and values (from E)."""
        keys = memory + memory_pos
        return [layer.cross_attention.project_kv(keys, memory) for layer in self.layers]

    # -- full teacher-forced pass ----------------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                cross_weights: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        """tokens (N, L); memory (N, P, d); memory_pos broadcastable to it -> log-probs (N, L, V) fp32.
        `cross_weights`: a list that gets each layer's cross-attention weights (N, h, L, P) (fsgr explain --words)."""
        length = tokens.shape[1]
        valid = tokens != self.pad_id                                                   # (N, L)
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        self_mask = (causal[None] & valid[:, None, :]).unsqueeze(1)                     # (N, 1, L, L) True=attend
        x, _ = self._layers(self.embed(tokens), valid, self_mask, self._cross_kv(memory, memory_pos),
                            cross_weights=cross_weights)
        return self._logprobs(x)

    # -- incremental decoding ------------------------------------------------------------------------------------
    def init_cache(self, memory: torch.Tensor, memory_pos: torch.Tensor) -> DecoderCache:
        """Empty self-attention cache and the cross-attention K/V of every layer, computed once."""
        cross = self._cross_kv(memory, memory_pos)
        n = memory.shape[0]
        empty = memory.new_zeros(n, 0, 0, 0)
        return DecoderCache(self_k=[empty] * len(self.layers), self_v=[empty] * len(self.layers),
                            key_valid=torch.zeros(n, 0, dtype=torch.bool, device=memory.device),
                            cross_k=[k for k, _ in cross], cross_v=[v for _, v in cross])

    def step(self, tokens: torch.Tensor, cache: DecoderCache) -> tuple[torch.Tensor, DecoderCache]:
        """Feed one token per row: tokens (N,) -> log-probs (N, V) fp32 for the next token, and the grown cache."""
        t = cache.length
        x = self.embed(tokens[:, None], first_position=t)                                  # (N, 1, d)
        valid = (tokens != self.pad_id)[:, None]                                           # (N, 1)
        key_valid = torch.cat([cache.key_valid, valid], dim=1)                             # (N, t+1)
        self_mask = key_valid[:, None, None, :]                                            # (N, 1, 1, t+1)
        past = list(zip(cache.self_k, cache.self_v)) if t else None
        x, kv = self._layers(x, valid, self_mask, list(zip(cache.cross_k, cache.cross_v)), past)
        cache = replace(cache, self_k=[k for k, _ in kv], self_v=[v for _, v in kv], key_valid=key_valid)
        return self._logprobs(x[:, 0]), cache


def xavier_init_(module: nn.Module) -> None:
    """REF/M2 `init_weights` (model.xavier_init): xavier_uniform on every >= 2-dim parameter, embeddings included."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)

