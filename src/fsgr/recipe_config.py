"""Training, SCST and evaluation settings: the recipe's part of the config.

Kept outside `fsgr.training` so that `fsgr.config` (which serving reads too) never imports the trainer.
Learning rates are ABSOLUTE: the reference multiplied base LRs of 0.1/1.0 by its schedule's factors and its loss became
NaN. The schedule is one formula per parameter group, written out in `fsgr.training.schedules` and docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from fsgr.errors import DataError
from fsgr.fields import UINT32_MAX, setting
from fsgr.metrics.score import parse_metrics


def metric_names(value: str) -> Optional[str]:
    """What is wrong with a comma-separated list of metrics (the names `fsgr.metrics.score` knows), or None."""
    try:
        parse_metrics(value)
    except DataError as exc:
        return str(exc)
    return None


@dataclass
class TrainConfig:
    seed: int = setting(42, ge=0, le=UINT32_MAX)
    batch_size: int = setting(50, ge=1)  # captions per optimiser step, over all processes and accumulation micro-steps
    grad_accum: int = setting(1, ge=1)  # micro-batches per optimiser step (each holds batch_size / grad_accum captions)
    max_epochs: int = setting(20, ge=1)  # XE epochs at most (the switch to SCST also happens at xe_most)
    # stop (and save last.pt) after this many optimiser steps in total, both phases
    max_steps: Optional[int] = setting(None, ge=0)
    log_every: int = setting(50, ge=1)  # optimiser steps between metrics.jsonl / TensorBoard rows
    log_batches: bool = False  # each step's image ids per process -> run.dir/batches/rank{R}.jsonl (data order)
    lr: float = setting(2e-4, ge=0.0)  # absolute peak LR of the captioning group (att_embed, encoder, decoder)
    # backbone group (prompts + adapters) peak LR = lr * backbone_lr_scale
    backbone_lr_scale: float = setting(0.1, ge=0.0)
    # epoch e < warmup: factor (e+1)/(warmup+1) (reference ORIGINAL, shifted by 1)
    lr_warmup_epochs: int = setting(3, ge=0)
    # epochs where the LR is multiplied by gamma
    lr_milestones: list[int] = setting(default_factory=lambda: [10, 12], ge=0)
    lr_gamma: float = setting(0.2, gt=0.0)
    adam_betas: list[float] = setting(default_factory=lambda: [0.9, 0.98], length=2, ge=0.0, lt=1.0)
    adam_eps: float = setting(1e-8, gt=0.0)
    contrastive_weight: float = setting(0.25, ge=0.0)
    contrastive_temperature: float = setting(0.07, gt=0.0)
    contrastive_base_temperature: float = setting(0.07, gt=0.0)
    # SupCon anchors per chunk (memory: chunk x N logits, recomputed in backward)
    contrastive_chunk: int = setting(4096, ge=1)
    grad_clip: Optional[float] = setting(None, gt=0.0)  # reference: none
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"   # auto: bf16 on GPUs that have it, else fp16; CPU fp32
    # XE -> SCST switch, as the reference: after each XE epoch, val CIDEr improves -> patience 0, else +1;
    # patience == patience_limit before xe_least epochs -> reset and stay; at/after xe_least, or at epoch xe_most,
    # reload the best-val checkpoint and switch. In SCST, patience == patience_limit stops training.
    patience: int = setting(5, ge=1)
    xe_least: int = setting(15, ge=0)
    xe_most: int = setting(20, ge=1)
    compile: bool = False
    find_unused_parameters: Optional[bool] = None  # DDP; None = auto: on when contrastive_weight == 0 (the
    #                                                 parts that only feed SupCon then get no gradient)
    # experiment trackers beside metrics.jsonl (always written): tensorboard, mlflow, wandb (extras fsgr[NAME]);
    # None = tensorboard where it is installed. Rank 0 logs; --resume continues the same tracker run
    loggers: Optional[list[Literal["jsonl", "tensorboard", "mlflow", "wandb"]]] = None
    tracking_uri: str = ""          # MLflow tracking URI; "" = MLflow's own ($MLFLOW_TRACKING_URI or its default)
    tracking_project: str = "fsgr"  # MLflow experiment / W&B project


@dataclass
class ScstConfig:
    enabled: bool = True
    mode: Literal["sample", "beam"] = "sample"   # sample = SacreEOS "standard"; beam = M2/FSGR recipe
    num_samples: int = setting(5, ge=1)  # sample mode: captions sampled per image (beam mode: the beam size)
    max_len: int = setting(20, ge=1)
    lr: float = setting(1e-5, ge=0.0)  # absolute LR of every trainable group in SCST (a fresh Adam at the switch)
    lr_milestones: list[int] = setting(default_factory=lambda: [10, 13, 16], ge=0)  # SCST epochs (from 0) x gamma
    lr_gamma: float = setting(0.2, gt=0.0)
    # images per SCST step, over all processes (any number: split as evenly as can be)
    batch_images: int = setting(10, ge=1)
    # CIDEr-D reward's document frequencies: "captions" = each training caption a document, ref_len = log(#captions)
    # (M2/RSTNet/FSGR code: Cider(PTBTokenizer.tokenize(train captions))); "images" = each image's references one
    # document, ref_len = log(#images) (pycocoevalcap's CiderScorer over the training set). docs/fidelity.md
    reward_documents: Literal["captions", "images"] = "captions"
    max_epochs: int = setting(30, ge=1)  # SCST epochs at most


@dataclass
class EvalConfig:
    beam_size: int = setting(5, ge=1)
    max_len: int = setting(20, ge=1)
    min_len: int = setting(0, ge=0)  # decoding controls (fsgr.models.decoding); the defaults change nothing
    length_penalty: float = setting(0.0, ge=-10.0, le=10.0)   # fsgr.models.decoding.LENGTH_PENALTY_RANGE
    no_repeat_ngram: int = setting(0, ge=0)
    batch_images: int = setting(50, ge=1)
    metrics: str = setting("bleu,meteor,rouge,cider", check=metric_names)  # the final test and `fsgr evaluate`
    # every validation (model selection: must hold cider); None = metrics. A Java metric that fails at validation is
    # reported unavailable, not fatal
    val_metrics: Optional[str] = setting(None, check=metric_names)
    # seconds one METEOR/SPICE run may take before it is killed (a hung JVM at validation then costs this, not the
    # jars' own 30/60 minutes)
    java_timeout: Optional[float] = setting(None, gt=0.0)
    val_loss: bool = True           # XE(+contrastive) loss on val captions, eval mode
    max_images: Optional[int] = setting(None, ge=1)  # evaluate only the first N images of the split (smoke tests)
    test_at_end: bool = True        # score the best-val checkpoint on test once training ends (never for selection)
