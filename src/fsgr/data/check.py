"""The checks behind `fsgr check-data` (no torch: only PIL, numpy and the readers)."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Optional

from tqdm import tqdm

from fsgr.data.decode import check_images as check_image_files
from fsgr.data.problems import Problem
from fsgr.data.readers import SPLITS, read_records, split_counts
from fsgr.data.text import tokenize_captions
from fsgr.data.vocab import Vocab


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)       # images per split
    captions: dict[str, int] = field(default_factory=dict)     # captions per split
    truncated: int = 0                                         # captions longer than max_len (policy truncate)
    oov_rate: Optional[float] = None
    vocab_size: Optional[int] = None
    images_checked: int = 0
    image_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary_lines(self) -> list[str]:
        c, k = self.counts, self.captions
        lines = [f"images: train {c.get('train', 0):,}  val {c.get('val', 0):,}  test {c.get('test', 0):,}   "
                 f"captions: train {k.get('train', 0):,}  val {k.get('val', 0):,}  test {k.get('test', 0):,}"]
        if self.images_checked:
            rate = self.images_checked / max(self.image_seconds, 1e-9)
            lines.append(f"image files decoded: {self.images_checked:,} in {self.image_seconds:.1f} s "
                         f"({rate:,.0f} images/s)")
        if self.vocab_size is not None:
            lines.append(f"vocabulary: {self.vocab_size:,} words, out-of-vocabulary words {100 * self.oov_rate:.2f}%")
        if self.truncated:
            lines.append(f"captions longer than max_len (will be truncated): {self.truncated:,}")
        lines.extend(self.notes)
        if self.ok:
            lines.append("check-data: OK, no problems")
        else:
            kinds: dict[str, int] = {}
            for p in self.problems:
                kinds[p.kind] = kinds.get(p.kind, 0) + 1
            lines.append(f"check-data: {len(self.problems):,} problem(s): "
                         + ", ".join(f"{k} {n:,}" for k, n in sorted(kinds.items())))
        return lines

    def to_dict(self) -> dict:
        return {"ok": self.ok, "counts": self.counts, "captions": self.captions, "truncated": self.truncated,
                "vocab_size": self.vocab_size, "oov_rate": self.oov_rate, "images_checked": self.images_checked,
                "image_seconds": self.image_seconds, "notes": self.notes,
                "problems": [p.to_dict() for p in self.problems]}


def _check_files(paths: list[str], workers: int, progress: bool) -> list[tuple[str, str]]:
    # small chunks for few images (spread over the workers), at most 64 paths per task (little IPC)
    chunk = max(1, min(64, -(-len(paths) // max(1, workers * 4))))
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    bad: list[tuple[str, str]] = []
    bar = None
    if progress:
        bar = tqdm(total=len(paths), unit="img", desc="check-data images", file=sys.stderr, mininterval=0.5)
    if workers <= 1 or len(chunks) <= 1:
        for c in chunks:
            bad.extend(check_image_files(c))
            if bar is not None:
                bar.update(len(c))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(check_image_files, c): len(c) for c in chunks}
            for fut in as_completed(futures):
                bad.extend(fut.result())
                if bar is not None:
                    bar.update(futures[fut])
    if bar is not None:
        bar.close()
    return sorted(bad)


def check_dataset(cfg, vocab_path: Optional[str] = None, check_images: bool = True, workers: int = 1,
                  expect_counts: Optional[tuple[int, int, int]] = None, progress: bool = False) -> CheckReport:
    """Read `cfg`'s annotations collecting (not raising) problems, then check captions, vocabulary and images."""
    report = CheckReport()
    problems = report.problems
    records = read_records(cfg, problems=problems)
    ann_file = cfg.annotations if cfg.format != "synthetic" else cfg.synthetic.root
    report.counts = split_counts(records)
    report.captions = {s: sum(len(r.captions) for r in records if r.split == s) for s in SPLITS}

    # counts
    for s in ("train", "val"):
        if report.counts[s] == 0:
            problems.append(Problem("split-empty", f"no {s} images", file=ann_file))
    if report.counts["test"] == 0:
        report.notes.append("note: no test images")
    if expect_counts is not None:
        got = tuple(report.counts[s] for s in SPLITS)
        if got != tuple(expect_counts):
            problems.append(Problem("split-counts", f"expected train/val/test = "
                                                    f"{'/'.join(f'{n:,}' for n in expect_counts)} images, got "
                                                    f"{'/'.join(f'{n:,}' for n in got)}", file=ann_file))

    # split overlap by file (the readers already refuse an image id in two splits)
    split_of_path: dict[str, tuple[str, int]] = {}
    for r in records:
        prev = split_of_path.get(r.path)
        if prev is not None and prev[0] != r.split:
            problems.append(Problem("split-overlap", f"the same file is image {prev[1]} in {prev[0]} and image "
                                                     f"{r.image_id} in {r.split}", file=r.path, image_id=r.image_id))
        elif prev is None:
            split_of_path[r.path] = (r.split, r.image_id)

    # captions: non-empty, within length, ids in range
    raws = [c for r in records for c in r.captions]
    words = tokenize_captions(raws)
    vocab = None
    if vocab_path:
        vocab = Vocab.load(vocab_path)
        report.vocab_size = len(vocab)
    room = cfg.max_len - 2
    k = 0
    n_words = n_oov = 0
    for r in records:
        if not r.captions:
            problems.append(Problem("no-captions", "image has no captions", file=ann_file, image_id=r.image_id))
        for aid in r.annotation_ids:
            w = words[k]
            if not w:
                problems.append(Problem("empty-caption", f"caption {raws[k]!r} has no words", file=ann_file,
                                        image_id=r.image_id, annotation_id=aid))
            elif len(w) > room:
                if cfg.length_policy == "refuse":
                    problems.append(Problem("caption-too-long", f"{len(w)} words + <bos>/<eos> > max_len="
                                                                f"{cfg.max_len}", file=ann_file,
                                            image_id=r.image_id, annotation_id=aid))
                else:
                    report.truncated += 1
            if vocab is not None and w:
                ids = vocab.encode(w)
                bad = [i for i in ids if not 0 <= i < len(vocab)]
                if bad:
                    problems.append(Problem("token-id", f"token id {bad[0]} outside 0..{len(vocab) - 1}",
                                            file=str(vocab_path), image_id=r.image_id, annotation_id=aid))
                n_words += len(ids)
                n_oov += sum(1 for i in ids if i == vocab.unk_id)
            k += 1
    if vocab is not None:
        report.oov_rate = n_oov / max(n_words, 1)

    # images: exist and decode
    if check_images:
        paths = sorted({r.path for r in records})
        ids_of: dict[str, list[int]] = {}
        for r in records:
            ids_of.setdefault(r.path, []).append(r.image_id)
        t0 = time.perf_counter()
        bad_files = _check_files(paths, workers, progress)
        report.image_seconds = time.perf_counter() - t0
        report.images_checked = len(paths)
        for path, reason in bad_files:
            kind = "missing-image" if "not found" in reason else "broken-image"
            for iid in ids_of[path]:
                problems.append(Problem(kind, reason, file=path, image_id=iid))
    return report
