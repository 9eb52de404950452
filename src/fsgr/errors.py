"""User-facing errors: the CLI prints these as one line and exits non-zero (no traceback unless --debug)."""

from collections.abc import Iterable


class FsgrError(Exception):
    """A problem with the user's input, files or configuration. The message names the file, id and reason."""


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
