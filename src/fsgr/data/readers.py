"""Annotation readers: M2 folder, Karpathy JSON, COCO caption JSON (+ split list) -> list[ImageRecord].

No torch here (check-data imports this). Readers do not open image files; `fsgr check-data` does.
Every reader accepts `problems=`: None raises DataError at the first problem (training), a list collects them all
(check-data) and the reader carries on with what it could read.

Karpathy split of full COCO (stated and checked, see `full_coco`): 113,287 train (82,783 train2014 + 30,504
restval from val2014) / 5,000 val / 5,000 test images; in the M2 layout 414,113 + 152,634 train, 25,010 dev and
25,010 test annotation ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Literal, Optional, Sequence

import numpy as np

from fsgr.data.problems import Problem, report
from fsgr.data.records import ImageRecord
from fsgr.data.synthetic import incomplete_reason
from fsgr.errors import DataError
from fsgr.files import read_json

SPLITS = ("train", "val", "test")
# Karpathy's split names -> ours ("restval" is trained on, as M2/FSGR do with use_restval=True)
KARPATHY_SPLIT = {"train": "train", "restval": "train", "val": "val", "test": "test"}
# image counts (train incl. restval, val, test) of the standard Karpathy splits, by the JSON's "dataset" field
KARPATHY_COUNTS = {"coco": (113287, 5000, 5000), "flickr8k": (6000, 1000, 1000), "flickr30k": (29000, 1014, 1000)}
COCO_TOTAL_IMAGES = 123287
# M2 layout: annotation ids per file (coco_{train,restval,dev,test}_ids.npy) of the full dataset
M2_ID_COUNTS = {"train": 414113, "restval": 152634, "dev": 25010, "test": 25010}
# M2 id file -> (captions json, image subfolder, our split)
M2_FILES = {
    "train": ("captions_train2014.json", "train2014", "train"),
    "restval": ("captions_val2014.json", "val2014", "train"),
    "dev": ("captions_val2014.json", "val2014", "val"),
    "test": ("captions_val2014.json", "val2014", "test"),
}

FullCoco = Literal["auto", "require", "off"]


# ---- helpers ----------------------------------------------------------------------------------------------------------


def _read_json(path: Path):
    return read_json(path, "an annotation JSON file", "annotation file not found")


def split_counts(records: Iterable[ImageRecord]) -> dict[str, int]:
    counts = {s: 0 for s in SPLITS}
    for r in records:
        counts[r.split] += 1
    return counts


def by_split(records: Iterable[ImageRecord], split: str) -> list[ImageRecord]:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    return [r for r in records if r.split == split]


def check_full_coco(records: Sequence[ImageRecord], source: str, full_coco: FullCoco, is_full: bool,
                    problems: Optional[list[Problem]] = None, dataset: str = "coco") -> None:
    """The standard Karpathy COCO split is 113,287 / 5,000 / 5,000 images (Flickr8k 6,000 / 1,000 / 1,000, Flickr30k
    29,000 / 1,014 / 1,000: `dataset`). `auto`: checked when the file looks like the full dataset (`is_full`);
    `require`: it must be the full dataset; `off`: not checked (subsets, other splits)."""
    if full_coco == "off" or (full_coco == "auto" and not is_full):
        return
    counts = split_counts(records)
    got = (counts["train"], counts["val"], counts["test"])
    want = KARPATHY_COUNTS[dataset]
    if got != want:
        name = {"coco": "COCO", "flickr8k": "Flickr8k", "flickr30k": "Flickr30k"}[dataset]
        report(problems, Problem("split-counts", f"Karpathy {name} split must be train/val/test = "
                                                 f"{want[0]:,}/{want[1]:,}/{want[2]:,} images, got "
                                                 f"{got[0]:,}/{got[1]:,}/{got[2]:,} (full_coco={full_coco})",
                                 file=source))


def _coco_subdir(captions_json: Path, images_root: Path) -> str:
    """captions_train2014.json -> 'train2014' when images_root/train2014 exists (COCO's own layout), else ''."""
    stem = captions_json.stem
    if stem.startswith("captions_"):
        sub = stem[len("captions_"):]
        if (images_root / sub).is_dir():
            return sub
    return ""


def _index_coco(data, path: Path, problems) -> tuple[dict[int, str], dict[int, tuple[int, str]]]:
    """COCO caption JSON -> ({image_id: file_name}, {annotation_id: (image_id, caption)})."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
            data.get("annotations"), list):
        raise DataError(f"{path}: not a COCO captions file (needs 'images' and 'annotations' lists)")
    files: dict[int, str] = {}
    for im in data["images"]:
        try:
            files[int(im["id"])] = str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: image entry without a valid id/file_name: {str(im)[:100]}") from None
    anns: dict[int, tuple[int, str]] = {}
    for a in data["annotations"]:
        try:
            aid, iid = int(a["id"]), int(a["image_id"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: annotation without a valid id/image_id: {str(a)[:100]}") from None
        cap = a.get("caption")
        if not isinstance(cap, str):
            report(problems, Problem("bad-caption", f"caption is {type(cap).__name__}, not text", file=str(path),
                                     image_id=iid, annotation_id=aid))
            cap = ""
        if aid in anns:
            report(problems, Problem("duplicate-annotation", "annotation id appears twice", file=str(path),
                                     image_id=iid, annotation_id=aid))
        if iid not in files:
            report(problems, Problem("unknown-image", "annotation refers to an image id absent from 'images'",
                                     file=str(path), image_id=iid, annotation_id=aid))
        anns[aid] = (iid, cap)
    return files, anns


# ---- M2 -------------------------------------------------------------------------------------------------------------


def read_m2(folder: str | os.PathLike, images_root: str | os.PathLike, full_coco: FullCoco = "auto",
            problems: Optional[list[Problem]] = None) -> list[ImageRecord]:
    """M2/RSTNet `m2_annotations/`: captions_{train,val}2014.json + coco_{train,restval,dev,test}_ids.npy holding
    ANNOTATION ids. train = train + restval (use_restval=True), val = dev, test = test. Images live in
    images_root/train2014 and images_root/val2014."""
    folder, images_root = Path(folder), Path(images_root)
    if not folder.is_dir():
        raise DataError(f"{folder}: M2 annotation folder not found")
    indexes: dict[str, tuple[dict[int, str], dict[int, tuple[int, str]]]] = {}
    for json_name in ("captions_train2014.json", "captions_val2014.json"):
        indexes[json_name] = _index_coco(_read_json(folder / json_name), folder / json_name, problems)

    # image_id -> [split, path, captions, annotation ids]; order of first appearance in the id files
    images: dict[int, list] = {}
    id_counts = {}
    for part, (json_name, subdir, split) in M2_FILES.items():
        npy = folder / f"coco_{part}_ids.npy"
        if not npy.is_file():
            raise DataError(f"{npy}: M2 id file not found (expected coco_{{train,restval,dev,test}}_ids.npy)")
        try:
            ids = np.load(npy, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{npy}: not a readable .npy array of annotation ids ({exc})") from None
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise DataError(f"{npy}: expected a 1-d integer array of annotation ids, got {ids.dtype} {ids.shape}")
        id_counts[part] = int(ids.shape[0])
        files, anns = indexes[json_name]
        for aid in ids.tolist():
            found = anns.get(aid)
            if found is None:
                report(problems, Problem("unknown-annotation", f"annotation id listed in {npy.name} is not in "
                                                               f"{json_name}", file=str(folder / json_name),
                                         annotation_id=aid))
                continue
            iid, cap = found
            entry = images.get(iid)
            if entry is None:
                path = images_root / subdir / files.get(iid, f"<image {iid} not in {json_name}>")
                entry = images[iid] = [split, str(path), [], []]
            elif entry[0] != split:
                report(problems, Problem("split-overlap", f"image has captions in both {entry[0]} and {split} "
                                                          f"({npy.name})", image_id=iid, annotation_id=aid))
                continue
            if aid in entry[3]:
                report(problems, Problem("duplicate-annotation", f"annotation id listed twice ({npy.name})",
                                         image_id=iid, annotation_id=aid))
                continue
            entry[2].append(cap)
            entry[3].append(aid)
    records = [ImageRecord(iid, path, split, tuple(caps), tuple(aids))
               for iid, (split, path, caps, aids) in images.items()]
    check_full_coco(records, str(folder), full_coco, is_full=id_counts == M2_ID_COUNTS, problems=problems)
    return records


# ---- Karpathy --------------------------------------------------------------------------------------------------------


def read_karpathy(json_path: str | os.PathLike, images_root: str | os.PathLike, full_coco: FullCoco = "auto",
                  problems: Optional[list[Problem]] = None) -> list[ImageRecord]:
    """Karpathy's `dataset_coco.json` (also `dataset_flickr8k.json` / `dataset_flickr30k.json`, same format).
    Path = images_root/filepath/filename (filepath is absent for Flickr). Image id = cocoid when present, else imgid.
    Annotation ids = sentids. restval -> train."""
    json_path, images_root = Path(json_path), Path(images_root)
    data = _read_json(json_path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{json_path}: not a Karpathy split file (needs an 'images' list)")
    records: list[ImageRecord] = []
    seen: dict[int, str] = {}
    image_of_sentid: dict[int, int] = {}   # annotation ids are unique across the file, as in COCO
    for n, im in enumerate(data["images"]):
        try:
            filename = str(im["filename"])
            iid = int(im["cocoid"]) if "cocoid" in im else int(im["imgid"])
            raw_split = str(im["split"])
            sentences = im["sentences"]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{json_path}: image entry {n} lacks filename/imgid/split/sentences: "
                            f"{str(im)[:100]}") from None
        split = KARPATHY_SPLIT.get(raw_split)
        if split is None:
            report(problems, Problem("unknown-split", f"split {raw_split!r} is not train/restval/val/test",
                                     file=str(json_path), image_id=iid))
            continue
        if iid in seen:
            report(problems, Problem("split-overlap" if seen[iid] != split else "duplicate-image",
                                     f"image listed twice ({seen[iid]} and {split})", file=str(json_path),
                                     image_id=iid))
            continue
        seen[iid] = split
        sub = im.get("filepath") or ""
        path = images_root / sub / filename if sub else images_root / filename
        caps, aids = [], []
        for k, s in enumerate(sentences):
            raw = s.get("raw") if isinstance(s, dict) else None
            if raw is None and isinstance(s, dict) and isinstance(s.get("tokens"), list):
                raw = " ".join(map(str, s["tokens"]))
            if not isinstance(raw, str):
                raw = ""
            aid = s.get("sentid") if isinstance(s, dict) else None
            aid = int(aid) if aid is not None else iid * 1000 + k
            if aid in image_of_sentid:
                report(problems, Problem("duplicate-annotation", f"annotation id (sentid) {aid} is also on image "
                                                                 f"{image_of_sentid[aid]}", file=str(json_path),
                                         image_id=iid, annotation_id=aid))
                continue
            image_of_sentid[aid] = iid
            caps.append(raw)
            aids.append(aid)
        records.append(ImageRecord(iid, str(path), split, tuple(caps), tuple(aids)))
    dataset = str(data.get("dataset", ""))
    # coco, flickr8k, flickr30k: the standard split is checked when the file is the whole dataset
    known = dataset if dataset in KARPATHY_COUNTS else "coco"
    check_full_coco(records, str(json_path), full_coco, problems=problems, dataset=known,
                    is_full=dataset == known and len(data["images"]) == (
                        COCO_TOTAL_IMAGES if known == "coco" else sum(KARPATHY_COUNTS[known])))
    return records


# ---- COCO caption JSON + split list ----------------------------------------------------------------------------------


def _read_splits(splits, source: str) -> dict[int, str] | str:
    """-> {image_id: split}, or one split name for every image."""
    if isinstance(splits, str) and splits in SPLITS:
        return splits
    if isinstance(splits, dict):
        data = splits
    else:
        if not splits:
            raise DataError(f"{source}: COCO caption JSON needs a split list (data.splits / --splits): a JSON "
                            f"{{\"train\": [image ids], \"val\": [...], \"test\": [...]}}, a Karpathy "
                            f"dataset_coco.json, or one split name (train/val/test) for all images")
        data = _read_json(Path(splits))
    out: dict[int, str] = {}
    if isinstance(data, dict) and isinstance(data.get("images"), list):  # a Karpathy file: use its split
        for im in data["images"]:
            split = KARPATHY_SPLIT.get(str(im.get("split")))
            if split is not None:
                out[int(im["cocoid"]) if "cocoid" in im else int(im["imgid"])] = split
        return out
    if not isinstance(data, dict):
        raise DataError(f"{splits}: split list must be a JSON mapping split -> image ids")
    for name, ids in data.items():
        split = KARPATHY_SPLIT.get(name)
        if split is None or not isinstance(ids, list):
            raise DataError(f"{splits}: split {name!r} must be one of train/restval/val/test with a list of ids")
        for iid in ids:
            iid = int(iid)
            if iid in out and out[iid] != split:
                raise DataError(f"{splits}: image id {iid} is in both {out[iid]} and {split}")
            out[iid] = split
    return out


def read_coco(captions_json, images_root: str | os.PathLike, splits, full_coco: FullCoco = "auto",
              problems: Optional[list[Problem]] = None) -> list[ImageRecord]:
    """COCO caption JSON(s) (one path, a list, or comma-separated) + a split list (see `_read_splits`).
    Path = images_root/<subdir>/file_name, subdir = 'train2014' for captions_train2014.json when that folder exists
    (COCO's own layout), else images_root/file_name. Images in no split are left out."""
    if isinstance(captions_json, (str, os.PathLike)):
        paths = [Path(p.strip()) for p in str(captions_json).split(",") if p.strip()]
    else:
        paths = [Path(p) for p in captions_json]
    if not paths:
        raise DataError("no COCO captions JSON given (data.annotations / --annotations)")
    images_root = Path(images_root)
    split_of = _read_splits(splits, ", ".join(map(str, paths)))
    records: list[ImageRecord] = []
    seen: set[int] = set()
    for path in paths:
        files, anns = _index_coco(_read_json(path), path, problems)
        subdir = _coco_subdir(path, images_root)
        per_image: dict[int, tuple[list[str], list[int]]] = {iid: ([], []) for iid in files}
        for aid, (iid, cap) in anns.items():
            if iid in per_image:
                per_image[iid][0].append(cap)
                per_image[iid][1].append(aid)
        for iid, file_name in files.items():
            split = split_of if isinstance(split_of, str) else split_of.get(iid)
            if split is None:
                continue
            if iid in seen:
                report(problems, Problem("duplicate-image", "image id appears in two caption files", file=str(path),
                                         image_id=iid))
                continue
            seen.add(iid)
            caps, aids = per_image[iid]
            if not caps:
                report(problems, Problem("no-captions", "image has no captions", file=str(path), image_id=iid))
            full = images_root / subdir / file_name if subdir else images_root / file_name
            records.append(ImageRecord(iid, str(full), split, tuple(caps), tuple(aids)))
    if isinstance(split_of, dict):
        missing = [iid for iid in split_of if iid not in seen]
        if missing:
            report(problems, Problem("unknown-image", f"{len(missing)} image ids of the split list are in no caption "
                                                      f"file (first: {missing[:5]})", file=str(splits)))
    is_full = isinstance(split_of, dict) and len(split_of) == COCO_TOTAL_IMAGES
    check_full_coco(records, ", ".join(map(str, paths)), full_coco, is_full=is_full, problems=problems)
    return records


# ---- dispatch ---------------------------------------------------------------------------------------------------------


def read_records(cfg, problems: Optional[list[Problem]] = None) -> list[ImageRecord]:
    """DataConfig -> records, by cfg.format ('m2', 'karpathy', 'coco', 'synthetic'). Reads only: a synthetic dataset
    must have been generated (`fsgr.data.synthetic.generate`, which `fsgr train` and `fsgr demo` call)."""
    fmt = cfg.format
    if fmt == "synthetic":
        root = Path(cfg.synthetic.root)
        reason = incomplete_reason(root, cfg.synthetic)
        if reason is not None:
            if problems is None or not (root / "dataset_shapes.json").is_file():
                raise DataError(f"{root}: {reason}; `fsgr train` and `fsgr demo` generate the synthetic dataset, "
                                f"nothing else writes it")
            report(problems, Problem("synthetic-incomplete", reason, file=str(root)))
        return read_karpathy(root / "dataset_shapes.json", root, full_coco="off", problems=problems)
    if not cfg.annotations:
        raise DataError(f"data.annotations is empty: give the {fmt} annotations path")
    if fmt == "m2":
        return read_m2(cfg.annotations, cfg.images, full_coco=cfg.full_coco, problems=problems)
    if fmt == "karpathy":
        return read_karpathy(cfg.annotations, cfg.images, full_coco=cfg.full_coco, problems=problems)
    if fmt == "coco":
        return read_coco(cfg.annotations, cfg.images, cfg.splits, full_coco=cfg.full_coco, problems=problems)
    raise DataError(f"unknown data.format {fmt!r}: use m2, karpathy, coco or synthetic")
