"""MaskCLIP-style semantic head: quantise every patch onto one concept of a frozen text codebook.

1. preselect the top-k concepts of each image by the cosine of its global embedding with the codebook
   (`preselect="global"`, REF), or (`"dense"`) the concepts that MaskCLIP's dense labels of its patches use most,
   ties and the rest by the global cosine: a concept no global embedding ranks, like "background", is then in;
2. patch-concept logits L = exp(logit_scale) * T_b A^T (B, k, P);
3. assignment over the concept axis: straight-through hard Gumbel-softmax in training (`gumbel`), straight-through
   hard softmax otherwise (forward value one-hot(argmax), gradient of the softmax);
4. group-size normalisation (GroupViT): Y~_kp = Y_kp / (sum_p Y_kp + 1) (`group_norm`);
5. semantic grid S = Y~^T T_b (B, P, E), and the global concept id of each patch (B, P).

REF returns the clean argmax ids even in training, where the Gumbel-noised assignment that built S can differ.
These ids label the patch contrastive loss, whose features (att_embed of [F^_p; g^]) are computed from the patch,
never from S: the clean argmax says what the patch shows, the noisy one adds label noise. So `ids_from="clean"` (REF,
default); `ids_from="assignment"` returns the ids of the assignment that built S. `labels_from="dense"` labels SupCon
with the dense labels instead (what the reference's offline MaskCLIP pseudo-labels were): every patch over the whole
codebook, so background patches can be labelled background (docs/fidelity.md).
The head runs in fp32 with autocast off: 100 x cosine logits in bf16 would tie far too often for an argmax.

`dense_labels` is MaskCLIP's dense labelling itself: every patch against the WHOLE codebook (no top-k preselection),
with its softmax probability over all concepts. Maps (`fsgr explain`) use it on the backbone's value-path features
(FSGRCaptioner.encode(concept_map=True)): a concept the image's global embedding did not rank in its top k, typically
"background", is never in the head's assignment, so that assignment paints background patches with object concepts
at high confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from fsgr.models.config import SemanticConfig


@dataclass
class SemanticOutput:
    grid: torch.Tensor          # S (B, P, E)
    concept_ids: torch.Tensor   # (B, P) long, global codebook ids
    logits: torch.Tensor        # (B, k, P) patch-concept logits (clean, scaled)
    topk_ids: torch.Tensor      # (B, k) long, the preselected concepts


class SemanticHead(nn.Module):
    def __init__(self, cfg: SemanticConfig, codebook: torch.Tensor, grid_codebook: Optional[torch.Tensor] = None):
        """codebook (C, E): the rows patches are labelled with. grid_codebook (C, E): the rows S is built from, when
        not the same (the ablation's `permuted`: right labels, another concept's text in S)."""
        super().__init__()
        if codebook.ndim != 2:
            raise ValueError(f"codebook must be (C, E), got shape {tuple(codebook.shape)}")
        if grid_codebook is not None and grid_codebook.shape != codebook.shape:
            raise ValueError(f"grid_codebook {tuple(grid_codebook.shape)} must be the codebook's shape "
                             f"{tuple(codebook.shape)}")
        if cfg.topk > codebook.shape[0]:
            raise ValueError(f"semantic.topk {cfg.topk} exceeds the codebook size {codebook.shape[0]}")
        self.topk = cfg.topk
        self.gumbel = cfg.gumbel
        self.gumbel_tau = cfg.gumbel_tau
        self.group_norm = cfg.group_norm
        self.ids_from = cfg.ids_from
        self.labels_from = cfg.labels_from
        self.preselect = cfg.preselect
        # frozen: a buffer, so it is saved and moved with the model but never optimised or counted as a parameter
        self.register_buffer("codebook", codebook.detach().float().clone())
        self.register_buffer("grid_codebook", None if grid_codebook is None else grid_codebook.detach().float().clone())

    @property
    def codebook_size(self) -> int:
        return int(self.codebook.shape[0])

    @property
    def needs_dense_labels(self) -> bool:
        """forward() needs `dense_ids` (the value path's labels)."""
        return self.labels_from == "dense" or self.preselect == "dense"

    def dense_labels(self, patches: torch.Tensor, logit_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """patches (B, P, E) L2-normalised -> concept id (B, P) over the whole codebook and its softmax
        probability over the whole codebook (B, P)."""
        with torch.autocast(patches.device.type, enabled=False):
            logits = logit_scale.float().exp() * patches.float() @ self.codebook.t()            # (B, P, C)
            probability, ids = logits.softmax(dim=-1).max(dim=-1)
        return ids, probability

    def forward(self, global_embed: torch.Tensor, aligned_patches: torch.Tensor, logit_scale: torch.Tensor,
                dense_ids: Optional[torch.Tensor] = None, given_ids: Optional[torch.Tensor] = None) -> SemanticOutput:
        """global_embed (B, E) and aligned_patches (B, P, E), both L2-normalised; logit_scale = CLIP's log scale;
        dense_ids (B, P): `dense_labels` of the value path, needed when `needs_dense_labels`;
        given_ids (B, P): an oracle's concept of every patch: S and concept_ids are built from them instead of the
        assignment (hard one-hot over the whole codebook, the same group-size normalisation)."""
        if self.needs_dense_labels and dense_ids is None:
            raise ValueError(f"semantic head: labels_from={self.labels_from!r}, preselect={self.preselect!r} need the "
                             f"value path's dense labels (dense_ids)")
        with torch.autocast(global_embed.device.type, enabled=False):
            g = global_embed.float()
            patches = aligned_patches.float()
            codebook = self.codebook
            rank = g @ codebook.t()                                                  # (B, C) cosine in [-1, 1]
            if self.preselect == "dense":     # patch counts dominate; the cosine (< 2 apart) breaks ties
                counts = torch.zeros_like(rank).scatter_add_(1, dense_ids, torch.ones_like(dense_ids, dtype=rank.dtype))
                rank = 2 * counts + rank
            topk_ids = rank.topk(self.topk, dim=-1).indices                          # (B, k)
            concepts = codebook[topk_ids]                                            # (B, k, E)
            logits = logit_scale.float().exp() * concepts @ patches.transpose(1, 2)  # (B, k, P)

            if self.training and self.gumbel:
                gumbels = -torch.empty_like(logits).exponential_().log()
                soft = ((logits + gumbels) / self.gumbel_tau).softmax(dim=1)
            else:
                soft = logits.softmax(dim=1)
            local = soft.argmax(dim=1)                                               # (B, P)
            # one-hot by scatter: F.one_hot reads the ids' min/max back to the host (a device sync) on some devices
            hard = torch.zeros_like(soft).scatter_(1, local[:, None], 1.0)           # (B, k, P)
            assign = hard - soft.detach() + soft                                     # straight-through

            if self.group_norm:
                assign = assign / (assign.sum(dim=-1, keepdim=True) + 1.0)
            grid_rows = codebook if self.grid_codebook is None else self.grid_codebook  # the text S carries
            grid_concepts = concepts if self.grid_codebook is None else grid_rows[topk_ids]
            grid = assign.transpose(1, 2) @ grid_concepts                            # (B, P, E)

            if self.ids_from == "clean":
                local = logits.argmax(dim=1)
            concept_ids = dense_ids if self.labels_from == "dense" else topk_ids.gather(1, local)     # (B, P)
            if given_ids is not None:
                given = torch.zeros(*given_ids.shape, self.codebook_size, device=codebook.device)
                given.scatter_(2, given_ids[..., None], 1.0)                          # (B, P, C)
                if self.group_norm:
                    given = given / (given.sum(dim=1, keepdim=True) + 1.0)
                grid, concept_ids = given @ grid_rows, given_ids
        return SemanticOutput(grid=grid, concept_ids=concept_ids, logits=logits, topk_ids=topk_ids)
