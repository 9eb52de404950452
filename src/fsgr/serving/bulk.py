"""Bulk captioning: folders and listings of images -> one JSON line per image, resumable, shardable, mergeable.

    counts = caption_to_jsonl(captioner, paths, out, settings, batch_size, workers, resume=True, meta=header(...))

Images are decoded and preprocessed in DataLoader worker processes while the main process decodes captions, one batch
at a time. Every row is written as soon as its batch is done: `{"path", "caption", "logprob", "length"}`, or
`{"path", "error"}` for a file that cannot be used.

The file is fsgr's own: its first line is a header row `{"fsgr": "caption-jsonl", ...}` (the checkpoint's SHA-256,
the decoding settings, the part it is of), and each resume appends another such row. A file whose first line is not
one was not written here and is never modified: refused before any work. `--resume` reads and validates the whole
file first (only then is a half-written last line cut off), retries every image whose row is an error (the last row
of a path is its state) and refuses a file written by another checkpoint unless told otherwise.

Paths are keyed by their absolute path (`os.path.abspath`: `bulk`, `./bulk` and `$PWD/bulk` are one image set; lexical,
symlinks are not followed, and it reads nothing), which is what rows hold and what resume and sharding compare.
`--shard I/N` keeps the keys whose CRC-32 is I mod N: deterministic on any machine and independent of the other files,
so adding images later moves none of the old ones to another shard. Listed files are sharded as they are listed;
only directories are walked. `merge_parts` joins shard/part files into one, checking that every input is there once.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import sys
import zlib
from pathlib import Path
from typing import Iterable, NamedTuple, Optional, Sequence

import torch

from fsgr.errors import ConfigError, DataError, WorkFailed
from fsgr.files import atomic_write_text

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MARK = "caption-jsonl"          # the value of "fsgr" in a header row: how a file of ours is recognised
FORMAT = 1
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def path_key(path: str) -> str:
    """The identity of an image path for rows, resume and sharding (see the module docstring)."""
    return os.path.abspath(path)


def read_listing(source: str) -> list[str]:
    """`--files-from`: one path per line (`-`: stdin); blank lines are skipped, nothing else is trimmed."""
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            raise ConfigError(f"--files-from {source}: cannot read it ({exc.strerror or exc})") from None
    return [line for line in text.splitlines() if line]


def list_images(inputs: Iterable[str], shard: Optional[tuple[int, int]] = None) -> list[str]:
    """Files as given (whatever their suffix: the user named them) and, for each directory, every image file below it
    by suffix, in sorted order; with `shard=(I, N)` only the shard's own, by each file's key (a listed file is taken
    or left by its key alone: nothing is walked or opened for it). Duplicate keys are dropped; a path that does not exist, or a directory without a single image
    file, is kept as it is (it becomes an error row: nothing is skipped silently)."""
    out: list[str] = []
    seen: set[str] = set()

    def take(path: str) -> None:
        key = path_key(path)
        if key not in seen and (shard is None or shard_of(key, shard[1]) == shard[0]):
            seen.add(key)
            out.append(path)

    for item in inputs:
        if not os.path.isdir(item):
            take(item)
            continue
        found = False
        for root, dirs, files in os.walk(item):
            dirs.sort()
            for name in sorted(files):
                if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                    found = True
                    take(os.path.join(root, name))
        if not found:
            take(item)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 0 <= I < N -> (I, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ConfigError(f"--shard {text!r}: expected I/N with 0 <= I < N (e.g. 0/4 ... 3/4)")
    return int(match.group(1)), int(match.group(2))


def shard_of(key: str, num_shards: int) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogateescape")) % num_shards


def sources_sha256(sources: Sequence[str]) -> str:
    """What a run was asked to caption (the set of its sources' keys): parts of one job must agree on it."""
    keys = sorted({path_key(s) for s in sources})
    return hashlib.sha256("\n".join(keys).encode("utf-8", "surrogateescape")).hexdigest()


def header(checkpoint_sha256: Optional[str], settings=None, part: Optional[tuple[int, int]] = None,
           inputs: Optional[int] = None, **extra) -> dict:
    """A header row: what wrote the rows below it. `part` (I, N) and `inputs` (how many images the part holds) let
    `merge_parts` check that every input is there once."""
    decoding = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else settings
    return {"fsgr": MARK, "format": FORMAT, "checkpoint_sha256": checkpoint_sha256, "decoding": decoding,
            "part": list(part) if part else None, "inputs": inputs, **extra}


@dataclasses.dataclass
class CaptionFile:
    """A validated caption file: its header rows, each path's last row (in first-written order), where its last
    complete line ends, and how many row lines it holds (more than `rows` when a path was retried)."""
    path: Path
    headers: list[dict]
    rows: dict[str, dict]
    end: int
    lines: int

    @property
    def header(self) -> dict:
        """The latest header (the run that wrote the newest rows)."""
        return self.headers[-1]

    @property
    def done(self) -> set[str]:
        return {p for p, row in self.rows.items() if "error" not in row}

    @property
    def errors(self) -> list[str]:
        return [p for p, row in self.rows.items() if "error" in row]


def _is_row(row) -> bool:
    return isinstance(row, dict) and isinstance(row.get("path"), str) and (
        isinstance(row.get("caption"), str) or isinstance(row.get("error"), str))


def _regular_file(out: Path) -> None:
    if not out.is_file():
        raise ConfigError(f"{out}: not a regular file (a device, a pipe or a folder): bulk captions go to a file that "
                          f"can be read back to resume it")


def read_caption_file(out: Path) -> CaptionFile:
    """Read and validate the whole of `out`, modifying nothing. Anything after the last newline is a cut-off write
    (ignored here; `caption_to_jsonl` cuts it off before appending). A file not written by fsgr caption, or with a
    broken complete line, is refused in one line."""
    _regular_file(out)
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    try:
        first = json.loads(lines[0]) if lines else None
    except ValueError:
        first = None
    if not (isinstance(first, dict) and first.get("fsgr") == MARK):
        raise ConfigError(f"{out}: not a caption file written by `fsgr caption --out` (its first line is not fsgr's "
                          f"header row); it is left as it is: choose another --out")
    if first.get("format") != FORMAT:
        raise ConfigError(f"{out}: caption file format {first.get('format')!r}, this fsgr writes {FORMAT}")
    headers, rows = [first], {}
    for number, line in enumerate(lines[1:], 2):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and row.get("fsgr") == MARK:
            headers.append(row)
        elif _is_row(row):
            rows[row["path"]] = row                  # a later row of a path replaces its state, keeps its place
        else:
            raise DataError(f"{out}:{number}: not a caption row ({line[:80]!r}); fix or remove it to resume")
    return CaptionFile(out, headers, rows, end, len(lines) - len(headers))


def check_output(out: Path, resume: bool, checkpoint_sha256: Optional[str] = None,
                 other_checkpoint: bool = False) -> Optional[CaptionFile]:
    """Before any work: None for a new file; the validated file for a resume. Refused in one line: an existing file
    without `resume`, a file not ours, or one written by another checkpoint (unless `other_checkpoint`)."""
    if not os.path.lexists(out):
        return None
    _regular_file(out)
    if not resume:
        raise ConfigError(f"{out} exists: pass --resume to continue it, or choose another --out")
    existing = read_caption_file(out)
    before = existing.header.get("checkpoint_sha256")
    if not other_checkpoint and checkpoint_sha256 and before and before != checkpoint_sha256:
        raise ConfigError(f"{out}: written by another checkpoint (SHA-256 {before[:12]}..., this one "
                          f"{checkpoint_sha256[:12]}...); pass --other-checkpoint to add this one's captions to it")
    return existing


class BulkCounts(NamedTuple):
    written: int        # rows written by this run
    failed: int         # ... of which errors
    skipped: int        # images already captioned in the file
    retried: int        # images whose error row in the file was tried again

    def describe(self, out) -> str:
        """The line that reports a run: "wrote N row(s) to OUT (F failed, S already there[, R retried])"."""
        retried = f", {self.retried} retried" if self.retried else ""
        return f"wrote {self.written} row(s) to {out} ({self.failed} failed, {self.skipped} already there{retried})"


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
                row = {"path": paths[i], "caption": c.text, "logprob": round(c.logprob, 6), "length": c.length}
                if len(c.sequences) > 1:         # num_return_sequences: every returned caption, the first above
                    row["captions"] = [{"caption": text, "logprob": round(lp, 6)} for text, lp in c.sequences]
                yield row
            bar.update(len(items))
    finally:
        bar.close()


def _append(fd: int, data: bytes) -> None:
    """Write all of `data` at the end of the open file (the one place rows reach the disk)."""
    while data:
        data = data[os.write(fd, data):]


class _Appender:
    """Lines appended to a caption file. A failed write (a full disk) is undone to the last complete line, or the file
    is removed when this run created it and not even its header made it, and reported in one line naming the file."""

    def __init__(self, out: Path, existing: Optional[CaptionFile], first: dict):
        self.out, self.created, self.rows = out, existing is None, 0
        self.fd = os.open(out, os.O_WRONLY | (os.O_CREAT | os.O_EXCL if self.created else 0), 0o666)
        self.end = 0 if self.created else existing.end
        os.ftruncate(self.fd, self.end)         # a cut-off last line (validated as ours first) is redone
        os.lseek(self.fd, self.end, os.SEEK_SET)
        self.write(first, row=False)

    def write(self, obj: dict, row: bool = True) -> None:
        data = (json.dumps(obj) + "\n").encode("utf-8", "surrogateescape")
        try:
            _append(self.fd, data)
        except OSError as exc:
            self.close(failed=True)
            if exc.errno not in _NO_SPACE:
                raise
            left = (f"it holds the {self.rows} row(s) written before, complete; --resume continues it"
                    if os.path.exists(self.out) else "no file was left")
            raise WorkFailed(f"{self.out}: no space left on device while writing caption rows; {left}") from exc
        self.end += len(data)
        self.rows += row

    def close(self, failed: bool = False) -> None:
        if self.fd < 0:
            return
        try:
            if failed:
                os.ftruncate(self.fd, self.end)
            else:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1
        if failed and self.created and self.end == 0:
            os.unlink(self.out)


def caption_to_jsonl(captioner, paths: Sequence[str], out: Path, settings, batch_size: int = 16,
                     workers: int = 2, resume: bool = False, progress: bool = True, meta: Optional[dict] = None,
                     other_checkpoint: bool = False) -> BulkCounts:
    """Caption `paths` into `out`, one row per image keyed by `path_key`: JSON lines under a header row (`meta`:
    `header(...)`), each batch's rows written as it is done. On `resume`, images already captioned are skipped and
    error rows retried; when a retry replaced rows, the file is rewritten (atomically) with each image's last row only."""
    paths = [path_key(p) for p in paths]
    meta = meta or header(None, settings, inputs=len(paths))
    existing = check_output(out, resume, meta.get("checkpoint_sha256"), other_checkpoint)
    done = existing.done if existing else set()
    retry = set(existing.errors) if existing else set()
    todo = [p for p in paths if p not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    appender = _Appender(out, existing, meta)
    try:
        for row in caption_rows(captioner, todo, settings, batch_size, workers, progress):
            appender.write(row)
            failed += "error" in row
    finally:
        appender.close()
    retried = sum(p in retry for p in todo)
    if retried:
        compact(out)
    return BulkCounts(len(todo), failed, len(paths) - len(todo), retried)


def compact(out: Path) -> CaptionFile:
    """Rewrite `out` (atomically) with its header rows and each path's last row: a retried error row is gone."""
    file = read_caption_file(out)
    if file.lines > len(file.rows):
        atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in [*file.headers, *file.rows.values()]))
    return file


def merge_parts(parts: Sequence[Path], out: Path, replace: bool = False) -> CaptionFile:
    """Join part files (headers with `part` = [I, N] and `inputs`) into `out`: refused unless the parts are 0..N-1 of
    one job (once each, same checkpoint, same sources) and every part holds each of its inputs exactly once with no
    path in two parts. `out` is written atomically; an existing one only when `replace` and it is a caption file."""
    if not parts:
        raise ConfigError("--merge: no part files (*.jsonl) to merge")
    if os.path.lexists(out):
        if not replace:
            raise ConfigError(f"{out} exists: choose another --out (or --resume to replace a merged caption file)")
        read_caption_file(out)                      # refuses a file that is not ours
    files = [read_caption_file(p) for p in parts]
    first = files[0].header
    seen: dict[int, Path] = {}
    owner: dict[str, Path] = {}
    rows: list[dict] = []
    for f in files:
        h = f.header
        if not (isinstance(h.get("part"), list) and len(h["part"]) == 2 and isinstance(h.get("inputs"), int)):
            raise ConfigError(f"{f.path}: not a part of a sharded job (its header has no part I/N); only --shard, "
                              f"torchrun and --engine ray parts are merged")
        for key in ("checkpoint_sha256", "sources_sha256"):
            if h.get(key) != first.get(key):
                raise ConfigError(f"{f.path}: {key} {str(h.get(key))[:12]}... differs from {files[0].path}'s "
                                  f"{str(first.get(key))[:12]}...: not parts of one job")
        index, total = h["part"]
        if total != first["part"][1]:
            raise ConfigError(f"{f.path}: part {index}/{total}, but {files[0].path} is of {first['part'][1]} parts")
        if index in seen:
            raise ConfigError(f"{f.path}: part {index}/{total} again (also {seen[index]})")
        seen[index] = f.path
        if len(f.rows) != h["inputs"]:
            raise ConfigError(f"{f.path}: holds {len(f.rows)} of its {h['inputs']} images: finish it with --resume")
        for path, row in f.rows.items():
            if path in owner:
                raise ConfigError(f"{f.path}: {path} is also in {owner[path]}")
            owner[path] = f.path
            rows.append(row)
    missing = sorted(set(range(first["part"][1])) - set(seen))
    if missing:
        raise ConfigError(f"--merge: part(s) {', '.join(map(str, missing[:10]))} of {first['part'][1]} are missing")
    merged = {**first, "part": None, "inputs": len(rows), "merged_parts": len(files)}
    atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in [merged, *rows]))
    return read_caption_file(out)
