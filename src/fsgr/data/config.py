"""Data configuration (owned by `fsgr.data`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Literal, Optional

from fsgr.fields import UINT32_MAX, setting

SYNTHETIC_LABELS = "synthetic"   # data.patch_labels: the synthetic world's own concept maps


@dataclass
class SyntheticConfig:
    """The embedded "shapes" dataset (used when data.format == 'synthetic')."""

    root: str = "runs/shapes"          # where images and annotations are generated (once; reused if complete)
    num_train: int = setting(4000, ge=1)
    num_val: int = setting(500, ge=1)
    num_test: int = setting(1000, ge=0)
    image_size: int = setting(96, ge=8)
    seed: int = setting(0, ge=0, le=UINT32_MAX)
    max_objects: int = setting(3, ge=1)  # 1..max_objects shapes per image
    captions_per_image: int = setting(5, ge=1)
    small_size: float = setting(0.11, gt=0.0, lt=0.5)  # shape radius as a fraction of the image side ("small")
    large_size: float = setting(0.21, gt=0.0, lt=0.5)  # ... ("large")
    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = setting(92, ge=1, le=100)
    # "shapes": every concept frequent; "longtail": head concepts frequent, tail concepts in exactly k training images
    # (k in 1, 3, 10), novel colour-shape pairs in none; test = iid / tail / novel thirds (fsgr.data.synthetic)
    world: Literal["shapes", "longtail"] = "shapes"


@dataclass
class DataConfig:
    format: Literal["m2", "karpathy", "coco", "synthetic"] = "m2"
    annotations: str = ""               # M2 folder, Karpathy json, or COCO captions json(s), comma-separated
    images: str = ""                    # image root (COCO: holds train2014/ and val2014/)
    splits: str = ""                    # COCO json format only: JSON {split: [image ids]} or a Karpathy json
    vocab: Optional[str] = None         # vocab JSON (or M2 vocab.pkl); None = build from training captions
    vocab_splits: list[str] = field(default_factory=lambda: ["train"])  # M2/reference built it from train+val
    min_freq: int = setting(5, ge=1)
    max_len: int = setting(54, ge=3)  # tokens including <bos>/<eos>
    length_policy: Literal["truncate", "refuse"] = "truncate"
    batching: Literal["caption", "image"] = "image"   # caption = reference (one sample per caption)
    image_size: int = setting(224, ge=1)
    resize: Literal["squash", "clip"] = "squash"      # squash = reference 224x224 bicubic; clip = resize+crop
    jpeg_draft: bool = True             # decode JPEGs at a reduced DCT scale when downscaling (>= 2x faster)
    full_coco: Literal["auto", "require", "off"] = "auto"  # check 113,287/5,000/5,000 when the file is full COCO
    workers: int = setting(4, ge=0)
    pin_memory: bool = True
    persistent_workers: bool = True
    prefetch_factor: int = setting(4, ge=1)  # batches prefetched per worker
    cache_dir: Optional[str] = "auto"  # tokenised captions cached across runs; auto = $FSGR_CACHE_DIR, else
    #                                    $XDG_CACHE_HOME/fsgr or ~/.cache/fsgr; null = tokenise every run (once)
    # per-patch concept labels (optional): an .npz {image_ids, labels} (offline labels), or `synthetic` = the synthetic
    # world's own concept maps at the model's patch grid (its generator's truth: the ablation's oracle)
    patch_labels: Optional[str] = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


def resolved(data: DataConfig, base_dir: str) -> DataConfig:
    """`data` with its relative paths (annotations, images, splits, vocab, patch_labels, synthetic.root) made
    absolute against `base_dir` (empty: unchanged, i.e. relative to the working directory)."""
    if not base_dir:
        return data

    def absolute(path: Optional[str]) -> Optional[str]:
        return os.path.join(base_dir, path) if path and not os.path.isabs(path) else path

    splits = data.splits if data.splits in ("", "train", "val", "test") else absolute(data.splits)
    annotations = ",".join(absolute(p.strip()) for p in data.annotations.split(",") if p.strip())
    return replace(data, annotations=annotations, images=absolute(data.images), splits=splits,
                   vocab=absolute(data.vocab),
                   patch_labels=data.patch_labels if data.patch_labels == SYNTHETIC_LABELS else absolute(data.patch_labels),
                   synthetic=replace(data.synthetic, root=absolute(data.synthetic.root)))
