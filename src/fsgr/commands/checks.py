"""Checks that the verbs run on their arguments before any work starts (no torch here: `fsgr --help` imports it).

Each refusal is a ConfigError: one line naming the flag and the value, exit status 2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Optional

from fsgr.errors import ConfigError
from fsgr.files import why_not_writable
from fsgr.outputs import is_own


def in_range(flag: str, value: Optional[float], low: float, high: Optional[float] = None,
             above: bool = False) -> None:
    """Refuse `value` outside low..high, or not above `low` when `above`, or not finite (None = not given,
    allowed)."""
    if value is None:
        return
    if not math.isfinite(value) or value < low or (above and value == low) or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"{'>' if above else '>='} {low}"
        raise ConfigError(f"{flag} {value}: must be a finite number {bound}" if isinstance(value, float) else
                          f"{flag} {value}: must be {bound}")


def output_file(flag: str, path: Optional[str], inputs: Iterable[Optional[str]] = (), *, verb: str,
                kind: Optional[str]) -> None:
    """Refuse, before the work, an output path that cannot be written: a directory, a path under a file, a folder
    that cannot be created or written, one of the command's own inputs, or an existing non-empty regular file that
    is not recognisably `verb`'s own output of this `kind` (fsgr/outputs.py; None: the verb recognises its file
    itself before any work, as caption's header row). Creates nothing."""
    if not path:
        return
    why = why_not_writable(path)
    if why:
        raise ConfigError(f"{flag} {path}: {why}")
    resolved = Path(path).resolve()
    for given in inputs:
        if given and Path(given).resolve() == resolved:
            raise ConfigError(f"{flag} {path}: is also an input of this command; it would be overwritten")
    target = Path(path)
    if kind is not None and target.is_file() and target.stat().st_size > 0 and not is_own(target, kind):
        raise ConfigError(f"{flag} {path}: exists and was not written by fsgr {verb}: remove it or choose another "
                          f"path")


def output_folder(flag: str, path: str) -> None:
    """Refuse, before the work, a folder that cannot be created or written into. Creates nothing."""
    why = why_not_writable(path, folder=True)
    if why:
        raise ConfigError(f"{flag} {path}: {why}")
