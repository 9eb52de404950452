"""Recognising fsgr's own output files, so that a verb replaces only a file it wrote (issue 25).

`commands.checks.output_file` refuses an existing non-empty regular file at an output path unless the recogniser of
that kind of output says it is fsgr's. Each recogniser is a cheap look at the content, never a full validation:
- "signed-json": a JSON object whose "signature" is an fsgr signature (`fsgr:VERSION|...`, metrics/signature.py):
  score/compare --json, evaluate's OUT.scores.json, check-semantics --json;
- "check-data-json": check-data's report, by its keys;
- "predictions": evaluate --out, a COCO results list whose sibling OUT.scores.json is fsgr's report of as many
  images;
- "server-results": the servers' results files (caption --nocaps-results, --coco-results in --results-dir), by their
  exact shape: a JSON list of objects with exactly "image_id" and "caption";
- "explain-image": explain's picture, by the text chunk (PNG) or comment (JPEG, GIF) `EXPLAIN_MARK` written with it;
- "codebook" / "clip-weights": a .pt loaded with weights_only=True whose "format" is fsgr's;
- "vocab-json": a JSON object whose "format" is the vocabulary's;
- "pretrain-log": pretrain-clip's JSONL log, every line one of its rows;
- "ablation-md": ablate's OUT/ablation.md, when the ablation.json beside it is fsgr's (signed-json).
No torch at import (`fsgr --help` imports commands.checks).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from fsgr.files import parse_json

EXPLAIN_MARK = "fsgr explain"          # the PNG text chunk ("Software") / JPEG comment explain writes
_SIGNATURE = re.compile(r"fsgr:[^|\s]+(\|[^|]+)*")
_CHECK_DATA_KEYS = {"ok", "counts", "captions", "images_checked", "problems"}
_PRETRAIN_ROW_KEYS = {"step", "eval_step", "event"}


def _loads(data: bytes):
    """fsgr's one JSON reader (`files.parse_json`), or None where the bytes are not JSON: not ours."""
    try:
        return parse_json(data)
    except (ValueError, RecursionError):     # not JSON (UnicodeDecodeError is a ValueError), or nested too deep
        return None


def _json(path: Path):
    return _loads(path.read_bytes())


def _signed_json(path: Path) -> bool:
    data = _json(path)
    return isinstance(data, dict) and isinstance(data.get("signature"), str) and \
        _SIGNATURE.fullmatch(data["signature"]) is not None


def _check_data_json(path: Path) -> bool:
    data = _json(path)
    return isinstance(data, dict) and _CHECK_DATA_KEYS <= data.keys()


def _results_list(data) -> bool:
    return isinstance(data, list) and all(isinstance(r, dict) and r.keys() == {"image_id", "caption"} for r in data)


def _server_results(path: Path) -> bool:
    return _results_list(_json(path))


def _predictions(path: Path) -> bool:
    """evaluate's pair: OUT.scores.json is fsgr's report and counts the images OUT holds."""
    scores = path.with_name(path.name + ".scores.json")
    if not (scores.is_file() and _signed_json(scores)):
        return False
    rows = _json(path)
    return _results_list(rows) and _json(scores).get("num_images") == len(rows)


def _explain_image(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            marks = [image.info.get("Software"), image.info.get("comment")]
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError):
        return False
    return any(m in (EXPLAIN_MARK, EXPLAIN_MARK.encode()) for m in marks)


def _torch_format(module: str) -> Callable[[Path], bool]:
    """Recognises a .pt whose "format" is `module`'s FORMAT (imported only when asked: torch)."""
    def recognise(path: Path) -> bool:
        import importlib
        import pickle

        import torch

        name = importlib.import_module(module).FORMAT

        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError):
            return False
        return isinstance(data, dict) and data.get("format") == name
    return recognise


def _vocab_json(path: Path) -> bool:
    from fsgr.data.vocab import FORMAT

    data = _json(path)
    return isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("itos"), list)


def _pretrain_log(path: Path) -> bool:
    rows = [_loads(line) for line in path.read_bytes().splitlines()]
    return all(isinstance(row, dict) and _PRETRAIN_ROW_KEYS & row.keys() for row in rows)


def _ablation_md(path: Path) -> bool:
    table = path.with_name("ablation.json")
    return table.is_file() and _signed_json(table)


RECOGNISERS: dict[str, Callable[[Path], bool]] = {
    "signed-json": _signed_json, "check-data-json": _check_data_json, "predictions": _predictions,
    "server-results": _server_results, "explain-image": _explain_image, "vocab-json": _vocab_json,
    "codebook": _torch_format("fsgr.models.codebook"), "clip-weights": _torch_format("fsgr.models.clip"),
    "pretrain-log": _pretrain_log, "ablation-md": _ablation_md,
}


def is_own(path: str | Path, kind: str) -> bool:
    """Whether the existing regular file `path` is recognisably fsgr's output of this `kind` (see the docstring)."""
    return RECOGNISERS[kind](Path(path))
