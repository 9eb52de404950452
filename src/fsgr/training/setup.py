"""Config -> the data a run needs: records per split and the vocabulary, the training loaders.

Kept apart from the loop so that the demo reads data exactly as training does. The model comes from
`fsgr.core.build`, which serving shares.
"""

from __future__ import annotations

import os
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from fsgr.config import Config, from_dict, to_dict
from fsgr.data.datasets import CaptionDataset, make_loader
from fsgr.data.datasets import load_patch_labels as read_patch_labels  # this module's load_patch_labels takes a config
from fsgr.data.encoded import TokenizedCaptions, resolve_cache_dir
from fsgr.data.readers import read_records
from fsgr.data.sampling import GlobalBatchSampler
from fsgr.data.config import SYNTHETIC_LABELS
from fsgr.data.synthetic import PatchLabels, generate
from fsgr.data.vocab import Vocab
from fsgr.errors import ConfigError, DataError


@dataclass
class DataBundle:
    """Records per split, the vocabulary, and each split's captions tokenised once per run (`words`, from the disk
    cache when the same annotations were seen before); `encoded(split)` encodes a split once, on first use."""
    records: dict[str, list] = field(default_factory=dict)   # split -> [ImageRecord]
    vocab: Any = None
    patch_labels: Any = None        # data.patch_labels: {image_id: labels} or a callable image_id -> labels
    words: dict[str, Any] = field(default_factory=dict)      # split -> fsgr.data.encoded.TokenizedCaptions
    max_len: int = 54
    length_policy: str = "truncate"
    _encoded: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list:
        return self.records.get(name, [])

    def encoded(self, name: str):
        """fsgr.data.encoded.EncodedCaptions of a split (built on first use, then kept for the run)."""
        if name not in self._encoded:
            self._encoded[name] = self.words[name].encode(self.vocab, self.max_len, self.length_policy,
                                                          self.split(name))
        return self._encoded[name]

    @property
    def train_refs(self) -> dict[int, list[str]]:
        return {int(r.image_id): list(r.captions) for r in self.split("train")}


def build_vocab(cfg, words_by_split: dict[str, Any]):
    if cfg.data.vocab:
        return Vocab.load(cfg.data.vocab)
    counts: dict[str, int] = {}
    for s in cfg.data.vocab_splits:
        if s in words_by_split:
            for w, c in words_by_split[s].word_counts().items():
                counts[w] = counts.get(w, 0) + c
    if not counts:
        raise DataError(f"cannot build a vocabulary: no captions in splits {cfg.data.vocab_splits}")
    return Vocab.from_counts(counts, min_freq=cfg.data.min_freq)


def unstarted_run(run_dir: Path, artefacts: tuple[str, ...]) -> list[str]:
    """The artefacts (names in `artefacts`) of an fsgr run in `run_dir` that stopped before its first checkpoint (its
    config.yaml is a whole config as fsgr writes it and no *.pt is under checkpoints/): what starting it again
    replaces. [] when `run_dir` holds no such run (nothing, a run with a checkpoint, or files fsgr did not write)."""
    try:
        raw = yaml.safe_load((run_dir / "config.yaml").read_text())
        written_by_fsgr = raw == to_dict(from_dict(Config, raw)) and bool(raw["run"]["base_dir"])   # every key
    except (ConfigError, OSError, yaml.YAMLError, TypeError, KeyError):
        return []
    if not written_by_fsgr:
        return []
    if any((run_dir / "checkpoints").glob("*.pt")):
        return []
    return [name for name in artefacts if (run_dir / name).exists()]


def remove_unstarted_run(run_dir: Path, artefacts: tuple[str, ...]) -> list[str]:
    """Remove what `unstarted_run` names; the names removed."""
    names = unstarted_run(run_dir, artefacts)
    for name in names:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return names


def check_data_paths(data) -> None:
    """Every file or folder the data config names exists, before anything is read or generated (a synthetic
    dataset's own files are made by `build_data`)."""
    named = [("vocab", data.vocab)]
    if data.patch_labels != SYNTHETIC_LABELS:
        named.append(("patch_labels", data.patch_labels))
    if data.format != "synthetic":
        named += [("annotations", p.strip()) for p in data.annotations.split(",") if p.strip()]
        named += [("images", data.images)]
        if data.format == "coco" and data.splits not in ("", "train", "val", "test"):
            named += [("splits", data.splits)]
    for key, path in named:
        if path and not os.path.exists(path):
            raise ConfigError(f"data.{key}={path}: no such file or folder")


def check_batches_fit(cfg, data: "DataBundle") -> None:
    """One global batch of XE (and of SCST, if enabled) fits in the training split: refused before the run starts,
    not at its first epoch."""
    train = data.split("train")
    xe_items = len(train) if cfg.data.batching == "image" else sum(len(r.captions) for r in train)
    what = "images" if cfg.data.batching == "image" else "captions"
    if global_batch(cfg, data, scst=False) > xe_items:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size}: more than the training split holds "
                          f"({xe_items} {what}; one optimiser step needs {global_batch(cfg, data, scst=False)})")
    if cfg.scst.enabled and cfg.scst.batch_images > len(train):
        raise ConfigError(f"scst.batch_images={cfg.scst.batch_images}: more than the training split's {len(train)} "
                          f"images")


def build_data(cfg) -> DataBundle:
    check_data_paths(cfg.data)
    if cfg.data.format == "synthetic":    # training is where the synthetic dataset is made (once; reused if complete)
        generate(cfg.data.synthetic)
    records = read_records(cfg.data)
    by_split: dict[str, list] = {"train": [], "val": [], "test": []}
    for r in records:
        by_split.setdefault(r.split, []).append(r)
    if not by_split["train"]:
        raise DataError(f"{cfg.data.annotations or cfg.data.format}: no training images")
    if not by_split["val"]:
        raise DataError(f"{cfg.data.annotations or cfg.data.format}: no validation images (model selection needs "
                        f"the val split)")
    cache = resolve_cache_dir(cfg.data.cache_dir)
    words = {s: TokenizedCaptions.of(recs, cache) for s, recs in by_split.items() if recs}
    data = DataBundle(records=by_split, vocab=build_vocab(cfg, words), patch_labels=load_patch_labels(cfg),
                      words=words, max_len=cfg.data.max_len, length_policy=cfg.data.length_policy)
    check_batches_fit(cfg, data)
    return data


def load_patch_labels(cfg):
    """data.patch_labels: None, an .npz's {image_id: (P,) labels}, or (`synthetic`) the synthetic world's own concept
    maps at the backbone's patch grid, read per image (`fsgr.data.synthetic.PatchLabels`)."""
    if not cfg.data.patch_labels:
        return None
    if cfg.data.patch_labels != SYNTHETIC_LABELS:
        return read_patch_labels(cfg.data.patch_labels)
    if cfg.data.format != "synthetic":
        raise ConfigError(f"data.patch_labels={SYNTHETIC_LABELS} needs data.format=synthetic (the generator's concept "
                          f"maps), not {cfg.data.format!r}")
    return PatchLabels(cfg.data.synthetic.root, cfg.data.image_size // cfg.model.clip.vision_patch_size,
                       textures=True)


def global_batch(cfg, data: DataBundle, scst: bool) -> int:
    """Items per optimiser step over all processes: SCST images; XE captions (caption batching) or images
    (image batching: train.batch_size counts captions, images = captions / captions-per-image)."""
    if scst:
        return cfg.scst.batch_images
    if cfg.data.batching == "image":
        return max(1, round(cfg.train.batch_size / captions_per_image(data.split("train"))))
    return cfg.train.batch_size


def train_loader(cfg, data: DataBundle, dist, epoch: int, start_step: int, scst: bool,
                 generator: torch.Generator):
    """The training loader of one epoch for this process, positioned after `start_step` optimiser steps.

    The order depends only on (train.seed, epoch); every global batch is split over the processes (and the
    accumulation micro-steps) as evenly as possible, whatever its size (`fsgr.data.sampling`)."""
    micro = 1 if scst else cfg.train.grad_accum
    batching = "image" if scst else cfg.data.batching
    ds = CaptionDataset(data.split("train"), data.vocab, image_size=cfg.data.image_size, resize=cfg.data.resize,
                        max_len=cfg.data.max_len, length_policy=cfg.data.length_policy, batching=batching,
                        patch_labels=data.patch_labels, encoded=data.encoded("train"), draft=cfg.data.jpeg_draft)
    what = "scst.batch_images" if scst else "train.batch_size"
    sampler = GlobalBatchSampler(len(ds), global_batch(cfg, data, scst), micro_steps=micro, rank=dist.rank,
                                 world_size=dist.world_size, seed=cfg.train.seed, epoch=epoch,
                                 start_step=start_step, what=what)
    return make_loader(ds, batch_size=1, batch_sampler=sampler, workers=cfg.data.workers,
                       pin_memory=cfg.data.pin_memory, persistent_workers=cfg.data.persistent_workers,
                       prefetch_factor=cfg.data.prefetch_factor, generator=generator)


def captions_per_image(records) -> float:
    """Median number of captions per training image (COCO: 5; a few images have 6 or 7)."""
    return float(statistics.median(len(r.captions) for r in records))


def steps_per_epoch(loader) -> int:
    """Optimiser steps in a whole epoch (not only what is left after a mid-epoch start); refuses an epoch of none."""
    sampler = loader.batch_sampler
    if sampler.steps_per_epoch <= 0:
        raise ConfigError(f"the training split ({sampler.num_items} items) is smaller than one global batch "
                          f"({sampler.global_batch})")
    return sampler.steps_per_epoch
