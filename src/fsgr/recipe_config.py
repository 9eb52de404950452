"""Training, SCST and evaluation settings: the recipe's part of the config.

Kept outside `fsgr.training` so that `fsgr.config` (which serving reads too) never imports the trainer.
Learning rates are ABSOLUTE: the reference multiplied base LRs of 0.1/1.0 by its schedule's factors and its loss became
NaN. The schedule is one formula per parameter group, written out in `fsgr.training.schedules` and docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class TrainConfig:
    seed: int = 42
    batch_size: int = 50            # captions per optimiser step, over all processes and accumulation micro-steps
    grad_accum: int = 1             # micro-batches per optimiser step (each holds batch_size / grad_accum captions)
    max_epochs: int = 20            # XE epochs at most (the switch to SCST also happens at xe_most)
    max_steps: Optional[int] = None  # stop (and save last.pt) after this many optimiser steps in total, both phases
    log_every: int = 50             # optimiser steps between metrics.jsonl / TensorBoard rows
    lr: float = 2e-4                # absolute peak LR of the captioning group (att_embed, encoder, decoder)
    backbone_lr_scale: float = 0.1  # backbone group (prompts + adapters) peak LR = lr * backbone_lr_scale
    lr_warmup_epochs: int = 3       # epoch e < warmup: factor (e+1)/(warmup+1)  (reference ORIGINAL, shifted by 1)
    lr_milestones: list[int] = field(default_factory=lambda: [10, 12])  # epochs where the LR is multiplied by gamma
    lr_gamma: float = 0.2
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    adam_eps: float = 1e-8
    contrastive_weight: float = 0.25
    contrastive_temperature: float = 0.07
    contrastive_base_temperature: float = 0.07
    contrastive_chunk: int = 4096   # SupCon anchors per chunk (memory: chunk x N logits, recomputed in backward)
    grad_clip: Optional[float] = None   # reference: none
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"   # auto: bf16 on GPUs that have it, else fp16; CPU fp32
    # XE -> SCST switch, as the reference: after each XE epoch, val CIDEr improves -> patience 0, else +1;
    # patience == patience_limit before xe_least epochs -> reset and stay; at/after xe_least, or at epoch xe_most,
    # reload the best-val checkpoint and switch. In SCST, patience == patience_limit stops training.
    patience: int = 5
    xe_least: int = 15
    xe_most: int = 20
    compile: bool = False
    find_unused_parameters: Optional[bool] = None  # DDP; None = auto: on when contrastive_weight == 0 (the
    #                                                 parts that only feed SupCon then get no gradient)


@dataclass
class ScstConfig:
    enabled: bool = True
    mode: Literal["sample", "beam"] = "sample"   # sample = SacreEOS "standard"; beam = M2/FSGR recipe
    num_samples: int = 5            # sample mode: captions sampled per image (beam mode: the beam size)
    max_len: int = 20
    lr: float = 1e-5                # absolute LR of every trainable group in SCST (a fresh Adam at the switch)
    lr_milestones: list[int] = field(default_factory=lambda: [10, 13, 16])  # SCST epochs (from 0) x gamma
    lr_gamma: float = 0.2
    batch_images: int = 10          # images per SCST step, over all processes (any number: split as evenly as can be)
    # CIDEr-D reward's document frequencies: "captions" = each training caption a document, ref_len = log(#captions)
    # (M2/RSTNet/FSGR code: Cider(PTBTokenizer.tokenize(train captions))); "images" = each image's references one
    # document, ref_len = log(#images) (pycocoevalcap's CiderScorer over the training set). docs/fidelity.md
    reward_documents: Literal["captions", "images"] = "captions"
    max_epochs: int = 30            # SCST epochs at most


@dataclass
class EvalConfig:
    beam_size: int = 5
    max_len: int = 20
    min_len: int = 0                # decoding controls (fsgr.models.decoding); the defaults change nothing
    length_penalty: float = 0.0
    no_repeat_ngram: int = 0
    batch_images: int = 50
    metrics: str = "bleu,meteor,rouge,cider"   # the final test and `fsgr evaluate`
    val_metrics: Optional[str] = None   # every validation (model selection: must hold cider); None = metrics.
    #                                     A Java metric that fails at validation is reported unavailable, not fatal
    java_timeout: Optional[float] = None   # seconds one METEOR/SPICE run may take before it is killed (a hung JVM
    #                                        at validation then costs this, not the jars' own 30/60 minutes)
    val_loss: bool = True           # XE(+contrastive) loss on val captions, eval mode
    max_images: Optional[int] = None   # evaluate only the first N images of the split (smoke tests)
    test_at_end: bool = True        # score the best-val checkpoint on test once training ends (never for selection)
