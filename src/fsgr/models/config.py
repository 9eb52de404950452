"""Model configuration (owned by `fsgr.models`). Sizes live here so the architecture can be built from the config
alone (random weights) for `fsgr summary`; real weights are checked against these sizes when loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from fsgr.fields import UINT32_MAX, setting


@dataclass
class ClipConfig:
    """CLIP architecture (OpenAI layout). `path`: OpenAI TorchScript archive / state dict; 'demo' = shipped tiny CLIP;
    None = random weights of these sizes (summary, tests)."""

    path: Optional[str] = None
    embed_dim: int = setting(512, ge=1)
    image_resolution: int = setting(224, ge=1)
    vision_layers: int = setting(12, ge=1)
    vision_width: int = setting(768, ge=1)
    vision_patch_size: int = setting(16, ge=1)
    # not in the weights: OpenAI's convention is width // 64 (what load_clip infers)
    vision_heads: int = setting(12, ge=1)
    context_length: int = setting(77, ge=1)
    vocab_size: int = setting(49408, ge=1)
    transformer_width: int = setting(512, ge=1)
    transformer_heads: int = setting(8, ge=1)
    transformer_layers: int = setting(12, ge=1)


@dataclass
class PromptConfig:
    # 0 = no prompt machinery at all (no prompt_proj/prompt_norm): plain CLIP features
    num_tokens: int = setting(100, ge=0)
    deep: bool = True           # fresh prompts at every layer (deep VPT); False = shallow prompts only
    # None = the model's dropout (model.dropout), so one switch turns all dropout off
    dropout: Optional[float] = setting(None, ge=0.0, lt=1.0)


@dataclass
class AdapterConfig:
    first_block: int = setting(6, ge=0)
    last_block: int = setting(11, ge=0)
    ratio: float = setting(0.25, gt=0.0)  # bottleneck width = ratio * vision width (768 -> 192)
    zero_init: bool = True      # intended identity init of the up-projection (the reference re-initialised it)


@dataclass
class BackboneConfig:
    prompts: PromptConfig = field(default_factory=PromptConfig)
    adapters: AdapterConfig = field(default_factory=AdapterConfig)
    aligned_patches: Literal["csa", "ref"] = "csa"   # SCLIP CSA branch (intended) or REF's plain last-layer tokens
    # the norm before proj on the aligned path: REF's prompt_norm, or CLIP's own ln_post (OpenAI's alignment expects it)
    aligned_norm: Literal["prompt_norm", "ln_post"] = "prompt_norm"
    train_in_scst: bool = False                       # REF runs the backbone under no_grad in SCST


@dataclass
class SemanticConfig:
    enabled: bool = True        # FSGR "text mode": encoder queries attend to the semantic grid (False = REF run)
    codebook: Optional[str] = None   # codebook file from `fsgr codebook`; None = random (summary/tests only)
    codebook_size: int = setting(4585, ge=1)  # RAM tags (REF used COCO's 80); a codebook of another size is refused
    topk: int = setting(20, ge=1)  # concepts preselected per image by the global feature
    gumbel: bool = True         # straight-through hard Gumbel assignment in training (eval: hard argmax)
    gumbel_tau: float = setting(1.0, gt=0.0)
    group_norm: bool = True     # GroupViT group-size normalisation: S_p = t_k(p) / (n_k(p) + 1)
    # REF's clean argmax (what each patch shows), or the Gumbel-noised assignment that built S; SupCon's features
    # never see S: docs/fidelity.md
    ids_from: Literal["assignment", "clean"] = "clean"
    # SupCon labels: the head's ids (ids_from), or MaskCLIP's dense labels over the whole codebook from the value
    # path (what REF's offline pseudo-labels were)
    labels_from: Literal["head", "dense"] = "head"
    # the head's top-k: by the global embedding (REF), or the concepts the value path's dense labels use most
    # (background included)
    preselect: Literal["global", "dense"] = "global"
    # ablation "permuted" (docs/ablation.md): S built from the codebook's object rows shuffled with this seed, while
    # patches are labelled with the true rows (same labels, wrong language); None = S from the codebook as it is
    permute_codebook: Optional[int] = None
    # ablation "oracle": S built from the given per-patch concepts (data.patch_labels: synthetic, the generator's
    # truth) instead of the head's assignment, in training and test: what right labels could give at most
    oracle: bool = False

    @property
    def grid_from_given_labels(self) -> bool:
        """S is built from the given per-patch concepts (an enabled head under `oracle`), so every encode needs them."""
        return self.enabled and self.oracle


@dataclass
class EncoderConfig:
    layers: int = setting(2, ge=1)
    d_model: int = setting(512, ge=1)
    heads: int = setting(8, ge=1)
    d_ff: int = setting(2048, ge=1)
    geometry: bool = True       # relative-geometry attention bias w = softmax(log(max(G,1e-6)) + QK^T/sqrt(dk))


@dataclass
class DecoderConfig:
    layers: int = setting(3, ge=1)  # REF builds 4 for a stated 3
    d_model: int = setting(512, ge=1)
    heads: int = setting(8, ge=1)
    d_ff: int = setting(2048, ge=1)
    # longest teacher-forced caption incl. <bos>/<eos>; position table has max_len+1 rows
    max_len: int = setting(54, ge=3)
    # used ONLY when no vocabulary is given (`fsgr summary`); training passes len(vocab)
    vocab_size: int = setting(10201, ge=1)


@dataclass
class PMAConfig:
    """Prototypical memory in the decoder self-attention (PMA-Net, ICCV 2023; docs/pma.md). Sizes are per layer and
    per head; defaults are the paper's where it states them (M, T) and stated estimates otherwise (R, knn)."""

    enabled: bool = False
    # decoder layers (0-based) with memory; None = every layer (PMA-Net)
    layers: Optional[list[int]] = setting(None, ge=0)
    num_prototypes: int = setting(1024, ge=1)  # M key/value prototypes per head (paper: 1,024)
    # T: the banks hold the keys/values of the last T optimiser steps (paper)
    bank_iterations: int = setting(1500, ge=1)
    # per-step cap: a uniform sample of <= this many non-pad tokens of the step is pushed (bank rows per head =
    # T x cap; memory and checkpoints stay bounded)
    tokens_per_step: int = setting(64, ge=1)
    # R: K-Means + kNN every R optimiser steps (estimate, cost-bound: docs/pma.md)
    refresh_every: int = setting(300, ge=1)
    knn: int = setting(16, ge=1)  # value prototype = mean value of the knn bank keys nearest the key prototype
    segment_embedding: bool = True       # learnable segment embedding added to the memory keys (PMA-Net)
    frozen_in_scst: bool = True          # no bank pushes / refreshes during SCST (prototypes stay as XE left them)
    kmeans_iterations: int = setting(25, ge=1)  # Lloyd iterations per refresh (FAISS's default, which PMA-Net used)
    kmeans_init: Literal["random", "kmeans++"] = "random"   # FAISS's default is random distinct points
    bank_dtype: Literal["float32", "float16", "bfloat16"] = "float16"   # storage only; clustering runs in fp32
    # K-Means seed = f(seed, step, layer): identical on every rank and on resume
    seed: int = setting(0, ge=0, le=UINT32_MAX)


@dataclass
class ModelConfig:
    dropout: float = setting(0.1, ge=0.0, lt=1.0)
    double_residual: bool = True   # M2-lineage quirk: LN(q + Do(MHA)) inside the wrapper, then LN(x + Do(.)) again
    xavier_init: bool = True       # REF re-initialises every >=2-dim encoder/decoder tensor with xavier_uniform
    #                                (word/position tables included); False keeps normal word / sinusoid position init
    clip: ClipConfig = field(default_factory=ClipConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    pma: PMAConfig = field(default_factory=PMAConfig)
