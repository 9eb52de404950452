"""Data configuration (owned by `fsgr.data`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class SyntheticConfig:
    """The embedded "shapes" dataset (used when data.format == 'synthetic')."""

    root: str = "runs/shapes"          # where images and annotations are generated (once; reused if complete)
    num_train: int = 4000
    num_val: int = 500
    num_test: int = 1000
    image_size: int = 96
    seed: int = 0


@dataclass
class DataConfig:
    format: Literal["m2", "karpathy", "coco", "synthetic"] = "m2"
    annotations: str = ""               # M2 folder, Karpathy json, or COCO captions json
    images: str = ""                    # image root (COCO: holds train2014/ and val2014/)
    splits: str = ""                    # COCO json format only: file with split lists
    vocab: Optional[str] = None         # vocab JSON (or M2 vocab.pkl); None = build from training captions
    min_freq: int = 5
    max_len: int = 54                   # tokens including <bos>/<eos>
    length_policy: Literal["truncate", "refuse"] = "truncate"
    batching: Literal["caption", "image"] = "image"   # caption = reference (one sample per caption)
    image_size: int = 224
    resize: Literal["squash", "clip"] = "squash"      # squash = reference 224x224 bicubic (B25); clip = resize+crop
    workers: int = 4
    pin_memory: bool = True
    persistent_workers: bool = True
    patch_labels: Optional[str] = None  # offline per-patch concept labels (optional)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
