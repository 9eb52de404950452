"""fsgr's messages go through `logging`, under the `fsgr` logger (each module logs as `fsgr.<module>`).

As PyTorch Lightning does for its own logger, `fsgr` gets one handler of its own the first time a module asks for a
logger: INFO and above, the bare message, on stderr, written around any live tqdm progress bar; it does not propagate
to the root logger (no doubled lines where an application configured logging). Raise or silence it like any logger
(`logging.getLogger("fsgr").setLevel(logging.WARNING)`), or with `--quiet` / `--verbose` on every verb.
The results a verb exists to print (captions, score tables, JSON reports) are its output, not messages: they stay on
stdout whatever the level.
"""

from __future__ import annotations

import contextlib
import logging
import sys

ROOT = "fsgr"


class _StderrHandler(logging.Handler):
    """The message alone on the current sys.stderr (looked up at each record, so redirections and pytest's capture
    see it), through `tqdm.write` when tqdm is loaded so that a progress bar is redrawn below it, not broken."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            tqdm = sys.modules.get("tqdm")
            if tqdm is not None:
                tqdm.tqdm.write(text, file=sys.stderr)
            else:
                sys.stderr.write(text + "\n")
                sys.stderr.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own contract: a failed emit goes to handleError
            self.handleError(record)


def get_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` for a module of fsgr, with the `fsgr` handler installed once."""
    root = logging.getLogger(ROOT)
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return logging.getLogger(name)


@contextlib.contextmanager
def verbosity(quiet: bool = False, verbose: bool = False):
    """The `fsgr` logger's level for one command: --quiet = warnings and errors only, --verbose = debug messages too;
    the level it had comes back afterwards (`fsgr.cli.main` may run several commands in one process)."""
    root = get_logger(ROOT)
    before = root.level
    root.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    try:
        yield
    finally:
        root.setLevel(before)
