"""Captions tokenised once per run (and cached on disk across runs), then encoded once per run.

    words = TokenizedCaptions.of(records, cache_dir)          # PTB words of every caption, record order
    vocab = Vocab.from_counts(words.word_counts(), min_freq)   # or a given vocabulary
    encoded = words.encode(vocab, max_len, length_policy, records)   # flat id arrays for CaptionDataset

The pure-Python PTB tokenizer takes minutes over COCO's 566,747 training captions; a run does it at most once, and a
second run (or `--resume`) on the same annotations loads the words from `cache_dir/captions-<key>.npz`, where the key
is the sha256 of every caption (image id, annotation id, text) and of the tokenizer's source files, so another
annotation file or another tokenizer never reuses a stale entry. Words are stored as indices into a table of the
distinct words, so encoding with a vocabulary is one table lookup plus array arithmetic.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fsgr.data import text
from fsgr.errors import DataError
from fsgr.metrics import tokenizer
from fsgr.files import atomic_write

CACHE_FORMAT = "fsgr-captions-1"


def default_cache_dir() -> Path:
    """$FSGR_CACHE_DIR, else $XDG_CACHE_HOME/fsgr, else ~/.cache/fsgr."""
    if os.environ.get("FSGR_CACHE_DIR"):
        return Path(os.environ["FSGR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fsgr"


def resolve_cache_dir(setting: Optional[str]) -> Optional[Path]:
    """data.cache_dir: "auto" = default_cache_dir(), null/"" = no disk cache, else that folder."""
    if setting in (None, "", "none", "off"):
        return None
    return default_cache_dir() if setting == "auto" else Path(os.path.expanduser(setting))


def _tokenizer_fingerprint() -> bytes:
    """The source of everything that decides a caption's words (tokenizer + punctuation filter)."""
    h = hashlib.sha256(CACHE_FORMAT.encode())
    for module in (tokenizer, text):
        h.update(Path(module.__file__).read_bytes())
    return h.digest()


def captions_key(records: Sequence) -> str:
    h = hashlib.sha256(_tokenizer_fingerprint())
    for r in records:
        h.update(f"\x00{r.image_id}\x01".encode())
        for aid, caption in zip(r.annotation_ids, r.captions):
            h.update(f"{aid}\x02{caption}\x03".encode())
    return h.hexdigest()[:32]


@dataclass
class TokenizedCaptions:
    """Words of every caption of `records` (record order, then caption order): caption c's words are
    table[word_index[offsets[c]:offsets[c + 1]]]."""

    table: list[str]              # distinct words
    word_index: np.ndarray        # (total words,) int32 indices into table
    offsets: np.ndarray           # (captions + 1,) int64
    captions_per_record: np.ndarray   # (records,) int64
    from_cache: bool = False

    @classmethod
    def of(cls, records: Sequence, cache_dir: Optional[Path] = None) -> "TokenizedCaptions":
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"captions-{captions_key(records)}.npz"
            if path.is_file():
                return cls.load(path, len(records))
        made = cls.tokenize(records)
        if path is not None:
            made.save(path)
        return made

    @classmethod
    def tokenize(cls, records: Sequence) -> "TokenizedCaptions":
        raws = [c for r in records for c in r.captions]
        words = text.tokenize_captions(raws)
        stoi: dict[str, int] = {}
        flat = [stoi.setdefault(w, len(stoi)) for caption in words for w in caption]
        lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
        offsets = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        per_record = np.asarray([len(r.captions) for r in records], dtype=np.int64)
        return cls(list(stoi), np.asarray(flat, dtype=np.int32), offsets, per_record)

    def save(self, path: Path) -> None:
        # concurrent runs each write their own temporary file; the last rename wins
        atomic_write(path, lambda f: np.savez(f, table=np.asarray(self.table, dtype=np.str_),
                                              word_index=self.word_index, offsets=self.offsets,
                                              captions_per_record=self.captions_per_record))

    @classmethod
    def load(cls, path: Path, num_records: int) -> "TokenizedCaptions":
        try:
            with np.load(path, allow_pickle=False) as z:
                made = cls([str(w) for w in z["table"].tolist()], z["word_index"], z["offsets"],
                           z["captions_per_record"], from_cache=True)
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: unreadable caption cache ({exc}); delete it (it is rebuilt)") from None
        if len(made.captions_per_record) != num_records or made.offsets[-1] != len(made.word_index):
            raise DataError(f"{path}: caption cache does not match the annotations; delete it (it is rebuilt)")
        return made

    @property
    def num_captions(self) -> int:
        return len(self.offsets) - 1

    def words(self, caption: int) -> list[str]:
        return [self.table[i] for i in self.word_index[self.offsets[caption]:self.offsets[caption + 1]]]

    def word_counts(self) -> dict[str, int]:
        counts = np.bincount(self.word_index, minlength=len(self.table))
        return {w: int(c) for w, c in zip(self.table, counts.tolist()) if c}

    def encode(self, vocab, max_len: int, length_policy: str, records: Sequence) -> "EncodedCaptions":
        """[<bos>, w1..wk, <eos>] ids per caption (OOV -> <unk>), `max_len` counting <bos>/<eos>; 'truncate' keeps
        the first max_len-2 words, 'refuse' raises naming the first caption that is too long."""
        if max_len < 3:
            raise DataError(f"max_len={max_len}: needs room for <bos>, one word and <eos>")
        room = max_len - 2
        lengths = self.offsets[1:] - self.offsets[:-1]
        first = np.concatenate([[0], np.cumsum(self.captions_per_record)])
        caption_record = np.repeat(np.arange(len(self.captions_per_record), dtype=np.int64),
                                   self.captions_per_record)
        empty = np.flatnonzero(lengths == 0)
        if len(empty):
            c = int(empty[0])
            r = records[int(caption_record[c])]
            k = c - int(first[caption_record[c]])
            raise DataError(f"image {r.image_id} annotation {r.annotation_ids[k]}: empty caption {r.captions[k]!r}")
        if length_policy == "refuse" and (lengths > room).any():
            c = int(np.flatnonzero(lengths > room)[0])
            r = records[int(caption_record[c])]
            k = c - int(first[caption_record[c]])
            raise DataError(f"image {r.image_id} annotation {r.annotation_ids[k]}: caption has {int(lengths[c])} "
                            f"words + <bos>/<eos> > max_len={max_len} (length_policy=refuse): "
                            f"{' '.join(self.words(c))[:120]!r}")
        if length_policy not in ("truncate", "refuse"):
            raise DataError(f"unknown length policy {length_policy!r}: use 'truncate' or 'refuse'")
        table_ids = np.asarray([vocab.stoi.get(w, vocab.unk_id) for w in self.table], dtype=np.int32)
        kept = np.minimum(lengths, room)
        # keep word j of caption c when j < kept[c]
        position = np.arange(len(self.word_index), dtype=np.int64) - np.repeat(self.offsets[:-1], lengths)
        words = table_ids[self.word_index[position < np.repeat(kept, lengths)]]
        out_lengths = kept + 2
        offsets = np.zeros(len(out_lengths) + 1, dtype=np.int64)
        np.cumsum(out_lengths, out=offsets[1:])
        flat = np.empty(int(offsets[-1]), dtype=np.int32)
        flat[offsets[:-1]] = vocab.bos_id
        flat[offsets[1:] - 1] = vocab.eos_id
        body = np.ones(len(flat), dtype=bool)
        body[offsets[:-1]] = False
        body[offsets[1:] - 1] = False
        flat[body] = words
        return EncodedCaptions(flat, offsets, caption_record, first)


@dataclass
class EncodedCaptions:
    """Caption ids of a record list: caption c = flat_ids[offsets[c]:offsets[c + 1]] belongs to record
    caption_image[c]; record r's captions are record_first[r] .. record_first[r + 1] - 1."""

    flat_ids: np.ndarray          # int32
    offsets: np.ndarray           # int64 (captions + 1,)
    caption_image: np.ndarray     # int64 (captions,)
    record_first: np.ndarray      # int64 (records + 1,)

    @property
    def num_records(self) -> int:
        return len(self.record_first) - 1

    def select(self, record_indices: Sequence[int]) -> "EncodedCaptions":
        """The captions of these records, in this order (e.g. one process's shard of a split)."""
        caps = [c for ri in record_indices for c in range(int(self.record_first[ri]), int(self.record_first[ri + 1]))]
        lengths = (self.offsets[1:] - self.offsets[:-1])[caps] if caps else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(len(caps) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = (np.concatenate([self.flat_ids[self.offsets[c]:self.offsets[c + 1]] for c in caps])
                if caps else np.zeros(0, dtype=np.int32))
        counts = np.asarray([self.record_first[ri + 1] - self.record_first[ri] for ri in record_indices],
                            dtype=np.int64)
        return EncodedCaptions(flat.astype(np.int32), offsets,
                               np.repeat(np.arange(len(counts), dtype=np.int64), counts),
                               np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def subset(self, records: Sequence, rank: int = 0, world_size: int = 1) -> "EncodedCaptions":
        """Those of the first len(records) records, this process's shard (records[rank::world_size])."""
        return self.select(range(len(records))[rank::world_size])
