"""User-facing errors: the CLI prints these as one line and exits non-zero (no traceback unless --debug)."""

from collections.abc import Iterable


class FsgrError(Exception):
    """A problem with the user's input, files or configuration. The message names the file, id and reason.
    `exit_code` is the CLI's exit status for it (the README's table): 2, refused before any work."""

    exit_code = 2


class WorkFailed(FsgrError):
    """Work was done and then part of it failed (a full disk while writing a result, a metric that crashed after the
    others were computed): exit status 1, never 2, so a script can tell it from a refusal."""

    exit_code = 1


class CouldNotBind(FsgrError):
    """`fsgr serve` could not listen on its host and port (in use, not permitted): exit status 3 (as uvicorn's own
    start-up failure), so a supervisor can tell it from a bad argument and retry on another port."""

    exit_code = 3


class ConfigError(FsgrError):
    """A config file or `key=value` override that cannot be applied."""


class DataError(FsgrError):
    """Annotations, images or vocabularies that cannot be used as they are."""


class CheckpointError(FsgrError):
    """A checkpoint, codebook or vocabulary that does not match what it is loaded into."""


def format_ids(ids: Iterable) -> str:
    """The first 10 ids (repr) and how many more: how messages name images."""
    ids = list(ids)
    shown = ", ".join(repr(i) for i in ids[:10])
    return shown + (f" (and {len(ids) - 10} more)" if len(ids) > 10 else "")
