"""Bulk captioning: folders of images -> one JSON line per image, resumable and shardable.

    rows = caption_to_jsonl(captioner, paths, out, settings, batch_size, workers, resume=True)

Images are decoded and preprocessed in DataLoader worker processes while the main process decodes captions, one batch
at a time. Every row is written and flushed as soon as its batch is done: `{"path", "caption", "logprob", "length"}`,
or `{"path", "error"}` for a file that cannot be used. `--resume` reads what is there, drops a half-written last line
(a run cut off mid-write) and skips every path already written. `--shard I/N` keeps the paths whose CRC-32 is I mod N:
deterministic on any machine and independent of the other files in the folders, so adding images later moves none of
the old ones to another shard.
"""

from __future__ import annotations

import json
import os
import re
import sys
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import torch

from fsgr.errors import ConfigError, DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def list_images(inputs: Iterable[str]) -> list[str]:
    """Files as given (whatever their suffix: the user named them) and, for each directory, every image file below it
    by suffix, in sorted order. Duplicates are dropped; a path that does not exist, or a directory without a single
    image file, is kept as it is (it becomes an error row: nothing is skipped silently)."""
    out: list[str] = []
    seen: set[str] = set()
    for item in inputs:
        found = [item]
        if os.path.isdir(item):
            found = []
            for root, dirs, files in os.walk(item):
                dirs.sort()
                found.extend(os.path.join(root, f) for f in sorted(files)
                             if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES)
            found = found or [item]
        for path in found:
            if path not in seen:
                seen.add(path)
                out.append(path)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 0 <= I < N -> (I, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ConfigError(f"--shard {text!r}: expected I/N with 0 <= I < N (e.g. 0/4 ... 3/4)")
    return int(match.group(1)), int(match.group(2))


def shard_of(path: str, num_shards: int) -> int:
    return zlib.crc32(path.encode("utf-8", "surrogateescape")) % num_shards


def read_done(out: Path) -> set[str]:
    """Paths already written to `out`. A last line without its newline or not valid JSON (a cut-off write) is removed
    from the file so that it is redone; a broken line before the last one is an error naming its line."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    keep = data.rfind(b"\n") + 1                 # up to the end of the last complete line
    lines = data[:keep].split(b"\n")[:-1]
    if lines:
        try:
            json.loads(lines[-1])
        except ValueError:                        # torn although its newline made it: redo it as well
            keep -= len(lines.pop()) + 1
    if keep != len(data):
        with open(out, "r+b") as f:
            f.truncate(keep)
    done: set[str] = set()
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            done.add(row["path"])
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{out}:{number}: not a caption row ({line[:80]!r}); fix or remove it to resume") from None
    return done


def read_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


class _ImageFiles(torch.utils.data.Dataset):
    """Decoding in the worker processes: index -> (index, tensor or None, error or None)."""

    def __init__(self, paths: Sequence[str], size: int, resize: str):
        self.paths, self.size, self.resize = list(paths), size, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from fsgr.data.images import load_image

        path = self.paths[i]
        try:
            return i, load_image(path, size=self.size, resize=self.resize), None
        except DataError as exc:
            msg = str(exc)
            return i, None, msg[len(path) + 2:] if msg.startswith(path + ": ") else msg


def _collate(items):
    """In the worker: (every (index, error or None), the decoded images stacked (G, 3, S, S) or None). One tensor
    crosses to the main process per batch, and the main process spends its time decoding captions, not stacking."""
    good = [x for _, x, err in items if err is None]
    return [(i, err) for i, _, err in items], (torch.stack(good) if good else None)


def caption_rows(captioner, paths: Sequence[str], settings, batch_size: int = 16, workers: int = 2,
                 progress: bool = True):
    """Yield one row per path, in order, batch by batch (`captioner`: anything with `.generate(images, settings)`,
    `.image_size` and `.resize`: the PyTorch Captioner or the ONNX one)."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    loader = DataLoader(_ImageFiles(paths, captioner.image_size, captioner.resize), batch_size=batch_size,
                        num_workers=workers, collate_fn=_collate, shuffle=False,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    bar = tqdm(total=len(paths), unit="img", disable=not progress or None, file=sys.stderr, smoothing=0.1)
    try:
        for items, images in loader:
            captions = iter(captioner.generate(images, settings) if images is not None else [])
            for i, err in items:
                if err is not None:
                    yield {"path": paths[i], "error": err}
                    continue
                c = next(captions)
                yield {"path": paths[i], "caption": c.text, "logprob": round(c.logprob, 6), "length": c.length}
            bar.update(len(items))
    finally:
        bar.close()


def caption_to_jsonl(captioner, paths: Sequence[str], out: Path, settings, batch_size: int = 16,
                     workers: int = 2, resume: bool = False, progress: bool = True) -> tuple[int, int, int]:
    """Caption `paths` into `out` (JSON lines, flushed per batch). -> (written, failed, skipped as already done)."""
    done: set[str] = set()
    if out.exists() and not resume:
        raise ConfigError(f"{out} exists: pass --resume to continue it, or choose another --out")
    if resume:
        done = read_done(out)
    todo = [p for p in paths if p not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    written = failed = 0
    with open(out, "a", encoding="utf-8") as f:
        for row in caption_rows(captioner, todo, settings, batch_size, workers, progress):
            f.write(json.dumps(row) + "\n")
            f.flush()
            written += 1
            failed += "error" in row
        os.fsync(f.fileno())
    return written, failed, len(paths) - len(todo)
