"""Typed batches (records -> tensors). Never positional tuples: the reference's evaluation unpacked two fields of a
3-tuple and crashed."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

import torch


def _move(batch, device, non_blocking: bool):
    changes = {}
    for f in fields(batch):
        value = getattr(batch, f.name)
        if isinstance(value, torch.Tensor):
            changes[f.name] = value.to(device, non_blocking=non_blocking)
    return replace(batch, **changes)


def _pin(batch):
    # DataLoader(pin_memory=True) calls .pin_memory() on objects that have it
    changes = {f.name: getattr(batch, f.name).pin_memory() for f in fields(batch)
               if isinstance(getattr(batch, f.name), torch.Tensor)}
    return replace(batch, **changes)


@dataclass
class CaptionBatch:
    """Training batch. Caption-level batching: one image row per caption (image_index = arange(N)).
    Image-level batching: each image once, with all its captions (the backbone runs once per image)."""

    images: torch.Tensor                  # (B_img, 3, H, W) float, CLIP-normalised
    tokens: torch.Tensor                  # (N, L) long: <bos> w1 .. wk <eos> <pad>...; ids checked on CPU in collate
    image_index: torch.Tensor             # (N,) long: row of `images` for each caption
    image_ids: list[int]                  # (B_img,) dataset image ids, for error messages and logs
    references: list[list[str]]           # (B_img,) raw reference captions of each image (SCST reward, eval)
    patch_labels: Optional[torch.Tensor] = None   # (B_img, P) long: offline per-patch concept labels, if any

    def to(self, device, non_blocking: bool = False) -> "CaptionBatch":
        return _move(self, device, non_blocking)

    def pin_memory(self) -> "CaptionBatch":
        return _pin(self)

    @property
    def num_captions(self) -> int:
        return int(self.tokens.shape[0])


@dataclass
class EvalBatch:
    """Evaluation batch: one row per image, with all its references."""

    images: torch.Tensor                  # (B, 3, H, W)
    image_ids: list[int]
    references: list[list[str]]
    paths: list[str]
    patch_labels: Optional[torch.Tensor] = None   # (B, P) long: per-patch concepts (data.patch_labels), if any

    def to(self, device, non_blocking: bool = False) -> "EvalBatch":
        return _move(self, device, non_blocking)

    def pin_memory(self) -> "EvalBatch":
        return _pin(self)
