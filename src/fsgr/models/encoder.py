"""Grid encoder: 2-D sine position encoding, relative-geometry attention bias, FSGR text mode.

text=True (FSGR): queries Q0 = LN_e(att_embed([F^; g^])) (the evident intent: REF fed the 768-d F^ and crashed in
LN(512)) attend to KV = LN_e(pixel_embed(S)), the semantic grid, which is held fixed across layers; visual tokens never
self-attend.
text=False (the REF run): X0 = LN_e(pixel_embed(F^)) and each layer is self-attention over X_l.
Every layer uses the geometry-biased attention w = softmax(log(max(G, 1e-6)) + QK^T/sqrt(dk)), implemented by passing
log(max(G, 1e-6)) to SDPA as an additive float mask. Grids never pad, so there is no padding mask (REF derived one from
zero feature sums of LayerNorm outputs, which can mask real tokens).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn

from fsgr.models.attention import FeedForward, ResidualAttention
from fsgr.models.config import EncoderConfig
from fsgr.models.seeding import module_stream


def grid_sine_embedding(grid: tuple[int, int], d_model: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR PositionEmbeddingSine(d/2, normalize=True) for an un-padded grid, flattened row-major: (gh*gw, d).

    Row r, column c (1-based): y = r/gh * 2pi, x = c/gw * 2pi; PE = [pe(y); pe(x)] with interleaved sin/cos.
    """
    gh, gw = grid
    feats = d_model // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, gh + 1, dtype=torch.float64).view(gh, 1).expand(gh, gw) / (gh + eps) * scale
    x = torch.arange(1, gw + 1, dtype=torch.float64).view(1, gw).expand(gh, gw) / (gw + eps) * scale
    dim_t = torch.arange(feats, dtype=torch.float64)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / feats)
    pos_x = x[..., None] / dim_t
    pos_y = y[..., None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=-1).flatten(-2)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=-1).flatten(-2)
    return torch.cat((pos_y, pos_x), dim=-1).reshape(gh * gw, d_model).float()


def box_relational_embedding(grid: tuple[int, int], dim_g: int = 64, wave_len: float = 1000.0) -> torch.Tensor:
    """BoxRelationalEmbedding of the grid cells (RSTNet `grid_aug`), (P, P, dim_g).

    Cell i = (a, b), a the slow (row) index: box [a/gh, b/gw, (a+1)/gh, (b+1)/gw]; w = h = cell size + 1 (sic, REF).
    The 4-vector (log max(|dcx|/w, 1e-3), log max(|dcy|/h, 1e-3), log(w_i/w_j), log(h_i/h_j)) x 100 is multiplied by
    wave_len^(-k/(dim_g/8)), k < dim_g/8, and [sin; cos] gives dim_g values.
    """
    gh, gw = grid
    a = torch.arange(gh, dtype=torch.float64).view(gh, 1).expand(gh, gw).reshape(-1)
    b = torch.arange(gw, dtype=torch.float64).view(1, gw).expand(gh, gw).reshape(-1)
    x_min, x_max = a / gh, (a + 1) / gh
    y_min, y_max = b / gw, (b + 1) / gw
    cx, cy = (x_min + x_max) / 2, (y_min + y_max) / 2
    w, h = (x_max - x_min) + 1.0, (y_max - y_min) + 1.0
    dx = torch.log(torch.clamp(torch.abs((cx[:, None] - cx[None, :]) / w[:, None]), min=1e-3))
    dy = torch.log(torch.clamp(torch.abs((cy[:, None] - cy[None, :]) / h[:, None]), min=1e-3))
    dw = torch.log(w[:, None] / w[None, :])
    dh = torch.log(h[:, None] / h[None, :])
    position = torch.stack((dx, dy, dw, dh), dim=-1)                    # (P, P, 4)
    n_freq = dim_g // 8
    freqs = 1.0 / wave_len ** (torch.arange(n_freq, dtype=torch.float64) / n_freq)
    angles = (100.0 * position[..., None] * freqs).flatten(-2)         # (P, P, 4*n_freq)
    return torch.cat((angles.sin(), angles.cos()), dim=-1).float()     # (P, P, dim_g)


class GridGeometry(nn.Module):
    """Grid position encoding and the per-head relative-geometry bias.

    The two constant tables depend only on the grid size; they are cached as non-persistent buffers (moved by .to(),
    never saved) and recomputed only when a different grid arrives. The learned part is the per-head
    ReLU(Linear(64, 1)) of REF's `WGs`, held as one Linear(64, heads) (same parameters, one matmul).
    """

    def __init__(self, d_model: int, heads: int, grid: tuple[int, int], geometry: bool, dim_g: int = 64):
        super().__init__()
        self.d_model = d_model
        self.dim_g = dim_g
        self.geometry_weights = nn.Linear(dim_g, heads) if geometry else None
        self.grid = tuple(grid)
        self.register_buffer("grid_pos", grid_sine_embedding(self.grid, d_model), persistent=False)
        self.register_buffer("rel_embed", box_relational_embedding(self.grid, dim_g) if geometry else None,
                             persistent=False)

    def _refresh(self, grid: tuple[int, int], device: torch.device) -> None:
        if tuple(grid) == self.grid and self.grid_pos.device == device:
            return
        self.grid = tuple(grid)
        self.grid_pos = grid_sine_embedding(self.grid, self.d_model).to(device)
        if self.geometry_weights is not None:
            self.rel_embed = box_relational_embedding(self.grid, self.dim_g).to(device)

    def forward(self, grid: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """-> position encoding (1, P, d) and log-geometry bias (1, h, P, P) (None when geometry is off)."""
        self._refresh(grid, device)
        pos = self.grid_pos.unsqueeze(0)
        if self.geometry_weights is None:
            return pos, None
        weights = torch.relu(self.geometry_weights(self.rel_embed.to(self.geometry_weights.weight.dtype)))
        bias = torch.log(torch.clamp(weights.float(), min=1e-6)).permute(2, 0, 1).unsqueeze(0)  # (1, h, P, P)
        return pos, bias


class EncoderLayer(nn.Module):
    """a = attention sub-layer over (queries + PE, keys + PE, values) with the geometry bias; out = PWFF(a)."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, double_residual: bool):
        super().__init__()
        self.attention = ResidualAttention(d_model, heads, dropout, double_residual)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, pos: torch.Tensor,
                bias: Optional[torch.Tensor]) -> torch.Tensor:
        k, v = self.attention.project_kv(kv + pos, kv)
        return self.feed_forward(self.attention(x, k, v, bias, queries=x + pos))


class Encoder(nn.Module):
    """text=True: forward(visual=att_embed output (B,P,d), semantic=S (B,P,E)).
    text=False: forward(visual=F^ (B,P,W)). Returns memory E (B,P,d) and the grid PE (1,P,d)."""

    def __init__(self, cfg: EncoderConfig, in_dim: int, grid: tuple[int, int], text: bool, dropout: float,
                 double_residual: bool, init_seed: Optional[int] = None):
        """init_seed: pixel_embed (whose input size depends on the mode) draws from its own stream, so both modes
        start the layers after it from the same weights (`fsgr.models.seeding`)."""
        super().__init__()
        d = cfg.d_model
        self.text = text
        # pixel_embed embeds S (text mode, in_dim = CLIP embed dim) or F^ (in_dim = ViT width)
        with module_stream(init_seed, "encoder.pixel_embed"):
            self.pixel_embed = nn.Sequential(nn.Linear(in_dim, d), nn.CELU(1.3), nn.Dropout(dropout),
                                             nn.LayerNorm(d))
        self.norm = nn.LayerNorm(d)  # LN_e, applied to the embedded keys/values and to the text-mode queries
        self.layers = nn.ModuleList(
            EncoderLayer(d, cfg.heads, cfg.d_ff, dropout, double_residual) for _ in range(cfg.layers))
        self.geometry = GridGeometry(d, cfg.heads, grid, cfg.geometry)

    def forward(self, visual: torch.Tensor, semantic: Optional[torch.Tensor] = None,
                grid: Optional[tuple[int, int]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        grid = tuple(grid) if grid is not None else self.geometry.grid
        if grid[0] * grid[1] != visual.shape[1]:
            raise ValueError(f"grid {grid} does not match {visual.shape[1]} patch tokens")
        pos, bias = self.geometry(grid, visual.device)
        if self.text:
            if semantic is None:
                raise ValueError("text-mode encoder needs the semantic grid S")
            x = self.norm(visual)
            kv = self.norm(self.pixel_embed(semantic))   # held fixed across layers
            for layer in self.layers:
                x = layer(x, kv, pos, bias)
        else:
            x = self.norm(self.pixel_embed(visual))
            for layer in self.layers:
                x = layer(x, x, pos, bias)
        return x, pos
