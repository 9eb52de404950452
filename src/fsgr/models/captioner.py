"""The whole FSGR captioner: CLIP backbone -> semantic head -> grid encoder -> caption decoder.

    images (B,3,H,W) --backbone--> F^ (B,P,W), g^ (B,E), A^ (B,P,E)
    att_embed([F^; g^]) -> Q0 / contrastive features (B,P,d)
    semantic head(g^, A^) -> S (B,P,E), concept ids (B,P)
    encoder(Q0, S) (text mode) or encoder(F^) -> memory E (B,P,d), grid PE (1,P,d)
    decoder(tokens, E[image_index], PE) -> log-probs (N,L,V)

Image-level batching: the backbone and encoder run once per image; `image_index` (N,) picks each caption's image row.
Sizes come from the config and the vocabulary handed in; a codebook or state dict of another size is refused with both
sizes named (the reference's CUDA assert came from a table sized by a stray file). The backbone runs without autograd
when it has nothing to train, or when the caller says so (`backbone_grad=False`: SCST with
`model.backbone.train_in_scst=False`, as REF's SCST) -- an argument, not hidden state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields, replace
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsgr.errors import CheckpointError, ConfigError
from fsgr.models.backbone import FSGRBackbone
from fsgr.models.clip import build_clip, weights_fingerprint
from fsgr.models.config import ModelConfig
from fsgr.models.decoder import Decoder, xavier_init_
from fsgr.models.encoder import Encoder
from fsgr.models.seeding import draw_init_seed, module_stream
from fsgr.models.semantic import SemanticHead


@dataclass
class Encoded:
    """What the decoder needs from the images, plus the per-patch outputs of the semantic head."""

    memory: torch.Tensor          # (B, P, d) encoder output E
    memory_pos: torch.Tensor      # (1, P, d) grid position encoding (added to the cross-attention keys)
    concept_ids: torch.Tensor     # (B, P) long: global codebook id of each patch
    contrast_feats: torch.Tensor  # (B, P, d) att_embed output (SupCon features)
    global_embed: torch.Tensor    # (B, E) L2-normalised CLIP image embedding
    # encode(concept_map=True) only: MaskCLIP's dense label of each patch over the WHOLE codebook (what maps show)
    map_ids: Optional[torch.Tensor] = None         # (B, P) long
    map_confidence: Optional[torch.Tensor] = None  # (B, P) its softmax probability over the whole codebook

    def index_select(self, rows: torch.Tensor) -> "Encoded":
        """Rows of every per-image tensor (memory_pos is shared)."""
        return replace(self, **{f.name: getattr(self, f.name).index_select(0, rows)
                                for f in fields(self) if f.name != "memory_pos" and getattr(self, f.name) is not None})


@dataclass
class CaptionerOutput:
    logprobs: torch.Tensor        # (N, L, V) fp32 log-probs of the next token at every position
    concept_ids: torch.Tensor     # (B_img, P) long
    contrast_feats: torch.Tensor  # (B_img, P, d)


def _clip_sizes(clip, cfg: ModelConfig) -> tuple[int, int]:
    """(vision width W, embedding dim E) of the CLIP actually handed in (a loaded checkpoint may differ from cfg)."""
    visual = clip.visual
    proj = getattr(visual, "proj", None)
    if isinstance(proj, torch.Tensor) and proj.ndim == 2:
        return int(proj.shape[0]), int(proj.shape[1])
    return cfg.clip.vision_width, cfg.clip.embed_dim


class FSGRCaptioner(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, clip=None, codebook=None, pad_id: int = 1, bos_id: int = 2,
                 eos_id: int = 3, grid_codebook=None):
        """grid_codebook: the rows the semantic grid is built from when they are not the codebook's
        (model.semantic.permute_codebook; `fsgr.core.build` permutes them); None there = a placeholder that a
        checkpoint's state fills."""
        super().__init__()
        for name, idx in (("pad", pad_id), ("bos", bos_id), ("eos", eos_id)):
            if not 0 <= idx < vocab_size:
                raise CheckpointError(f"<{name}> id {idx} is outside the vocabulary of {vocab_size} words")
        if cfg.encoder.d_model != cfg.decoder.d_model:
            raise ConfigError(f"model.encoder.d_model {cfg.encoder.d_model} != model.decoder.d_model "
                              f"{cfg.decoder.d_model}: the decoder cross-attends the encoder output")

        init_seed = draw_init_seed()     # each module then draws from its own stream (fsgr.models.seeding)
        if clip is None:
            with module_stream(init_seed, "clip"):
                clip = build_clip(cfg.clip)      # random weights of the configured sizes (summary, tests)
        else:
            self._check_codebook_clip(codebook, clip)
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        width, embed_dim = _clip_sizes(clip, cfg)

        self.backbone = FSGRBackbone(clip.visual, cfg.backbone, default_dropout=cfg.dropout, init_seed=init_seed)
        # CLIP's (log) temperature scales the patch-concept logits; frozen, so a buffer
        self.register_buffer("logit_scale", clip.logit_scale.detach().float().reshape(()).clone())
        with module_stream(init_seed, "semantic"):
            book = self._codebook_tensor(codebook, cfg, embed_dim)
            if cfg.semantic.permute_codebook is not None and grid_codebook is None:
                grid_codebook = book.clone()
            grid_book = None if grid_codebook is None else self._codebook_tensor(grid_codebook, cfg, embed_dim)
            self.semantic = SemanticHead(cfg.semantic, book, grid_book)
        d = cfg.encoder.d_model
        with module_stream(init_seed, "att_embed"):
            self.att_embed = nn.Sequential(nn.Linear(width + embed_dim, d), nn.CELU(1.3), nn.Dropout(cfg.dropout),
                                           nn.LayerNorm(d))
        text = cfg.semantic.enabled
        with module_stream(init_seed, "encoder"):
            self.encoder = Encoder(cfg.encoder, in_dim=embed_dim if text else width,
                                   grid=tuple(self.backbone.grid_size), text=text, dropout=cfg.dropout,
                                   double_residual=cfg.double_residual, init_seed=init_seed)
        with module_stream(init_seed, "decoder"):
            self.decoder = Decoder(cfg.decoder, vocab_size, pad_id, cfg.dropout, cfg.double_residual, pma=cfg.pma)
        if cfg.xavier_init:       # REF's init_weights over encoder + decoder, a stream per part (pixel_embed's size
            for prefix, module in (("encoder", self.encoder), ("decoder", self.decoder)):    # varies with the mode)
                for name, child in module.named_children():
                    with module_stream(init_seed, f"{prefix}.{name}.xavier"):
                        xavier_init_(child)
        # PMA banks are per rank and prototypes are synchronised at each refresh: DDP must not broadcast them from
        # rank 0 at every forward (that would replace every rank's banks with rank 0's and move ~GBs per step)
        self._ddp_params_and_buffers_to_ignore = [name for name, _ in self.named_buffers()
                                                  if ".memory." in name]

    @staticmethod
    def _check_codebook_clip(codebook, clip) -> None:
        """A codebook file records the fingerprint of the CLIP that embedded it; refuse it beside another CLIP."""
        made_with = getattr(codebook, "clip_fingerprint", None)
        if made_with is None:
            return

        ours = weights_fingerprint(clip)
        if made_with != ours:
            raise CheckpointError(f"codebook was embedded with CLIP weights {made_with} but the model's CLIP is {ours}; "
                                  f"rebuild it with `fsgr codebook`")

    @staticmethod
    def _codebook_tensor(codebook, cfg: ModelConfig, embed_dim: int) -> torch.Tensor:
        expected = cfg.semantic.codebook_size
        if codebook is None:   # random unit vectors: architecture only (summary, tests), never for training
            return F.normalize(torch.randn(expected, embed_dim), dim=-1)
        emb = getattr(codebook, "embeddings", codebook)
        if not isinstance(emb, torch.Tensor) or emb.ndim != 2:
            raise CheckpointError(f"codebook: expected a (concepts, dim) tensor, got {type(emb).__name__}")
        if emb.shape[0] != expected:
            raise CheckpointError(f"codebook has {emb.shape[0]} concepts but model.semantic.codebook_size is "
                                  f"{expected}")
        if emb.shape[1] != embed_dim:
            raise CheckpointError(f"codebook embeddings are {emb.shape[1]}-d but the CLIP embedding is {embed_dim}-d")
        return emb

    # ------------------------------------------------------------------------------------------------------------
    def encode(self, images: torch.Tensor, backbone_grad: bool = True, concept_map: bool = False,
               patch_concepts: Optional[torch.Tensor] = None) -> Encoded:
        """images (B,3,H,W) -> Encoded. backbone_grad=False runs the backbone without autograd (SCST with
        model.backbone.train_in_scst=False); it always does when the backbone has no trainable parameter.
        concept_map=True also labels every patch MaskCLIP-style over the whole codebook from the backbone's value
        path (map_ids, map_confidence): what maps show. The head's own top-k assignment (concept_ids) built the
        semantic grid, but a concept the global embedding did not rank, typically "background", is never in it.
        patch_concepts (B, P): the true concept of every patch (data.patch_labels), which S is built from when
        model.semantic.oracle (needed then; unused otherwise)."""
        given = self._oracle_ids(patch_concepts)
        trainable = any(p.requires_grad for p in self.backbone.parameters())
        ctx = contextlib.nullcontext() if (backbone_grad and trainable) else torch.no_grad()
        dense = concept_map or self.semantic.needs_dense_labels
        with ctx:
            feats = self.backbone(images, value_patches=dense)
        patches, global_embed = feats.patch_tokens, feats.global_embed          # (B,P,W), (B,E)
        b, p, _ = patches.shape
        contrast = self.att_embed(torch.cat([patches, global_embed[:, None].expand(b, p, -1)], dim=-1))
        map_ids = map_confidence = None
        if dense:
            map_ids, map_confidence = self.semantic.dense_labels(feats.value_patches, self.logit_scale)
        sem = self.semantic(global_embed, feats.aligned_patches, self.logit_scale, dense_ids=map_ids, given_ids=given)
        grid = tuple(self.backbone.grid_size)
        if self.encoder.text:
            memory, pos = self.encoder(contrast, sem.grid, grid)                 # queries: att_embed output (REF: F^)
        else:
            memory, pos = self.encoder(patches, None, grid)
        if not concept_map:
            map_ids = map_confidence = None
        return Encoded(memory=memory, memory_pos=pos, concept_ids=sem.concept_ids, contrast_feats=contrast,
                       global_embed=global_embed, map_ids=map_ids, map_confidence=map_confidence)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, image_index: Optional[torch.Tensor] = None,
                backbone_grad: bool = True, patch_concepts: Optional[torch.Tensor] = None) -> CaptionerOutput:
        """images (B_img,3,H,W), tokens (N,L) teacher-forced captions, image_index (N,) image row of each caption
        (None: one caption per image), patch_concepts (B_img, P) as `encode` -> CaptionerOutput."""
        if image_index is None:
            image_index = torch.arange(tokens.shape[0], device=tokens.device)
        if image_index.shape != tokens.shape[:1]:
            raise ValueError(f"image_index {tuple(image_index.shape)} must have one entry per caption "
                             f"({tokens.shape[0]})")
        enc = self.encode(images, backbone_grad=backbone_grad, patch_concepts=patch_concepts)
        memory = enc.memory.index_select(0, image_index)
        logprobs = self.decoder(tokens, memory, enc.memory_pos)
        return CaptionerOutput(logprobs=logprobs, concept_ids=enc.concept_ids, contrast_feats=enc.contrast_feats)

    def _oracle_ids(self, patch_concepts: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The ids S is built from under model.semantic.oracle (None otherwise)."""
        if not self.cfg.semantic.grid_from_given_labels:
            return None
        if patch_concepts is None:
            raise ConfigError("model.semantic.oracle: this model builds its semantic grid from the true concept of "
                             "every patch (data.patch_labels), and none were given; it cannot caption other images")
        return patch_concepts

    # ------------------------------------------------------------------------------------------------------------
    def memory_prototypes(self) -> Optional[int]:
        """Valid prototypes across the decoder's memory layers (metrics.jsonl `memory_prototypes`); None if off."""
        return self.decoder.memory_prototypes()

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """'backbone': trainable backbone parameters (prompts + adapters); 'captioner': every other trainable one."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in self.backbone.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return {"backbone": backbone, "captioner": rest}

    # ------------------------------------------------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Refuse a state dict of another vocabulary or codebook size with both sizes named, before torch's
        generic size-mismatch error."""
        words = state_dict.get("decoder.word_emb.weight")
        if words is not None and words.shape[0] != self.vocab_size:
            raise CheckpointError(f"checkpoint decoder has {words.shape[0]} words but the vocabulary has "
                                  f"{self.vocab_size}")
        self._check_memory_state(state_dict)
        codebook = state_dict.get("semantic.codebook")
        if codebook is not None and codebook.shape[0] != self.semantic.codebook_size:
            raise CheckpointError(f"checkpoint codebook has {codebook.shape[0]} concepts but "
                                  f"model.semantic.codebook_size is {self.semantic.codebook_size}")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _check_memory_state(self, state_dict) -> None:
        """PMA buffers: refuse a checkpoint with/without memory, or with other bank/prototype sizes, in one line."""
        ours = {k: v.shape for k, v in self.state_dict().items() if ".memory." in k}
        theirs = {k: v.shape for k, v in state_dict.items() if ".memory." in k}
        if ours and not theirs:
            raise CheckpointError("checkpoint has no prototypical-memory state (trained with model.pma.enabled="
                                  "false) but model.pma.enabled is true")
        if theirs and not ours:
            raise CheckpointError("checkpoint holds prototypical-memory state (model.pma.enabled=true) but this "
                                  "model has no memory in those layers; set model.pma as in the checkpoint")
        if set(ours) != set(theirs):
            raise CheckpointError(f"checkpoint memory entries differ from model.pma (layers / segment_embedding): "
                                  f"missing {sorted(set(ours) - set(theirs))}, "
                                  f"unexpected {sorted(set(theirs) - set(ours))}")
        for k, shape in ours.items():
            if theirs[k] != shape:
                raise CheckpointError(f"checkpoint {k} is {tuple(theirs[k])} but model.pma gives {tuple(shape)} "
                                      f"(num_prototypes / bank_iterations x tokens_per_step must match)")
