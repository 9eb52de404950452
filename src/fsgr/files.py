"""Writing files so that nothing is lost: `atomic_write` is the one way fsgr replaces a file it owns.

The bytes go to a hidden temporary file in the target's folder, are flushed and fsynced, and the temporary file is
renamed over the target (then the folder is fsynced, so the rename itself survives a crash). A reader sees the old file
or the new one, never a torn one. On any failure the temporary file is removed and the old file is left as it was; a
full disk (or quota) is reported as one line naming the file. Also here: the read-only check that an output path can
be written (`why_not_writable`), the check that an input is a file (`existing_file`), the one-line reason a
weights file did not load (`why_unloadable`), JSON parsing (`parse_json`) and the one way a JSON input is read
(`read_json`: a DataError naming the file and what is wrong). Imports nothing from the rest of fsgr but the errors,
and no torch.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

import orjson

from fsgr.errors import DataError, FsgrError, WorkFailed

PathLike = Union[str, os.PathLike]

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT} if hasattr(errno, "EDQUOT") else {errno.ENOSPC}


def atomic_write(path: PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Replace `path` with what `write(binary_file)` writes, atomically (see the module docstring). Returns the path."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        return _write_in_place(path, write)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:   # KeyboardInterrupt included: never leave the temporary file behind
        tmp.unlink(missing_ok=True)    # absent when `open` itself failed
        if _is_no_space(exc):
            raise WorkFailed(f"{path}: no space left on device while writing it (the previous file, if any, is "
                             f"unchanged; no temporary file was left)") from exc
        raise
    _fsync_dir(path.parent)
    return path


def _write_in_place(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """A target that is no regular file (/dev/null, /dev/stdout, a FIFO) is written to as it is: renaming a
    temporary file over it would replace the device with a file."""
    try:
        with open(path, "wb") as f:
            write(f)
    except OSError as exc:
        if _is_no_space(exc):
            raise WorkFailed(f"{path}: no space left on device while writing it") from exc
        raise
    return path


def why_not_writable(path: PathLike, folder: bool = False) -> Optional[str]:
    """None when `path` can be created or replaced as a file (folder=False) or used as a folder (folder=True), else
    the reason. Reads only: the first folder that exists above `path` decides whether the rest can be created."""
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            return f"{path} is a file, not a folder"
        if not folder and path.is_dir():
            return f"{path} is a directory; give a file name"
        if not os.access(path, os.W_OK):
            return f"{path} is not writable (permission denied)"
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK) and not path.exists():
        return f"cannot create anything in {parent} (permission denied)"
    return None


def existing_file(path: PathLike, what: str, error: type[FsgrError], missing: str) -> Path:
    """`path` as a Path when it is a file; else `error`, naming it: "PATH: is a directory, not WHAT" or
    "PATH: MISSING"."""
    file = Path(path)
    if file.is_dir():
        raise error(f"{path}: is a directory, not {what}")
    if not file.is_file():
        raise error(f"{path}: {missing}")
    return file


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _is_no_space(exc: BaseException | None) -> bool:
    """True when `exc` or what caused it is ENOSPC/EDQUOT (torch.save wraps the OSError in a RuntimeError)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def why_unloadable(exc: BaseException) -> str:
    """One line for a failed `torch.load(weights_only=True)`: the call a hostile or foreign file asked for (refused,
    never made), or the reason torch gives, without its advice to re-run with `weights_only=False` (the one thing a
    user must not do with a file they cannot vouch for)."""
    text = str(exc)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return (f"refused: the file asks to call {refused.group(1)} while loading; fsgr reads only tensors and plain "
                f"values, so nothing in it was run")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):   # torch's boilerplate around the reason
        lines = [line.removeprefix("WeightsUnpickler error:").strip() for line in lines[1:]
                 if not line.startswith(("Please file an issue", "Check the documentation"))]
    first = next((line for line in lines if line), "")
    return f"{type(exc).__name__}: {first[:200]}"


def parse_json(data: bytes):
    """`json.loads` of UTF-8 bytes, by orjson: 2-5x faster (COCO's annotation files are 100+ MB). What orjson
    refuses goes to the standard library, whose value or error (`json.JSONDecodeError` with line and column,
    `UnicodeDecodeError`, `RecursionError`) is the answer: NaN and Infinity, lone surrogates (`"\\ud800"`),
    nesting past orjson's 1,024 levels, and every malformed file. One difference is left: an integer past 64 bits
    comes back as a float (no caption or annotation file holds one; an id so read is refused as no integer)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8"))


def read_json(path: PathLike, what: str, missing: str = "no such file"):
    """The parsed content of the JSON file `path`, else a DataError in one line naming it: "PATH: MISSING", "PATH: is
    a directory, not WHAT", not UTF-8, invalid JSON (line and column), nested too deeply. `what` names what the file
    should be, with its article ("a COCO captions file")."""
    file = existing_file(path, what, DataError, missing)
    try:
        return parse_json(file.read_bytes())
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}), so not {what}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}), so not "
                        f"{what}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be {what}") from None
