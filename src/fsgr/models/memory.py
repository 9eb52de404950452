"""Prototypical memory for the decoder self-attention (PMA-Net, Barraco et al., ICCV 2023; docs/pma.md).

Per decoder layer with memory (`LayerMemory`):

    plan(scores), record(k, v, plan)
                          during a training forward: keep a uniform sample of <= cap token keys/values of the step
                          (a running reservoir over every forward/decoding step until the next commit; pad never)
    commit()              after the optimiser step: the sample becomes this step's slot of the ring buffers
                          bank_k/bank_v (T*cap, h, dh): the last T optimiser steps, on the device, no host copy
    refresh(generator)    every R steps: batched-over-heads K-Means of the key bank -> M key prototypes per head;
                          value prototype m = mean of the values of the knn bank keys nearest to key prototype m
    extend(k, v, mask)    self-attention keys/values/mask with the M prototypes in front: visible to every non-pad
                          query (no causal mask), invisible while not valid (before the first refresh)

Everything that matters for resuming is a persistent buffer (banks, validity, ring counter, prototypes), so the
model's state_dict -- hence every checkpoint -- carries it. The staging reservoir is not persistent: it is empty at
every optimiser-step boundary, which is where checkpoints are written.

When to commit, refresh, freeze in SCST, and how ranks share banks under DDP are training's rules
(`fsgr.training.memory_hook`); the captioner tells DDP not to broadcast these buffers.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from fsgr.errors import ConfigError
from fsgr.models.config import PMAConfig

EMPTY_SCORE = -2.0          # staging slot holds nothing
PAD_SCORE = -1.0            # a pad token's sampling score: never beats a real token, never committed as valid
_CHUNK_ELEMENTS = 1 << 26   # distance-matrix elements per chunk in K-Means/kNN (256 MB in fp32)


# ------------------------------------------------------------------------------------------------ clustering
def squared_distances(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """x (h, n, d), c (h, m, d) -> (h, n, m) squared Euclidean distances (matmul form, clamped at 0)."""
    d = torch.baddbmm((c * c).sum(-1)[:, None, :], x, c.transpose(1, 2), alpha=-2.0)
    return (d + (x * x).sum(-1)[..., None]).clamp_min_(0)


def assign(x: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of every point, in chunks of points: -> (h, n) long ids, (h, n) squared distances."""
    h, n, _ = x.shape
    chunk = max(1, _CHUNK_ELEMENTS // (h * centres.shape[1]))
    ids, dists = [], []
    for s in range(0, n, chunk):
        d = squared_distances(x[:, s:s + chunk], centres)
        best, idx = d.min(dim=-1)
        ids.append(idx)
        dists.append(best)
    return torch.cat(ids, 1), torch.cat(dists, 1)


def _init_random(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k distinct points per head, chosen uniformly (FAISS's default init)."""
    h, n, d = x.shape
    pick = torch.rand(h, n, generator=generator, device=x.device).topk(k, dim=1).indices
    return x.gather(1, pick[..., None].expand(h, k, d)).clone()


def _init_kmeanspp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ (D^2 sampling), batched over heads; k sequential rounds."""
    h, n, d = x.shape
    rows = torch.arange(h, device=x.device)
    centres = x.new_empty(h, k, d)
    first = torch.randint(n, (h,), generator=generator, device=x.device)
    centres[:, 0] = x[rows, first]
    d2 = squared_distances(x, centres[:, :1]).squeeze(-1)                       # (h, n)
    for j in range(1, k):
        weights = d2 + (d2.sum(-1, keepdim=True) <= 0).to(d2.dtype)             # all points on centres: uniform
        nxt = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        centres[:, j] = x[rows, nxt]
        d2 = torch.minimum(d2, squared_distances(x, centres[:, j:j + 1]).squeeze(-1))
    return centres


def kmeans(x: torch.Tensor, k: int, iterations: int, generator: torch.Generator,
           init: str = "random") -> torch.Tensor:
    """Lloyd's K-Means batched over heads: x (h, n, d) fp32, 1 <= k <= n -> centres (h, k, d).

    Fixed number of iterations (no data-dependent stopping: same work on every rank). An empty cluster is re-seeded
    onto the points farthest from their current centre (the i-th empty cluster of a head takes its i-th farthest
    point), so all k centres stay in use."""
    h, n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"kmeans: k={k} must be between 1 and the number of points {n}")
    centres = _init_kmeanspp(x, k, generator) if init == "kmeans++" else _init_random(x, k, generator)
    offsets = (torch.arange(h, device=x.device) * k)[:, None]
    flat_x = x.reshape(h * n, d)
    for _ in range(iterations):
        ids, dist = assign(x, centres)
        flat = (ids + offsets).reshape(-1)
        sums = x.new_zeros(h * k, d).index_add_(0, flat, flat_x).view(h, k, d)
        counts = x.new_zeros(h * k).index_add_(0, flat, x.new_ones(h * n)).view(h, k)
        means = sums / counts.clamp_min(1)[..., None]
        empty = counts == 0
        most_empty = int(empty.sum(1).max())          # one host sync; skips a top-k over the bank when none is empty
        if most_empty == 0:
            centres = means
            continue
        far = dist.topk(most_empty, dim=1).indices                                  # (h, e) farthest first
        rank = (empty.long().cumsum(1) - 1).clamp(0, most_empty - 1)
        reseed = x.gather(1, far.gather(1, rank)[..., None].expand(h, k, d))
        centres = torch.where(empty[..., None], reseed, means)
    return centres


def knn_average(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, knn: int) -> torch.Tensor:
    """For each query (h, m, d): the mean of the values (h, n, dv) of its knn nearest keys (h, n, d) -> (h, m, dv).
    Chunked over the keys with a running top-k, so memory is bounded at any bank size."""
    h, m, _ = queries.shape
    n = keys.shape[1]
    q = min(knn, n)
    chunk = max(1, _CHUNK_ELEMENTS // (h * m))
    best_d = queries.new_empty(h, m, 0)
    best_i = torch.empty(h, m, 0, dtype=torch.long, device=queries.device)
    for s in range(0, n, chunk):
        d = squared_distances(queries, keys[:, s:s + chunk])                       # (h, m, c)
        idx = torch.arange(s, s + d.shape[-1], device=queries.device).expand(h, m, -1)
        d, idx = torch.cat([best_d, d], -1), torch.cat([best_i, idx], -1)
        best_d, pos = d.topk(min(q, d.shape[-1]), dim=-1, largest=False)
        best_i = idx.gather(-1, pos)
    dv = values.shape[-1]
    picked = values.gather(1, best_i.reshape(h, m * q, 1).expand(h, m * q, dv))
    return picked.view(h, m, q, dv).mean(2)


# ------------------------------------------------------------------------------------------------ one layer
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class LayerMemory(nn.Module):
    """Banks, prototypes and segment embedding of one decoder self-attention layer."""

    def __init__(self, cfg: PMAConfig, d_model: int, heads: int):
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.num_prototypes = cfg.num_prototypes
        self.bank_iterations = cfg.bank_iterations
        self.cap = cfg.tokens_per_step
        self.knn = cfg.knn
        self.kmeans_iterations = cfg.kmeans_iterations
        self.kmeans_init = cfg.kmeans_init
        slots, h, dh, m = cfg.bank_iterations * cfg.tokens_per_step, heads, self.d_head, cfg.num_prototypes
        dtype = _DTYPES[cfg.bank_dtype]
        # ring buffers over the last T steps: step s writes rows [(s mod T) * cap, (s mod T + 1) * cap)
        self.register_buffer("bank_k", torch.zeros(slots, h, dh, dtype=dtype))
        self.register_buffer("bank_v", torch.zeros(slots, h, dh, dtype=dtype))
        self.register_buffer("bank_valid", torch.zeros(slots, dtype=torch.bool))
        self.register_buffer("commits", torch.zeros((), dtype=torch.long))       # steps pushed so far
        self.register_buffer("proto_k", torch.zeros(h, m, dh))
        self.register_buffer("proto_v", torch.zeros(h, m, dh))
        self.register_buffer("proto_valid", torch.zeros(m, dtype=torch.bool))    # shared by the heads
        # the reservoir of the current step (empty at step boundaries, so not saved)
        self.register_buffer("stage_k", torch.zeros(self.cap, h, dh), persistent=False)
        self.register_buffer("stage_v", torch.zeros(self.cap, h, dh), persistent=False)
        self.register_buffer("stage_score", torch.full((self.cap,), EMPTY_SCORE), persistent=False)
        # one embedding on the memory keys: q.(k_mem + e) - q.k_in is all a second, input-key embedding could add
        self.segment = nn.Parameter(torch.zeros(d_model)) if cfg.segment_embedding else None

    # -- hot path ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def plan(self, scores: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Which tokens to keep: scores (N, L) uniform in [0,1) for real tokens, PAD_SCORE for pad. The cap
        highest-scored tokens seen since the last commit are a uniform sample of them. Every memory layer holds the
        same reservoir scores, so one plan (computed once per forward) serves all layers."""
        length = scores.shape[1]
        flat = scores.reshape(-1)
        top = flat.topk(min(self.cap, flat.numel()))
        rows = torch.div(top.indices, length, rounding_mode="floor")
        merged = torch.cat([self.stage_score, top.values.float()])
        keep = merged.topk(self.cap).indices
        return rows, top.indices - rows * length, keep, merged.index_select(0, keep)

    @torch.no_grad()
    def record(self, k: torch.Tensor, v: torch.Tensor, plan: tuple[torch.Tensor, ...]) -> None:
        """k, v (N, h, L, dh) this layer's token keys/values; `plan` from `plan(scores)` of this forward."""
        rows, cols, keep, scores = plan
        new_k, new_v = k[rows, :, cols].float(), v[rows, :, cols].float()            # (c, h, dh)
        self.stage_k.copy_(torch.cat([self.stage_k, new_k]).index_select(0, keep))
        self.stage_v.copy_(torch.cat([self.stage_v, new_v]).index_select(0, keep))
        self.stage_score.copy_(scores)

    @torch.no_grad()
    def commit(self) -> None:
        """The staged sample becomes this step's slot of the ring buffers (no host synchronisation)."""
        slot = (self.commits % self.bank_iterations) * self.cap
        rows = slot + torch.arange(self.cap, device=slot.device)
        self.bank_k.index_copy_(0, rows, self.stage_k.to(self.bank_k.dtype))
        self.bank_v.index_copy_(0, rows, self.stage_v.to(self.bank_v.dtype))
        self.bank_valid.index_copy_(0, rows, self.stage_score >= 0)
        self.commits += 1
        self.clear_stage()

    @torch.no_grad()
    def clear_stage(self) -> None:
        self.stage_score.fill_(EMPTY_SCORE)

    def memory_kv(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Prototype keys (+ segment embedding) and values (h, M, dh) in the attention's dtype."""
        pk = self.proto_k
        if self.segment is not None:
            pk = pk + self.segment.view(self.heads, 1, self.d_head)
        return pk.to(dtype), self.proto_v.to(dtype)

    def extend(self, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
               query_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """k, v (N, h, t, dh); mask bool (N or 1, 1, Lq, t) True = attend; query_valid (N, Lq) ->
        keys/values (N, h, M + t, dh) and mask (N, 1, Lq, M + t) with the prototypes first. A prototype is visible
        to every non-pad query (no causal mask) once valid; pad queries never see the memory."""
        n, _, _, _ = k.shape
        lq = query_valid.shape[1]
        pk, pv = self.memory_kv(k.dtype)
        k = torch.cat([pk[None].expand(n, -1, -1, -1), k], dim=2)
        v = torch.cat([pv[None].expand(n, -1, -1, -1), v], dim=2)
        mem_mask = self.proto_valid[None, None, None, :] & query_valid[:, None, :, None]    # (N, 1, Lq, M)
        mask = torch.cat([mem_mask, mask.expand(n, 1, lq, mask.shape[-1])], dim=-1)
        return k, v, mask

    # -- refresh -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def refresh(self, generator: torch.Generator,
                bank: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None) -> int:
        """K-Means of the key bank -> key prototypes; kNN value average -> value prototypes. `bank`: (keys, values,
        valid) rows to cluster instead of this layer's own (the trainer's hook passes every rank's share under DDP).
        Returns the number of valid prototypes (M, or the number of bank points while the bank holds fewer)."""
        k, v, valid = bank if bank is not None else (self.bank_k, self.bank_v, self.bank_valid)
        with torch.autocast(self.bank_k.device.type, enabled=False):
            idx = valid.nonzero().squeeze(1)
            keys = k.index_select(0, idx).float().transpose(0, 1)                    # (h, n, dh)
            values = v.index_select(0, idx).float().transpose(0, 1)
            n = keys.shape[1]
            m = min(self.num_prototypes, n)
            self.proto_k.zero_()
            self.proto_v.zero_()
            self.proto_valid.zero_()
            if m > 0:
                centres = kmeans(keys, m, self.kmeans_iterations, generator, self.kmeans_init)
                self.proto_k[:, :m] = centres
                self.proto_v[:, :m] = knn_average(centres, keys, values, self.knn)
                self.proto_valid[:m] = True
        return m


def memory_layer_ids(cfg: PMAConfig, num_layers: int) -> list[int]:
    """Which decoder layers carry memory; refuses ids outside the decoder."""
    ids = list(range(num_layers)) if cfg.layers is None else sorted(set(cfg.layers))
    bad = [i for i in ids if not 0 <= i < num_layers]
    if bad:
        raise ConfigError(f"model.pma.layers {cfg.layers}: layer ids {bad} outside the decoder's {num_layers} layers")
    for name in ("num_prototypes", "bank_iterations", "tokens_per_step", "refresh_every", "knn"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"model.pma.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.kmeans_iterations < 0:
        raise ConfigError(f"model.pma.kmeans_iterations must be >= 0, got {cfg.kmeans_iterations}")
    return ids


# ------------------------------------------------------------------------------------------------ all layers
def valid_prototypes(layers: list[LayerMemory]) -> int:
    """Valid prototypes summed over the memory layers (the heads of a layer share one count; one host sync)."""
    if not layers:
        return 0
    return int(torch.stack([mem.proto_valid.sum() for mem in layers]).sum())


def bank_bytes(cfg: PMAConfig, d_model: int, layers: int) -> int:
    """Bytes of the key+value banks of `layers` memory layers (what the device and every checkpoint hold)."""
    item = torch.finfo(_DTYPES[cfg.bank_dtype]).bits // 8
    return 2 * layers * cfg.bank_iterations * cfg.tokens_per_step * d_model * item
