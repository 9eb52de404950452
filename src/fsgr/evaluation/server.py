"""Results files for the official evaluation servers.

- COCO (codalab): `captions_val2014_NAME_results.json` / `captions_test2014_NAME_results.json`, a list of
  {"image_id": int, "caption": str}, the integer image id parsed from the COCO file name
  (COCO_test2014_000000000001.jpg -> 1); one file per COCO split, every image of the split once.
- nocaps (EvalAI): the same list, the image ids taken from the split's image-info file (nocaps_val_image_info.json /
  nocaps_test_image_info.json: "images" with "id" and "file_name"), every image of the split once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from fsgr.errors import DataError, format_ids
from fsgr.files import atomic_write_text

COCO_NAME = re.compile(r"COCO_(train|val|test)(\d{4})_0*(\d+)$")
SERVER_SPLITS = ("val2014", "test2014")


def coco_split_and_id(path: str) -> tuple[str, int]:
    """("val2014" | "test2014" | ..., integer image id) from a COCO file name; DataError when it is none."""
    m = COCO_NAME.search(Path(path).stem)
    if m is None:
        raise DataError(f"{path}: not a COCO file name (COCO_val2014_000000391895.jpg): no image id for the server")
    return f"{m.group(1)}{m.group(2)}", int(m.group(3))


def coco_results(captions: Mapping[str, str]) -> tuple[str, list[dict]]:
    """(server split, results list) of {image path: caption}; all images must come from one server split."""
    by_split: dict[str, list[dict]] = {}
    for path, caption in captions.items():
        split, image_id = coco_split_and_id(path)
        by_split.setdefault(split, []).append({"image_id": image_id, "caption": caption})
    if len(by_split) != 1:
        raise DataError(f"images from several COCO splits ({', '.join(sorted(by_split))}): the servers take one "
                        "results file per split")
    split, rows = next(iter(by_split.items()))
    if split not in SERVER_SPLITS:
        raise DataError(f"COCO {split} images: the caption servers score val2014 and test2014 only")
    seen: dict[int, int] = {}
    for r in rows:
        seen[r["image_id"]] = seen.get(r["image_id"], 0) + 1
    twice = [i for i, n in seen.items() if n > 1]
    if twice:
        raise DataError(f"COCO image ids captioned more than once: {format_ids(twice)}")
    return split, sorted(rows, key=lambda r: r["image_id"])


def coco_results_path(folder: str | Path, split: str, name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9-]+", name):
        raise DataError(f"results name {name!r}: use letters, digits and '-' (the server parses the file name)")
    return Path(folder) / f"captions_{split}_{name}_results.json"


def nocaps_results(captions: Mapping[str, str], image_info: str | Path) -> list[dict]:
    """Results list of {image path: caption} with the nocaps ids of `image_info`; every image of it once."""
    try:
        info = json.loads(Path(image_info).read_text(encoding="utf-8"))
        ids = {im["file_name"]: im["id"] for im in info["images"]}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{image_info}: not a nocaps image-info file ({type(exc).__name__}: {exc})") from None
    rows, unknown = {}, []
    for path, caption in captions.items():
        name = Path(path).name
        if name not in ids:
            unknown.append(name)
            continue
        rows[ids[name]] = {"image_id": ids[name], "caption": caption}
    if unknown:
        raise DataError(f"{image_info}: images not in this nocaps split: {format_ids(unknown)}")
    missing = [name for name, i in ids.items() if i not in rows]
    if missing:
        raise DataError(f"{image_info}: nocaps images without a caption (the server needs all {len(ids)}): "
                        f"{format_ids(missing)}")
    return [rows[i] for i in sorted(rows)]


def write_results(path: str | Path, rows: list[dict]) -> Path:
    return atomic_write_text(path, json.dumps(rows))
