"""FSGR backbone: a frozen CLIP ViT with deep visual prompts, attention-branch adapters on the last
blocks and an SCLIP correlative self-attention (CSA) branch in the last layer.

Per layer i the token sequence is [CLS | N prompts | P patches]. Prompts are Dropout(prompt_proj(E_i)); they get no
position embedding and no ln_pre, and deep prompts replace the previous layer's prompt outputs at every layer >= 1.
Blocks in the adapter range compute h + Ad(MHSA(LN1(h))) with Ad(u) = u + fc2(GELU(fc1(u))). The CSA branch runs the
last block's frozen attention weights on the patch tokens entering it, with softmax(qq^T/sqrt(d)) + softmax(kk^T/sqrt(d))
as the attention, no adapter, then the block's MLP.

Trainable: the prompt embeddings, prompt_proj, prompt_norm and the visual adapters; every CLIP weight has
requires_grad=False (set here). `trainable_parameters()` lists exactly those; an optimiser may equally filter on
requires_grad. There are no text-tower adapters (the reference built them in all 12 text blocks and never ran them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fsgr.errors import ConfigError
from fsgr.models.clip import ResidualAttentionBlock, VisionTransformer
from fsgr.models.config import BackboneConfig
from fsgr.models.seeding import module_stream


@dataclass
class BackboneOutput:
    patch_tokens: torch.Tensor      # (B, P, W) F^: last-layer patch tokens after prompt_norm, L2-normalised
    global_embed: torch.Tensor      # (B, E)    g^: ln_post(H[:, 0]) @ proj, L2-normalised
    aligned_patches: torch.Tensor   # (B, P, E) A^: CSA patches prompt_norm(z'') @ proj (or REF's H @ proj), L2-normalised
    value_patches: Optional[torch.Tensor] = None   # (B, P, E) MaskCLIP dense features (forward(value_patches=True))


class Adapter(nn.Module):
    """Bottleneck adapter u + fc2(GELU(fc1(u))); fc2 starts at zero so the adapter starts as the identity (the
    reference meant to, then re-initialised it)."""

    def __init__(self, width: int, hidden: int, zero_init: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()   # exact GELU, as the reference (CLIP's own blocks use QuickGELU)
        self.fc2 = nn.Linear(hidden, width)
        nn.init.trunc_normal_(self.fc1.weight, std=0.02)
        nn.init.zeros_(self.fc1.bias)
        if zero_init:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)
        else:  # the reference: the zero init is undone and fc2 ends at trunc_normal(0.02)
            nn.init.trunc_normal_(self.fc2.weight, std=0.02)
            nn.init.zeros_(self.fc2.bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.fc2(self.act(self.fc1(u)))


def csa_attention(block: ResidualAttentionBlock, z: torch.Tensor) -> torch.Tensor:
    """SCLIP correlative self-attention with the block's frozen weights: out_proj((softmax(qq^T s) + softmax(kk^T s)) v).

    (A1 + A2) v = A1 v + A2 v, so it is two fused SDPA calls: queries attending to queries, keys attending to keys."""
    q, k, v = block.attn.qkv(block.ln_1(z))                             # (B, heads, P, d) each
    o = F.scaled_dot_product_attention(q, q, v) + F.scaled_dot_product_attention(k, k, v)
    return block.attn.merge_heads(o)                                    # (B, P, W)


class FSGRBackbone(nn.Module):
    def __init__(self, visual: VisionTransformer, cfg: BackboneConfig, default_dropout: float = 0.1,
                 init_seed: Optional[int] = None):
        """`default_dropout`: the prompt dropout when `cfg.prompts.dropout` is unset (the captioner passes model.dropout;
        0.1 is the reference's). `init_seed`: prompts and adapters each draw their initial weights from their own
        stream (`fsgr.models.seeding`), so a variant without prompts starts its adapters as one with them; None: the
        global stream."""
        super().__init__()
        if cfg.aligned_patches not in ("csa", "ref"):
            raise ConfigError(f"model.backbone.aligned_patches must be 'csa' or 'ref', got {cfg.aligned_patches!r}")
        if cfg.aligned_norm not in ("prompt_norm", "ln_post"):
            raise ConfigError(f"model.backbone.aligned_norm must be 'prompt_norm' or 'ln_post', got "
                              f"{cfg.aligned_norm!r}")
        self.cfg = cfg
        self.visual = visual
        for p in self.visual.parameters():
            p.requires_grad_(False)
        width, layers = visual.width, len(visual.transformer.resblocks)
        self.width, self.embed_dim = width, visual.output_dim
        self.num_prompts = cfg.prompts.num_tokens
        self.deep_prompt_embeddings = None

        # prompts: shallow E_0 (1, N, W) and deep E_1..E_{L-1} (L-1, N, W), one shared projection and a LayerNorm
        if self.num_prompts > 0:
            with module_stream(init_seed, "prompts"):
                p = cfg.prompts
                # VPT's init: v = sqrt(6 / (3 * patch^2 + W)) (0.0625 at ViT-B/16)
                bound = math.sqrt(6.0 / (3 * visual.patch_size ** 2 + width))
                self.prompt_embeddings = nn.Parameter(torch.empty(1, p.num_tokens, width).uniform_(-bound, bound))
                if p.deep and layers > 1:
                    self.deep_prompt_embeddings = nn.Parameter(
                        torch.empty(layers - 1, p.num_tokens, width).uniform_(-bound, bound))
                self.prompt_proj = nn.Linear(width, width)
                nn.init.kaiming_normal_(self.prompt_proj.weight, a=0, mode="fan_out")
                self.prompt_dropout = nn.Dropout(default_dropout if p.dropout is None else p.dropout)
                self.prompt_norm = nn.LayerNorm(width, eps=1e-6)

        a = cfg.adapters
        if a.first_block <= a.last_block and not (0 <= a.first_block and a.last_block < layers):
            raise ConfigError(f"model.backbone.adapters blocks {a.first_block}..{a.last_block} are outside the "
                             f"{layers} blocks of this CLIP")
        self.adapter_blocks = list(range(a.first_block, a.last_block + 1))   # empty when first > last: no adapters
        hidden = max(1, int(round(width * a.ratio)))
        with module_stream(init_seed, "adapters"):
            self.adapters = nn.ModuleDict({str(i): Adapter(width, hidden, a.zero_init) for i in self.adapter_blocks})

    # --------------------------------------------------------------------------------------------------------------
    @property
    def grid_size(self) -> tuple[int, int]:
        """(rows, cols) of the patch grid."""
        return (self.visual.grid_size, self.visual.grid_size)

    @property
    def num_patches(self) -> int:
        return self.visual.num_patches

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Exactly the prompts (embeddings, prompt_proj, prompt_norm) and the adapters."""
        return [p for name, p in self.named_parameters() if not name.startswith("visual.")]

    def _prompts(self, layer: int, batch: int) -> torch.Tensor:
        embeddings = self.prompt_embeddings[0] if layer == 0 else self.deep_prompt_embeddings[layer - 1]
        # expand before the dropout, as VPT: every image draws its own mask
        return self.prompt_dropout(self.prompt_proj(embeddings).expand(batch, -1, -1))     # (B, N, W)

    def _block(self, i: int, block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
        attn = block.attention(x)
        if str(i) in self.adapters:
            attn = self.adapters[str(i)](attn)          # inside the residual, after the attention
        x = x + attn
        return x + block.mlp(block.ln_2(x))

    def forward(self, images: torch.Tensor, value_patches: bool = False) -> BackboneOutput:
        """`value_patches`: also MaskCLIP's dense features, ln_post(out_proj(v)) @ proj of the patches entering the
        last block (its value path alone: no attention mixing, no residual, no MLP). The CSA output keeps the residual
        and MLP, which spread each object's identity over the whole image: on the demo, 99% of the background patches
        get an object of the image as their nearest concept; the value path keeps them local (fsgr explain)."""
        visual, n = self.visual, self.num_prompts
        x = visual.embed(images)                                              # (B, 1 + P, W)
        B, P = x.shape[0], x.shape[1] - 1
        if n:
            x = torch.cat([x[:, :1], self._prompts(0, B).to(x.dtype), x[:, 1:]], dim=1)   # (B, 1 + N + P, W)
        blocks = visual.transformer.resblocks
        z = values = None
        for i, block in enumerate(blocks):
            if i >= 1 and n and self.deep_prompt_embeddings is not None:
                x = torch.cat([x[:, :1], self._prompts(i, B).to(x.dtype), x[:, 1 + n:]], dim=1)
            if i == len(blocks) - 1 and self.cfg.aligned_patches == "csa":
                z = x[:, 1 + n:]                                              # patches entering the last layer
                z = z + csa_attention(block, z)
                z = z + block.mlp(block.ln_2(z))                              # (B, P, W) z''
            if i == len(blocks) - 1 and value_patches:
                _, _, v = block.attn.qkv(block.ln_1(x[:, 1 + n:]))             # (B, heads, P, d)
                values = F.normalize(visual.ln_post(block.attn.merge_heads(v)) @ visual.proj, dim=-1)   # (B, P, E)
            x = self._block(i, block, x)
        h = self.prompt_norm(x) if n else x
        patches = h[:, -P:]                                                   # (B, P, W) F (no ln_post)
        global_embed = visual.ln_post(h[:, 0]) @ visual.proj                  # (B, E) g
        # A: the CSA output (REF used the last-layer tokens H), normed as REF (prompt_norm; nothing without prompts)
        # or with CLIP's ln_post, which OpenAI's text alignment of the projected tokens expects
        aligned = z if z is not None else x[:, -P:]
        if self.cfg.aligned_norm == "ln_post":
            aligned = visual.ln_post(aligned)
        elif n:
            aligned = self.prompt_norm(aligned)
        aligned = aligned @ visual.proj                                       # (B, P, E)
        return BackboneOutput(patch_tokens=F.normalize(patches, dim=-1),
                              global_embed=F.normalize(global_embed, dim=-1),
                              aligned_patches=F.normalize(aligned, dim=-1), value_patches=values)
