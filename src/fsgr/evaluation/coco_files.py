"""COCO-format files in and out: what `fsgr score`, `compare`, `evaluate` and `caption` read and write.

- captions (references): `{"annotations": [{"image_id", "caption"}, ...], "images": [...]}`; nocaps files give each
  image a "domain" in "images";
- results (predictions): `[{"image_id", "caption"}, ...]`, one per image;
- instances (CHAIR): COCO's `instances_*.json` ("categories", "images", "annotations" with "category_id");
- the official servers' results files: COCO (codalab) `captions_val2014_NAME_results.json` /
  `captions_test2014_NAME_results.json`, the integer image id parsed from the COCO file name
  (COCO_test2014_000000000001.jpg -> 1), one file per split with every image once; nocaps (EvalAI) the same list with
  the ids of the split's image-info file (nocaps_val_image_info.json: "images" with "id" and "file_name").

- concept worlds (`--metrics concepts`): `{"concepts", "groups", "images": [{"image_id", "concepts"}]}`.

Every reader checks the whole file and raises one DataError naming the file, the ids and the reason. No torch here.
"""

from __future__ import annotations

# Deferred imports: fsgr.metrics.concepts, only for a concept world (--metrics concepts), so `fsgr score` without it
# does not load it.

import functools
import json
import os
import re
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

from fsgr.errors import DataError, format_ids
from fsgr.files import atomic_write_text, existing_file, read_json

DOMAINS = ("in-domain", "near-domain", "out-domain")
COCO_NAME = re.compile(r"COCO_(train|val|test)(\d{4})_0*(\d+)$")
SERVER_SPLITS = ("val2014", "test2014")


# ---- captions (references) and results (predictions) ----------------------------------------------------------------


def _load(path: str, what: str):
    stat = existing_file(path, what, DataError, "no such file").stat()
    return _load_once(path, what, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)  # read_refs, read_domains and read_file_names read the same file: parse it once
def _load_once(path: str, what: str, mtime_ns: int, size: int):
    return read_json(path, what)


def _id_and_caption(path: str, entries: list, where: str, missing: list):
    """(image id, caption) of each entry that has both fields; the others' ids (or #k) go to `missing`. An id that
    is neither an integer nor a string is refused."""
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image_id" not in entry or "caption" not in entry:
            missing.append(entry.get("image_id", f"#{k}") if isinstance(entry, dict) else f"#{k}")
            continue
        image_id = entry["image_id"]
        if type(image_id) is not int and type(image_id) is not str:  # (JSON true/false are no ids)
            raise DataError(f"{path}: {where} #{k}: image_id must be an integer or a string, got {image_id!r}")
        yield image_id, entry["caption"]


def read_refs(path: str) -> dict:
    """image id -> reference captions of a COCO captions file."""
    data = _load(path, "a COCO captions file")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: not COCO captions format (expected an object with an 'annotations' list)")
    refs = _grouped_captions(data["annotations"])
    return refs if refs else _checked_refs(path, data["annotations"])


def _grouped_captions(annotations: list) -> dict | None:
    """image id -> captions, when every annotation is a dict with an integer or string image id and a non-empty
    caption string (checked a column at a time: the usual file); None otherwise, for `_checked_refs` to say why."""
    try:
        ids = [ann["image_id"] for ann in annotations]
        captions = [ann["caption"] for ann in annotations]
    except (KeyError, TypeError):  # (not a dict, or a field missing)
        return None
    if not {int, str}.issuperset(map(type, ids)) or set(map(type, captions)) != {str} or \
            not all(map(str.strip, captions)):
        return None
    refs: defaultdict = defaultdict(list)
    for image_id, caption in zip(ids, captions):
        refs[image_id].append(caption)
    return dict(refs)


def _checked_refs(path: str, annotations: list) -> dict:
    """The captions of each image, annotation by annotation, or a DataError naming what is wrong and where."""
    refs: dict = {}
    missing, empty, not_text = [], [], []
    for image_id, caption in _id_and_caption(path, annotations, "annotation", missing):
        if type(caption) is not str:
            not_text.append(image_id)
        elif not caption.strip():
            empty.append(image_id)
        refs.setdefault(image_id, []).append(caption)
    if missing:
        raise DataError(f"{path}: annotations without 'image_id' and 'caption' fields: {format_ids(missing)}")
    if not_text:
        raise DataError(f"{path}: reference captions that are not strings (numbers, null, lists) for images "
                        f"{format_ids(dict.fromkeys(not_text))}")
    if empty:
        raise DataError(f"{path}: empty reference captions for images {format_ids(dict.fromkeys(empty))}")
    if not refs:
        raise DataError(f"{path}: no annotations")
    return refs


def read_preds(path: str) -> dict:
    """image id -> caption of a COCO results file (also accepted wrapped as {"annotations": [...]})."""
    data = _load(path, "a COCO results file")
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]  # tolerate a results list wrapped like a captions file
    if not isinstance(data, list):
        raise DataError(f"{path}: not COCO results format (expected a list of {{'image_id', 'caption'}})")
    preds: dict = {}
    missing, repeated, not_text = [], [], []
    for image_id, caption in _id_and_caption(path, data, "entry", missing):
        if image_id in preds:
            repeated.append(image_id)
        if type(caption) is not str:
            not_text.append(image_id)
        preds[image_id] = caption
    if missing:
        raise DataError(f"{path}: entries without 'image_id' and 'caption' fields: {format_ids(missing)}")
    if repeated:
        raise DataError(f"{path}: images predicted more than once: {format_ids(dict.fromkeys(repeated))}")
    if not_text:
        raise DataError(f"{path}: captions that are not strings for images {format_ids(not_text)}")
    if not preds:
        raise DataError(f"{path}: no predictions")
    return preds


def matched_refs(refs: dict, preds: dict, refs_path: str, preds_path: str, subset: bool = False,
                 hint: str = "use --subset to score only the predicted images") -> dict:
    """The references of the predicted images: every prediction must have references, and (unless `subset`) every
    referenced image a prediction (else the refusal ends with `hint`). The DataError names both files and the ids
    (and a type mismatch of the ids)."""
    no_refs = [i for i in preds if i not in refs]
    ref_types, pred_types = {type(i) for i in refs}, {type(i) for i in preds}
    if no_refs and ref_types.isdisjoint(pred_types):
        kind = {int: "integers", str: "strings"}
        raise DataError(f"{preds_path}: image ids are {' and '.join(kind[t] for t in pred_types)} here but "
                        f"{' and '.join(kind[t] for t in ref_types)} in {refs_path}: the types differ "
                        f"(e.g. {format_ids(no_refs[:3])})")
    if no_refs:
        raise DataError(f"{preds_path}: predictions for images without references in {refs_path}: "
                        f"{format_ids(no_refs)}")
    if subset:
        return {i: refs[i] for i in preds}
    no_preds = [i for i in refs if i not in preds]
    if no_preds:
        raise DataError(f"{preds_path}: no prediction for images of {refs_path}: {format_ids(no_preds)} ({hint})")
    return refs


def system_names(paths: Sequence[str], names: str | None) -> list[str]:
    """One name per compared results file: `names` ("A,B,...") or the file names without .json (the paths where
    those collide). The same file given twice is refused: a system compared with itself says nothing."""
    seen: dict[tuple[int, int], str] = {}
    for path in paths:
        stat = existing_file(path, "a COCO results file", DataError, "no such file").stat()
        if (stat.st_dev, stat.st_ino) in seen:
            raise DataError(f"--preds {path}: the same file as {seen[stat.st_dev, stat.st_ino]}; give each system's "
                            "results once (to compare a system with a copy of itself, copy the file)")
        seen[stat.st_dev, stat.st_ino] = path
    if names is not None:
        out = [n.strip() for n in names.split(",")]
        if len(out) != len(paths) or len(set(out)) != len(out) or not all(out):
            raise DataError(f"--names {names!r}: give {len(paths)} distinct names, one per --preds file")
        return out
    stems = [Path(p).name.removesuffix(".json") for p in paths]
    return stems if len(set(stems)) == len(stems) else list(paths)


def read_systems(refs: dict, refs_path: str, paths: Sequence[str], names: str | None) -> dict[str, dict]:
    """name -> predictions of each compared results file; every system must caption exactly the images of `refs`."""
    systems = {}
    for label, path in zip(system_names(paths, names), paths):
        systems[label] = read_preds(path)
        matched_refs(refs, systems[label], refs_path, path, hint="every system must caption the same images")
    return systems


def read_domains(path: str) -> dict | None:
    """nocaps layout: image id -> domain ("in-domain", "near-domain", "out-domain") from the "images" entries of
    a captions file; None for a file without domains (COCO). An image listed in two domains is refused by name."""
    data = _load(path, "a COCO captions file")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not any(isinstance(im, dict) and "domain" in im for im in images):
        return None
    domains, bad, twice = {}, [], []
    for k, im in enumerate(images):
        domain = im.get("domain") if isinstance(im, dict) else None
        if domain not in DOMAINS or type(im.get("id")) not in (int, str):
            bad.append(im.get("id", f"#{k}") if isinstance(im, dict) else f"#{k}")
            continue
        if domains.setdefault(im["id"], domain) != domain:
            twice.append(im["id"])
    if bad:
        raise DataError(f"{path}: nocaps images without an 'id' and a domain among {', '.join(DOMAINS)}: {format_ids(bad)}")
    if twice:
        raise DataError(f"{path}: nocaps images listed in two domains: {format_ids(dict.fromkeys(twice))}")
    return domains


def read_file_names(path: str) -> dict:
    """image id -> file name, from the "images" entries of a captions file (COCO, nocaps); {} when none."""
    data = _load(path, "a COCO captions file")
    images = data.get("images") if isinstance(data, dict) else None
    return {im["id"]: im["file_name"] for im in images or []
            if isinstance(im, dict) and "id" in im and isinstance(im.get("file_name"), str)}


def read_instances(path: str, image_ids: Sequence[Hashable]) -> dict[Hashable, set[str]]:
    """COCO instance annotations -> image id -> category names. DataError naming the file and the ids when the
    file does not cover the images being scored."""
    data = read_json(path, "a COCO instances JSON file")
    try:
        names = {c["id"]: c["name"] for c in data["categories"]}
        known = {im["id"] for im in data["images"]}
        classes: dict[Hashable, set[str]] = {i: set() for i in known}
        for ann in data["annotations"]:
            classes.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: not COCO instance annotations ({type(exc).__name__}: {exc})") from None
    missing = [i for i in image_ids if i not in known]
    if missing:
        raise DataError(f"{path}: instance annotations for other images: none for image ids {format_ids(missing)}")
    return classes


def read_concept_world(path: str, image_ids: Sequence[Hashable]):
    """A closed concept world for `--metrics concepts` (`fsgr.metrics.concepts.ConceptWorld`) from JSON:
    {"concepts": [phrase, ...], "groups": {name: [phrase, ...]} (optional), "images": [{"image_id": id,
    "concepts": [phrase, ...]}, ...]}. DataError naming the file and what is wrong, or the ids it does not cover."""
    from fsgr.metrics.concepts import ConceptWorld

    data = read_json(path, "a concept world JSON file")
    try:
        concepts = data["concepts"]
        groups = data.get("groups", {})
        truth = {im["image_id"]: set(im["concepts"]) for im in data["images"]}
        phrases = [concepts, *groups.values(), *truth.values()]
        if not concepts or not all(isinstance(c, str) and c.strip() for p in phrases for c in p):
            raise TypeError("concepts must be a non-empty list of phrases")
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not a concept world ({{\"concepts\": [...], \"images\": [{{\"image_id\", "
                        f"\"concepts\"}}]}}; {type(exc).__name__}: {exc})") from None
    known = set(concepts)
    for where, names in [*((f"group {g!r}", v) for g, v in groups.items()),
                         *((f"image {i}", v) for i, v in truth.items())]:
        unknown = sorted(set(names) - known)
        if unknown:
            raise DataError(f"{path}: {where} names {unknown[0]!r}, which is not in its \"concepts\" list")
    missing = [i for i in image_ids if i not in truth]
    if missing:
        raise DataError(f"{path}: no concepts for image ids {format_ids(missing)}")
    held = set().union(set(), *(truth[i] for i in image_ids))
    for where, names in (("its \"concepts\" list", concepts), *((f"group {g!r}", v) for g, v in groups.items())):
        if not held & set(names):       # a recall over no holder does not exist: say so rather than print a 0
            raise DataError(f"{path}: no scored image holds a concept of {where}, so it has no recall")
    return ConceptWorld(list(concepts), truth, {g: list(v) for g, v in groups.items()})


def write_json(path: str | os.PathLike, data) -> Path:
    """Scores and reports, indented, UTF-8, replaced atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# ---- the evaluation servers' results files --------------------------------------------------------------------------


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


def coco_server_split(images: Mapping[str, object]) -> str:
    """The server split ("val2014" or "test2014") of {image path: image id}, whose ids must be the COCO ids of their
    file names (a dataset whose ids were renumbered cannot go to the server)."""
    split, _ = coco_results({path: "" for path in images})
    wrong = [image_id for path, image_id in images.items() if coco_split_and_id(path)[1] != int(image_id)]
    if wrong:
        raise DataError(f"image ids that are not the COCO ids of their files: {format_ids(wrong)}")
    return split


def check_results_name(name: str) -> str:
    """`name` when it can be the NAME of captions_SPLIT_NAME_results.json (letters, digits, '-': no path)."""
    if not re.fullmatch(r"[A-Za-z0-9-]+", name):
        raise DataError(f"--coco-results {name!r}: use letters, digits and '-' (the server parses the file name)")
    return name


def coco_results_path(folder: str | Path, split: str, name: str) -> Path:
    return Path(folder) / f"captions_{split}_{check_results_name(name)}_results.json"


def nocaps_results(captions: Mapping[str, str], image_info: str | Path) -> list[dict]:
    """Results list of {image path: caption} with the nocaps ids of `image_info`; every image of it once."""
    info = read_json(image_info, "a nocaps image-info file")
    try:
        ids = {im["file_name"]: im["id"] for im in info["images"]}
    except (KeyError, TypeError) as exc:
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


def write_server_files(captions: Mapping[str, str], coco_name: str | None = None, results_dir: str | Path = ".",
                       nocaps_file: str | Path | None = None, nocaps_info: str | Path | None = None) -> list[str]:
    """The servers' results files asked for, of {image path: caption}: COCO's (`coco_name`, into `results_dir`)
    and nocaps' (`nocaps_file`, ids from `nocaps_info`). Returns one line per file written, saying what it holds."""
    done = []
    if coco_name:
        split, rows = coco_results(captions)
        path = write_results(coco_results_path(results_dir, split, coco_name), rows)
        done.append(f"wrote {path} ({len(rows)} images, COCO {split} server)")
    if nocaps_file:
        rows = nocaps_results(captions, nocaps_info)
        path = write_results(nocaps_file, rows)
        done.append(f"wrote {path} ({len(rows)} images, nocaps server)")
    return done
