"""CLIPScore and RefCLIPScore (Hessel et al. 2021) as the reference implementation (jmhessel/clipscore) computes
them, with any OpenAI-format CLIP (the paper's standard is ViT-B/32):

- images: Resize(short side to the CLIP's resolution, bicubic), CenterCrop, RGB, CLIP normalisation
  (`fsgr.data.images.load_image(resize="clip", draft=False)`);
- texts: "A photo depicts " + caption, OpenAI BPE, truncated to the context (`truncate=True`);
- CLIPScore = w * max(cos(image, candidate), 0), w = 2.5; RefCLIPScore = harmonic mean of CLIPScore and the
  largest cosine between the candidate and its references (references also carry the prefix; that cosine is
  neither scaled by w nor clipped, as in the reference code). Corpus scores are means over images.

Features are L2-normalised in float64 (the reference normalises numpy float32 features with sklearn); the towers run
in float32 (the reference runs fp16 on a GPU).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from fsgr.data.images import load_image
from fsgr.errors import DataError, format_ids
from fsgr.models.clip import load_clip
from fsgr.models.tokenizer import tokenize

PREFIX = "A photo depicts"
W = 2.5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tiff", ".bmp", ".webp")


def image_index(folder: str | os.PathLike, file_names: Mapping[Hashable, str] | None = None) -> dict:
    """Image files of `folder` by the keys an image id may take: the file's stem, the number after the last "_"
    (COCO_val2014_000000391895.jpg -> 391895) and, when the references list them, their file names."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{folder}: no such image folder")
    index: dict = {}
    for path in sorted(root.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        index.setdefault(path.stem, path)
        tail = path.stem.rsplit("_", 1)[-1]
        if tail.isdigit():
            index.setdefault(int(tail), path)
            index.setdefault(tail, path)
    for image_id, name in (file_names or {}).items():
        if (root / name).is_file():
            index[image_id] = root / name
    return index


class ClipScorer:
    """Image and text features of one CLIP (cached per image id and per text), and the two scores."""

    def __init__(self, clip_path: str | os.PathLike, images: str | os.PathLike,
                 file_names: Mapping[Hashable, str] | None = None, device: str | None = None,
                 batch_size: int = 64, w: float = W, prefix: str = PREFIX) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_clip(clip_path).to(self.device).eval()
        self.resolution = self.model.visual.input_resolution
        self.images_dir = images
        self.index = image_index(images, file_names)
        self.batch_size, self.w = batch_size, w
        self.prefix = prefix if prefix.endswith(" ") else prefix + " "
        self._image_cache: dict = {}
        self._text_cache: dict[str, np.ndarray] = {}

    def image_paths(self, image_ids: Sequence[Hashable]) -> list[Path]:
        missing = [i for i in image_ids if i not in self.index and str(i) not in self.index]
        if missing:
            raise DataError(f"{self.images_dir}: no image file for image ids {format_ids(missing)}")
        return [self.index[i] if i in self.index else self.index[str(i)] for i in image_ids]

    @torch.no_grad()
    def image_features(self, image_ids: Sequence[Hashable]) -> np.ndarray:
        """[I, D] L2-normalised image embeddings."""
        todo = [i for i in dict.fromkeys(image_ids) if i not in self._image_cache]
        paths = self.image_paths(todo)
        for lo in range(0, len(todo), self.batch_size):
            batch = torch.stack([load_image(p, self.resolution, resize="clip", draft=False)
                                 for p in paths[lo:lo + self.batch_size]])
            feats = self.model.encode_image(batch.to(self.device)).float().cpu().numpy()
            for i, f in zip(todo[lo:lo + self.batch_size], feats):
                self._image_cache[i] = f
        return _normalize(np.stack([self._image_cache[i] for i in image_ids]))

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """[T, D] L2-normalised embeddings of prefix + text."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        context = self.model.context_length
        for lo in range(0, len(todo), 256):
            chunk = todo[lo:lo + 256]
            tokens = tokenize([self.prefix + t for t in chunk], context_length=context, truncate=True)
            feats = self.model.encode_text(tokens.to(self.device)).float().cpu().numpy()
            for t, f in zip(chunk, feats):
                self._text_cache[t] = f
        if not texts:
            return np.zeros((0, self.model.embed_dim))
        return _normalize(np.stack([self._text_cache[t] for t in texts]))

    def clipscore(self, image_ids: Sequence[Hashable], captions: Sequence[str]) -> np.ndarray:
        """[I] w * max(cos(image, caption), 0)."""
        sims = np.sum(self.image_features(image_ids) * self.text_features(captions), axis=1)
        return self.w * np.clip(sims, 0, None)

    def refclipscore(self, image_ids: Sequence[Hashable], captions: Sequence[str],
                     refs: Sequence[Sequence[str]]) -> np.ndarray:
        """[I] harmonic mean of CLIPScore and the best candidate-reference cosine."""
        image_text = self.clipscore(image_ids, captions)
        cand = self.text_features(captions)
        flat = [r for rs in refs for r in rs]
        ref_feats = self.text_features(flat)
        owner = np.repeat(np.arange(len(refs)), [len(rs) for rs in refs])
        sims = np.sum(cand[owner] * ref_feats, axis=1)
        text_text = np.full(len(refs), -np.inf)
        np.maximum.at(text_text, owner, sims)
        total = image_text + text_text
        return np.divide(2 * image_text * text_text, total, out=np.zeros_like(total), where=total != 0)


def _normalize(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
