"""Model configuration (owned by `fsgr.models`). Sizes live here so the architecture can be built from the config
alone (random weights) for `fsgr summary`; real weights are checked against these sizes when loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class ClipConfig:
    """CLIP architecture (OpenAI layout). `path`: OpenAI TorchScript archive / state dict; 'demo' = shipped tiny CLIP;
    None = random weights of these sizes (summary, tests)."""

    path: Optional[str] = None
    embed_dim: int = 512
    image_resolution: int = 224
    vision_layers: int = 12
    vision_width: int = 768
    vision_patch_size: int = 16
    vision_heads: int = 12      # not in the weights: OpenAI's convention is width // 64 (what load_clip infers)
    context_length: int = 77
    vocab_size: int = 49408
    transformer_width: int = 512
    transformer_heads: int = 8
    transformer_layers: int = 12


@dataclass
class PromptConfig:
    num_tokens: int = 100       # 0 = no prompt machinery at all (no prompt_proj/prompt_norm): plain CLIP features
    deep: bool = True           # fresh prompts at every layer (deep VPT); False = shallow prompts only
    dropout: Optional[float] = None   # None = the model's dropout (model.dropout), so one switch turns all dropout off


@dataclass
class AdapterConfig:
    first_block: int = 6
    last_block: int = 11
    ratio: float = 0.25         # bottleneck width = ratio * vision width (768 -> 192)
    zero_init: bool = True      # intended identity init of the up-projection (the reference re-initialised it)


@dataclass
class BackboneConfig:
    prompts: PromptConfig = field(default_factory=PromptConfig)
    adapters: AdapterConfig = field(default_factory=AdapterConfig)
    aligned_patches: Literal["csa", "ref"] = "csa"   # SCLIP CSA branch (intended) or REF's plain last-layer tokens
    train_in_scst: bool = False                       # REF runs the backbone under no_grad in SCST


@dataclass
class SemanticConfig:
    enabled: bool = True        # FSGR "text mode": encoder queries attend to the semantic grid (False = REF run)
    codebook: Optional[str] = None   # codebook file from `fsgr codebook`; None = random (summary/tests only)
    codebook_size: int = 4585   # RAM tags (REF used COCO's 80); a codebook of another size is refused
    topk: int = 20              # concepts preselected per image by the global feature
    gumbel: bool = True         # straight-through hard Gumbel assignment in training (eval: hard argmax)
    gumbel_tau: float = 1.0
    group_norm: bool = True     # GroupViT group-size normalisation: S_p = t_k(p) / (n_k(p) + 1)
    ids_from: Literal["assignment", "clean"] = "clean"  # REF's clean argmax (what each patch shows), or the
    #                                   Gumbel-noised assignment that built S; SupCon's features never see S: docs/fidelity.md


@dataclass
class EncoderConfig:
    layers: int = 2
    d_model: int = 512
    heads: int = 8
    d_ff: int = 2048
    geometry: bool = True       # relative-geometry attention bias w = softmax(log(max(G,1e-6)) + QK^T/sqrt(dk))


@dataclass
class DecoderConfig:
    layers: int = 3             # REF builds 4 for a stated 3
    d_model: int = 512
    heads: int = 8
    d_ff: int = 2048
    max_len: int = 54           # longest teacher-forced caption incl. <bos>/<eos>; position table has max_len+1 rows
    vocab_size: int = 10201     # used ONLY when no vocabulary is given (`fsgr summary`); training passes len(vocab)


@dataclass
class PMAConfig:
    """Prototypical memory in the decoder self-attention (PMA-Net, ICCV 2023; docs/pma.md). Sizes are per layer and
    per head; defaults are the paper's where it states them (M, T) and stated estimates otherwise (R, knn)."""

    enabled: bool = False
    layers: Optional[list[int]] = None   # decoder layers (0-based) with memory; None = every layer (PMA-Net)
    num_prototypes: int = 1024           # M key/value prototypes per head (paper: 1,024)
    bank_iterations: int = 1500          # T: the banks hold the keys/values of the last T optimiser steps (paper)
    tokens_per_step: int = 64            # per-step cap: a uniform sample of <= this many non-pad tokens of the step
    #                                      is pushed (bank rows per head = T x cap; memory and checkpoints stay bounded)
    refresh_every: int = 300             # R: K-Means + kNN every R optimiser steps (estimate, cost-bound: docs/pma.md)
    knn: int = 16                        # value prototype = mean value of the knn bank keys nearest the key prototype
    segment_embedding: bool = True       # learnable segment embedding added to the memory keys (PMA-Net)
    frozen_in_scst: bool = True          # no bank pushes / refreshes during SCST (prototypes stay as XE left them)
    kmeans_iterations: int = 25          # Lloyd iterations per refresh (FAISS's default, which PMA-Net used)
    kmeans_init: Literal["random", "kmeans++"] = "random"   # FAISS's default is random distinct points
    bank_dtype: Literal["float32", "float16", "bfloat16"] = "float16"   # storage only; clustering runs in fp32
    seed: int = 0                        # K-Means seed = f(seed, step, layer): identical on every rank and on resume


@dataclass
class ModelConfig:
    dropout: float = 0.1
    double_residual: bool = True   # M2-lineage quirk: LN(q + Do(MHA)) inside the wrapper, then LN(x + Do(.)) again
    xavier_init: bool = True       # REF re-initialises every >=2-dim encoder/decoder tensor with xavier_uniform
    #                                (word/position tables included); False keeps normal word / sinusoid position init
    clip: ClipConfig = field(default_factory=ClipConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    pma: PMAConfig = field(default_factory=PMAConfig)
