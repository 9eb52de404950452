"""The word vocabulary: specials <unk>=0 <pad>=1 <bos>=2 <eos>=3, then words by frequency (ties alphabetical).

Saved as JSON and stored inside checkpoints (`to_dict`). `Vocab.load` also imports the M2/RSTNet/FSGR `vocab.pkl`
(a pickled `data.vocab.Vocab`) through a restricted unpickler that never imports M2's classes, so users keep the
vocabulary their old checkpoints index.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections import Counter, OrderedDict, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from fsgr.data.text import tokenize_captions
from fsgr.errors import DataError
from fsgr.files import atomic_write_text, existing_file

SPECIALS = ("<unk>", "<pad>", "<bos>", "<eos>")
FORMAT = "fsgr-vocab-1"


class Vocab:
    unk_id = 0
    pad_id = 1
    bos_id = 2
    eos_id = 3

    def __init__(self, itos: Sequence[str], freqs: dict[str, int] | None = None, source: str = ""):
        itos = [str(w) for w in itos]
        if tuple(itos[:4]) != SPECIALS:
            raise DataError(f"vocabulary{' ' + source if source else ''}: the first four entries must be "
                            f"{list(SPECIALS)}, got {itos[:4]}")
        stoi: dict[str, int] = {}
        for i, w in enumerate(itos):
            if w in stoi:
                raise DataError(f"vocabulary{' ' + source if source else ''}: word {w!r} appears twice "
                                f"(ids {stoi[w]} and {i})")
            stoi[w] = i
        self.itos: list[str] = itos
        self.stoi: dict[str, int] = stoi
        self.freqs: dict[str, int] = dict(freqs or {})
        self.source = source

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab({len(self)} words{', from ' + self.source if self.source else ''})"

    # ---- encoding -------------------------------------------------------------------------------------------------
    def encode(self, words: Iterable[str]) -> list[int]:
        get = self.stoi.get
        return [get(w, 0) for w in words]

    def decode(self, ids: Iterable[int], collapse_repeats: bool = True) -> str:
        """Stop at <eos>; skip <bos>/<pad>; collapse consecutive duplicate words (the reference's evaluation)."""
        words: list[str] = []
        n = len(self.itos)
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.bos_id, self.pad_id):
                continue
            if not 0 <= i < n:
                raise DataError(f"token id {i} is outside the vocabulary (size {n})")
            w = self.itos[i]
            if collapse_repeats and words and words[-1] == w:
                continue
            words.append(w)
        return " ".join(words)

    # ---- building -------------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, tokenised_captions: Iterable[Sequence[str]], min_freq: int = 5) -> "Vocab":
        counts: Counter = Counter()
        for words in tokenised_captions:
            counts.update(words)
        return cls.from_counts(counts, min_freq)

    @classmethod
    def from_counts(cls, counts: dict[str, int], min_freq: int = 5) -> "Vocab":
        """Words seen at least min_freq times, by frequency (ties alphabetical), after the specials."""
        counts = dict(counts)
        for s in SPECIALS:
            counts.pop(s, None)
        kept = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls([*SPECIALS, *kept], freqs={w: counts[w] for w in kept}, source=f"built, min_freq={min_freq}")

    # ---- storage --------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> "Vocab":
        if not isinstance(d, dict) or not isinstance(d.get("itos"), list):
            raise DataError(f"vocabulary{' ' + source if source else ''}: expected a mapping with an 'itos' list")
        return cls(d["itos"], freqs=d.get("freqs"), source=source)

    def save(self, path: str | os.PathLike) -> None:
        payload = {**self.to_dict(), "freqs": {w: int(self.freqs[w]) for w in self.itos if w in self.freqs}}
        atomic_write_text(path, json.dumps(payload, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        """A vocab JSON written by `save`, or an M2/FSGR `vocab.pkl` (read without importing M2's classes)."""
        path = existing_file(Path(path), "a vocabulary file", DataError, "vocabulary file not found")
        raw = path.read_bytes()
        if raw[:1] == b"\x80":  # pickle protocol >= 2
            return _load_m2_pickle(raw, str(path))
        try:
            d = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: neither a vocabulary JSON nor a pickle ({exc})") from None
        return cls.from_dict(d, source=str(path))


# ---- the M2 vocab.pkl import ----------------------------------------------------------------------------------------


class _PickledVocab:
    """Stand-in for M2's `data.vocab.Vocab` / torchtext's `Vocab`: only keeps the pickled attributes."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected Vocab state of type {type(state).__name__}")
        self.__dict__.update(state)


def _default_unk_index():
    return 0


class _RestrictedUnpickler(pickle.Unpickler):
    """Allows only plain containers and a stand-in for a class named Vocab: never imports the pickled modules."""

    _SAFE = {
        ("collections", "Counter"): Counter,
        ("collections", "defaultdict"): defaultdict,
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("builtins", "set"): set,
        ("builtins", "tuple"): tuple,
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._SAFE:
            return self._SAFE[(module, name)]
        last = module.rsplit(".", 1)[-1]
        if last == "vocab" and name == "Vocab":
            return _PickledVocab
        if last == "vocab" and name == "_default_unk_index":
            return _default_unk_index
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only a Vocab and plain containers are "
                                     f"allowed)")


def _load_m2_pickle(raw: bytes, source: str) -> Vocab:
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
        raise DataError(f"{source}: not a readable M2 vocab.pkl ({exc})") from None
    state = obj.__dict__ if isinstance(obj, _PickledVocab) else obj
    if not isinstance(state, dict) or "itos" not in state:
        raise DataError(f"{source}: the pickle holds no vocabulary with an 'itos' list")
    itos = list(state["itos"])
    stoi = state.get("stoi")
    if stoi is not None:
        for w, i in stoi.items():
            if not (0 <= int(i) < len(itos)) or itos[int(i)] != w:
                raise DataError(f"{source}: stoi[{w!r}] = {i} disagrees with itos (size {len(itos)})")
    freqs = state.get("freqs") or {}
    return Vocab(itos, freqs={str(k): int(v) for k, v in dict(freqs).items()}, source=source)


# ---- from records / config ------------------------------------------------------------------------------------------


def vocab_from_records(records, splits: Sequence[str] = ("train",), min_freq: int = 5) -> Vocab:
    """Build from the captions of `splits` (ours: train; the reference/M2 used train + val)."""
    raws = [c for r in records if r.split in splits for c in r.captions]
    if not raws:
        raise DataError(f"no captions in split(s) {', '.join(splits)} to build a vocabulary from")
    vocab = Vocab.build(tokenize_captions(raws), min_freq=min_freq)
    vocab.source = f"built from {len(raws):,} {'+'.join(splits)} captions, min_freq={min_freq}"
    return vocab
