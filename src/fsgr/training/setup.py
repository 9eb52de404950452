"""Config -> the data a run needs: records per split and the vocabulary, the training loaders.

Kept apart from the loop so that the demo reads data exactly as training does. The model comes from
`fsgr.core.build`, which serving shares.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from fsgr.data.datasets import CaptionDataset, make_loader
from fsgr.data.datasets import load_patch_labels as read_patch_labels  # this module's load_patch_labels takes a config
from fsgr.data.readers import read_records
from fsgr.data.text import tokenize_captions
from fsgr.data.vocab import Vocab
from fsgr.errors import ConfigError, DataError


@dataclass
class DataBundle:
    records: dict[str, list] = field(default_factory=dict)   # split -> [ImageRecord]
    vocab: Any = None
    patch_labels: Optional[dict] = None

    def split(self, name: str) -> list:
        return self.records.get(name, [])

    @property
    def train_refs(self) -> dict[int, list[str]]:
        return {int(r.image_id): list(r.captions) for r in self.split("train")}


def build_vocab(cfg, records_by_split: dict[str, list]):
    if cfg.data.vocab:
        return Vocab.load(cfg.data.vocab)
    captions = [c for s in cfg.data.vocab_splits for r in records_by_split.get(s, []) for c in r.captions]
    if not captions:
        raise DataError(f"cannot build a vocabulary: no captions in splits {cfg.data.vocab_splits}")
    return Vocab.build(tokenize_captions(captions), min_freq=cfg.data.min_freq)


def build_data(cfg) -> DataBundle:
    records = read_records(cfg.data)
    by_split: dict[str, list] = {"train": [], "val": [], "test": []}
    for r in records:
        by_split.setdefault(r.split, []).append(r)
    if not by_split["train"]:
        raise DataError(f"{cfg.data.annotations or cfg.data.format}: no training images")
    if not by_split["val"]:
        raise DataError(f"{cfg.data.annotations or cfg.data.format}: no validation images (model selection needs "
                        f"the val split)")
    return DataBundle(records=by_split, vocab=build_vocab(cfg, by_split), patch_labels=load_patch_labels(cfg))


def load_patch_labels(cfg) -> Optional[dict]:
    if not cfg.data.patch_labels:
        return None
    return read_patch_labels(cfg.data.patch_labels)


def per_process_batch(cfg, world_size: int, scst: bool) -> int:
    if scst:
        return cfg.scst.batch_images // world_size
    return cfg.train.batch_size // (world_size * cfg.train.grad_accum)


def train_loader(cfg, data: DataBundle, dist, epoch: int, start_step: int, scst: bool,
                 generator: torch.Generator):
    """The training loader of one epoch for this process, positioned after `start_step` optimiser steps.

    The order depends only on (train.seed, epoch): the sampler shuffles with its own seeded generator and skips the
    batches already consumed, so a resumed epoch sees exactly the batches the interrupted one had left."""
    micro = 1 if scst else cfg.train.grad_accum
    batching = "image" if scst else cfg.data.batching
    ds = CaptionDataset(data.split("train"), data.vocab, image_size=cfg.data.image_size, resize=cfg.data.resize,
                        max_len=cfg.data.max_len, length_policy=cfg.data.length_policy, batching=batching,
                        patch_labels=data.patch_labels, draft=cfg.data.jpeg_draft)
    batch = per_process_batch(cfg, dist.world_size, scst)
    if batching == "image" and not scst:   # train.batch_size counts captions: images = captions / captions-per-image
        batch = max(1, round(batch / captions_per_image(data.split("train"))))
    if batch <= 0:
        raise ConfigError("the per-process batch is empty: raise train.batch_size / scst.batch_images")
    return make_loader(ds, batch_size=batch, shuffle=True, seed=cfg.train.seed, epoch=epoch,
                       start_batch=start_step * micro, drop_last=True, workers=cfg.data.workers,
                       pin_memory=cfg.data.pin_memory, persistent_workers=cfg.data.persistent_workers,
                       prefetch_factor=cfg.data.prefetch_factor, generator=generator,
                       rank=dist.rank, world_size=dist.world_size)


def captions_per_image(records) -> float:
    """Median number of captions per training image (COCO: 5; a few images have 6 or 7)."""
    return float(statistics.median(len(r.captions) for r in records))


def steps_per_epoch(loader, cfg, scst: bool) -> int:
    """Optimiser steps in a whole epoch (not only what is left after a mid-epoch start)."""
    micro = 1 if scst else cfg.train.grad_accum
    return (loader.sampler.per_rank // loader.batch_size) // micro
