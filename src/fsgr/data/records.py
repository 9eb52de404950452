"""The one record type every annotation reader produces (files -> records)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class ImageRecord:
    image_id: int
    path: str                          # absolute path of the image file
    split: Split
    captions: tuple[str, ...]          # raw human captions, as in the annotation file
    annotation_ids: tuple[int, ...]    # one per caption (synthetic data: running numbers)
