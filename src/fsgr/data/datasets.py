"""Records -> tensors: caption-level and image-level training datasets, the evaluation dataset, collate, loaders.

Captions are tokenised and encoded once (per run: `fsgr.data.encoded`, or here at construction) into flat numpy
arrays (cheap to share with forked workers, no per-item tokenizer). Token ids are checked on the CPU in
`collate_captions` (0 <= id < len(vocab), length <= max_len): the reference's out-of-range id became a CUDA
device-side assert at batch 1,135.
"""

from __future__ import annotations

import math
import os
import random
from typing import Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fsgr.data.batch import CaptionBatch, EvalBatch
from fsgr.data.images import load_image
from fsgr.data.records import ImageRecord
from fsgr.data.sampling import epoch_order
from fsgr.data.encoded import EncodedCaptions, TokenizedCaptions
from fsgr.data.vocab import Vocab
from fsgr.errors import DataError, FsgrError

PatchLabels = Union[None, Callable[[int], torch.Tensor], Mapping[int, torch.Tensor], str, os.PathLike]


def load_patch_labels(path: str | os.PathLike) -> dict[int, torch.Tensor]:
    """Offline per-patch concept labels: .npz with `image_ids` (N,) and `labels` (N, P) integer arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: patch label file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, labels = z["image_ids"], z["labels"]
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"{path}: expected an .npz with 'image_ids' (N,) and 'labels' (N, P) ({exc})") from None
    if ids.ndim != 1 or labels.ndim != 2 or labels.shape[0] != ids.shape[0]:
        raise DataError(f"{path}: image_ids {ids.shape} and labels {labels.shape} do not match (N,) / (N, P)")
    return {int(i): torch.from_numpy(labels[k].astype(np.int64)) for k, i in enumerate(ids.tolist())}


def _patch_label_lookup(patch_labels: PatchLabels) -> Optional[Callable[[int], torch.Tensor]]:
    if patch_labels is None:
        return None
    if isinstance(patch_labels, (str, os.PathLike)):
        patch_labels = load_patch_labels(patch_labels)
    if isinstance(patch_labels, Mapping):
        table = patch_labels

        def lookup(image_id: int) -> torch.Tensor:
            if image_id not in table:
                raise DataError(f"image {image_id}: no patch labels for it")
            return torch.as_tensor(table[image_id], dtype=torch.long)

        return lookup
    if callable(patch_labels):
        return patch_labels
    raise DataError(f"patch_labels must be a path, a mapping image_id -> labels or a callable, "
                    f"got {type(patch_labels).__name__}")


class CaptionDataset(Dataset):
    """Training captions. batching='caption': one item per caption (the reference); 'image': one item per image with
    all its captions (the backbone then runs once per image). `encoded`: the records' captions already encoded
    (`fsgr.data.encoded`, built once per run); None = tokenise and encode them here."""

    def __init__(self, records: Sequence[ImageRecord], vocab: Vocab, image_size: int = 224, resize: str = "squash",
                 max_len: int = 54, length_policy: str = "truncate", batching: str = "caption",
                 patch_labels: PatchLabels = None, draft: bool = True, encoded: Optional[EncodedCaptions] = None):
        if batching not in ("caption", "image"):
            raise DataError(f"batching must be 'caption' or 'image', got {batching!r}")
        if not records:
            raise DataError("no images to train on (empty split)")
        self.records = list(records)
        self.vocab_size = len(vocab)
        self.pad_id = vocab.pad_id
        self.image_size, self.resize, self.draft = image_size, resize, draft
        self.max_len, self.length_policy, self.batching = max_len, length_policy, batching
        self._patch_labels = _patch_label_lookup(patch_labels)

        for r in self.records:
            if not r.captions:
                raise DataError(f"image {r.image_id} ({r.path}): no captions")
        if encoded is None:
            encoded = TokenizedCaptions.tokenize(self.records).encode(vocab, max_len, length_policy, self.records)
        elif encoded.num_records != len(self.records):
            raise DataError(f"encoded captions of {encoded.num_records} images for {len(self.records)} records")
        self.flat_ids, self.offsets = encoded.flat_ids, encoded.offsets
        self.caption_image = encoded.caption_image          # caption -> record index
        self.record_first = encoded.record_first            # record -> its first caption

    @property
    def num_captions(self) -> int:
        return len(self.caption_image)

    def __len__(self) -> int:
        return self.num_captions if self.batching == "caption" else len(self.records)

    def tokens(self, caption: int) -> np.ndarray:
        return self.flat_ids[self.offsets[caption]:self.offsets[caption + 1]]

    def __getitem__(self, index: int) -> dict:
        if self.batching == "caption":
            ri = int(self.caption_image[index])
            caps = [index]
        else:
            ri = int(index)
            caps = range(int(self.record_first[ri]), int(self.record_first[ri + 1]))
        r = self.records[ri]
        item = {
            "image": load_image(r.path, self.image_size, self.resize, draft=self.draft),
            "tokens": [self.tokens(c) for c in caps],
            "image_id": r.image_id,
            "references": list(r.captions),
            "vocab_size": self.vocab_size,
            "max_len": self.max_len,
            "pad_id": self.pad_id,
        }
        if self._patch_labels is not None:
            item["patch_labels"] = self._patch_labels(r.image_id)
        return item


def collate_captions(items: Sequence[dict]) -> CaptionBatch:
    """Stack images, pad tokens, check every id ON THE CPU (0 <= id < vocab size, length <= max_len)."""
    if not items:
        raise DataError("empty batch")
    vocab_size, max_len, pad_id = items[0]["vocab_size"], items[0]["max_len"], items[0]["pad_id"]
    seqs, image_index = [], []
    for row, it in enumerate(items):
        for t in it["tokens"]:
            t = np.asarray(t)
            if len(t) > max_len:
                raise DataError(f"image {it['image_id']}: caption of {len(t)} tokens > max_len={max_len}")
            if len(t) and (int(t.min()) < 0 or int(t.max()) >= vocab_size):
                bad = int(t.max()) if int(t.max()) >= vocab_size else int(t.min())
                raise DataError(f"image {it['image_id']}: token id {bad} outside the vocabulary "
                                f"(0..{vocab_size - 1})")
            seqs.append(t)
            image_index.append(row)
    length = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, :len(s)] = torch.from_numpy(s.astype(np.int64))
    return CaptionBatch(
        images=torch.stack([it["image"] for it in items]),
        tokens=tokens,
        image_index=torch.as_tensor(image_index, dtype=torch.long),
        image_ids=[int(it["image_id"]) for it in items],
        references=[it["references"] for it in items],
        patch_labels=_stacked_patch_labels(items),
    )


def _stacked_patch_labels(items: Sequence[dict]) -> Optional[torch.Tensor]:
    """(B, P) long from the items' "patch_labels", or None when the dataset has none."""
    if "patch_labels" not in items[0]:
        return None
    return torch.stack([torch.as_tensor(it["patch_labels"], dtype=torch.long) for it in items])


class EvalDataset(Dataset):
    """One item per image with all its reference captions (evaluation, captioning a split)."""

    def __init__(self, records: Sequence[ImageRecord], image_size: int = 224, resize: str = "squash",
                 draft: bool = True, patch_labels: PatchLabels = None):
        self.records = list(records)
        self.image_size, self.resize, self.draft = image_size, resize, draft
        self._patch_labels = _patch_label_lookup(patch_labels)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        item = {"image": load_image(r.path, self.image_size, self.resize, draft=self.draft), "image_id": r.image_id,
                "references": list(r.captions), "path": r.path}
        if self._patch_labels is not None:
            item["patch_labels"] = self._patch_labels(r.image_id)
        return item


def collate_eval(items: Sequence[dict]) -> EvalBatch:
    if not items:
        raise DataError("empty batch")
    return EvalBatch(images=torch.stack([it["image"] for it in items]),
                     image_ids=[int(it["image_id"]) for it in items],
                     references=[it["references"] for it in items],
                     paths=[it["path"] for it in items],
                     patch_labels=_stacked_patch_labels(items))


# module-level functions (picklable for spawned workers), attached after their definitions
CaptionDataset.collate = staticmethod(collate_captions)
EvalDataset.collate = staticmethod(collate_eval)


# ---- sampling and loaders ---------------------------------------------------------------------------------------------


class ResumableSampler(Sampler[int]):
    """A DistributedSampler that can start mid-epoch: the order is a function of (seed, epoch) only, each rank takes
    every world_size-th index, and `set_epoch(epoch, start_index=k)` skips the first k indices of this rank (k =
    batches_done * batch_size), so a resumed run sees exactly the batches it had not seen yet."""

    def __init__(self, num_items: int, shuffle: bool = True, seed: int = 0, rank: Optional[int] = None,
                 world_size: Optional[int] = None, drop_last: bool = False):
        if rank is None or world_size is None:
            dist = torch.distributed
            on = dist.is_available() and dist.is_initialized()
            rank = rank if rank is not None else (dist.get_rank() if on else 0)
            world_size = world_size if world_size is not None else (dist.get_world_size() if on else 1)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.num_items, self.shuffle, self.seed = num_items, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        if drop_last:
            self.per_rank = num_items // world_size
        else:
            self.per_rank = math.ceil(num_items / world_size)
        self.epoch = 0
        self.start_index = 0

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        if not 0 <= start_index <= self.per_rank:
            raise ValueError(f"start_index {start_index} outside 0..{self.per_rank}")
        self.epoch, self.start_index = int(epoch), int(start_index)

    def order(self) -> list[int]:
        """This rank's full order for the current epoch (before skipping)."""
        idx = epoch_order(self.num_items, self.seed, self.epoch, self.shuffle)
        total = self.per_rank * self.world_size
        if total > len(idx):  # pad by repeating from the start, as DistributedSampler does
            idx += (idx * math.ceil(total / max(len(idx), 1)))[:total - len(idx)]
        idx = idx[:total]
        return idx[self.rank:total:self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start_index:])

    def __len__(self) -> int:
        return self.per_rank - self.start_index


class Loader(DataLoader):
    """DataLoader whose worker errors come back as one line: a DataError raised in a worker is re-raised here with
    the original message only (PyTorch wraps it with the worker's whole traceback)."""

    def __iter__(self):
        it = super().__iter__()
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except FsgrError as exc:
                text = str(exc)
                marker = f"{type(exc).__name__}: "
                if "DataLoader worker" in text and marker in text:
                    raise type(exc)(text.rsplit(marker, 1)[1].strip()) from None
                raise
            yield batch


def _seed_worker(worker_id: int) -> None:
    # Each worker's torch seed is base_seed + worker_id (set by DataLoader from the generator); derive the others.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, sampler: Optional[Sampler] = None,
                workers: int = 0, pin_memory: bool = False, persistent_workers: bool = False,
                drop_last: bool = False, seed: int = 0, generator: Optional[torch.Generator] = None,
                start_batch: int = 0, epoch: int = 0, prefetch_factor: int = 4,
                collate_fn: Optional[Callable] = None, rank: Optional[int] = None,
                world_size: Optional[int] = None, batch_sampler: Optional[Sampler] = None) -> Loader:
    """A DataLoader that scales (workers, pinned memory, persistent workers, prefetch) and is deterministic given
    `seed`. Without a sampler, a `ResumableSampler(shuffle, seed)` is used (rank/world from torch.distributed when
    initialised, or `rank`/`world_size`; ranks are padded to equal length like DistributedSampler, so a sharded
    evaluation should drop repeated image ids, or pass rank=0, world_size=1); `start_batch` skips the first batches of `epoch` (resume mid-epoch). Later epochs:
    `loader.sampler.set_epoch(e)` before iterating."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if sampler is None and batch_sampler is None:
        sampler = ResumableSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                                   drop_last=False)
    if batch_sampler is None and (start_batch or epoch):
        if not hasattr(sampler, "set_epoch"):
            raise ValueError("start_batch/epoch need a sampler with set_epoch")
        if isinstance(sampler, ResumableSampler):
            sampler.set_epoch(epoch, start_index=start_batch * batch_size)
        elif start_batch:
            raise ValueError("start_batch needs a ResumableSampler")
        else:
            sampler.set_epoch(epoch)
    if collate_fn is None:
        collate_fn = getattr(dataset, "collate", None)
        if collate_fn is None:
            raise ValueError(f"{type(dataset).__name__} has no collate: pass collate_fn")
    if generator is None:
        generator = torch.Generator()
        generator.manual_seed(seed)
    workers = max(0, int(workers))
    kwargs = {}
    if workers > 0:
        kwargs.update(persistent_workers=persistent_workers, prefetch_factor=prefetch_factor,
                      worker_init_fn=_seed_worker)
    if batch_sampler is not None:   # it decides the batches (fsgr.data.sampling.GlobalBatchSampler)
        kwargs["batch_sampler"] = batch_sampler
    else:
        kwargs.update(batch_size=batch_size, sampler=sampler, drop_last=drop_last)
    return Loader(dataset, num_workers=workers, collate_fn=collate_fn,
                  pin_memory=bool(pin_memory and torch.cuda.is_available()), generator=generator, **kwargs)
