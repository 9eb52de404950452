"""Training, SCST and evaluation configuration (owned by `fsgr.training`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass
class TrainConfig:
    seed: int = 42
    batch_size: int = 50            # captions per optimiser step (image-level batching: images x captions_per_image)
    grad_accum: int = 1
    max_epochs: int = 20
    max_steps: Optional[int] = None  # stop after this many optimiser steps in total (both phases)
    log_every: int = 50
    lr: float = 2e-4                 # absolute peak LR of the captioning group
    backbone_lr_scale: float = 0.1   # prompts + adapters group
    contrastive_weight: float = 0.25
    contrastive_temperature: float = 0.07
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    patience: int = 5
    xe_least: int = 15
    xe_most: int = 20
    compile: bool = False


@dataclass
class ScstConfig:
    enabled: bool = True
    mode: Literal["sample", "beam"] = "sample"   # sample = SacreEOS "standard"; beam = M2/FSGR recipe
    num_samples: int = 5
    max_len: int = 20
    lr: float = 1e-5
    batch_images: int = 10
    max_epochs: int = 30


@dataclass
class EvalConfig:
    beam_size: int = 5
    max_len: int = 20
    batch_images: int = 50
    metrics: str = "bleu,meteor,rouge,cider"
