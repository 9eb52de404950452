"""The metrics beyond the COCO toolkit's, for `fsgr score` and `fsgr compare`: CLIPScore and RefCLIPScore (need
`--clip` and `--images`) and CHAIR (needs `--instances`). Each is a callable (image_ids, captions) ->
(scores, {name: PerImage}) that `fsgr.metrics.compare.score_system` runs beside the toolkit metrics; one that
lacks what it needs raises MetricUnavailable with the reason (reported, never a 0)."""

from __future__ import annotations

# Deferred imports: CLIPScore needs torch and a CLIP; `fsgr score` without it stays torch-free.

import json
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from fsgr.errors import DataError, format_ids
from fsgr.files import existing_file, parse_json
from fsgr.metrics.chair import Synonyms, chair, ground_truth
from fsgr.metrics.java import MetricUnavailable
from fsgr.metrics.resample import PerImage
from fsgr.metrics.score import ALL_METRICS, parse_metrics, tokenize_groups
from fsgr.metrics.tokenizer import ptb_tokenize

EXTRA_KEYS = {"clipscore": ("CLIPScore",), "refclipscore": ("RefCLIPScore",), "chair": ("CHAIR-i", "CHAIR-s")}


def split_metrics(spec: str | None) -> tuple[list[str], list[str]]:
    """(toolkit metric names, extra metric names) of a --metrics value; None = all toolkit metrics."""
    if spec is None:
        return list(ALL_METRICS), []
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    extra = [n for n in dict.fromkeys(names) if n in EXTRA_KEYS]
    toolkit = [n for n in names if n not in EXTRA_KEYS]
    if not toolkit and not extra:
        parse_metrics(spec)  # raises the usual message
    return (parse_metrics(toolkit) if toolkit else []), extra


class Unavailable:
    def __init__(self, name: str, reason: str) -> None:
        self.name, self.keys, self.reason = name, EXTRA_KEYS[name], reason

    def __call__(self, image_ids, captions):
        raise MetricUnavailable(self.reason)


class ClipScoreMetric:
    def __init__(self, name: str, scorer, refs: Mapping[Hashable, Sequence[str]]) -> None:
        self.name, self.keys, self.scorer, self.refs = name, EXTRA_KEYS[name], scorer, refs

    def __call__(self, image_ids, captions):
        if self.name == "clipscore":
            values = self.scorer.clipscore(image_ids, captions)
        else:
            values = self.scorer.refclipscore(image_ids, captions, [self.refs[i] for i in image_ids])
        key = self.keys[0]
        return {key: float(np.mean(values))}, {self.name: PerImage.mean(key, values)}


class ChairMetric:
    def __init__(self, instances: Mapping[Hashable, set[str]], refs: Mapping[Hashable, Sequence[str]]) -> None:
        self.name, self.keys = "chair", EXTRA_KEYS["chair"]
        self.instances, self.refs, self.synonyms = instances, refs, Synonyms.load()
        self._truth: tuple[list, list] | None = None  # (image ids, their ground-truth objects): every system's

    def ground_truth(self, image_ids) -> list:
        """The objects of each image (instances and reference captions), computed once for the images every compared
        system is scored on (the references' tokenisation is the expensive part)."""
        if self._truth is None or self._truth[0] != list(image_ids):
            ref_tok = [[t.split() for t in group] for group in tokenize_groups([self.refs[i] for i in image_ids])]
            self._truth = (list(image_ids), ground_truth(image_ids, self.instances, ref_tok, self.synonyms))
        return self._truth[1]

    def __call__(self, image_ids, captions):
        truth = self.ground_truth(image_ids)
        result = chair([t.split() for t in ptb_tokenize(list(captions))], truth, self.synonyms)
        hallucinated = np.asarray(result["hallucinated"], dtype=np.float64)
        return ({"CHAIR-i": result["CHAIR-i"], "CHAIR-s": result["CHAIR-s"]},
                {"chair-i": PerImage.ratio("CHAIR-i", hallucinated, result["mentions"]),
                 "chair-s": PerImage.mean("CHAIR-s", (hallucinated > 0).astype(np.float64))})


def read_instances(path: str, image_ids: Sequence[Hashable]) -> dict[Hashable, set[str]]:
    """COCO instance annotations -> image id -> category names. DataError naming the file and the ids when the
    file does not cover the images being scored."""
    p = existing_file(path, "a COCO instances JSON file", DataError, "no such file")
    try:
        data = parse_json(p.read_bytes())
        names = {c["id"]: c["name"] for c in data["categories"]}
        known = {im["id"] for im in data["images"]}
        classes: dict[Hashable, set[str]] = {i: set() for i in known}
        for ann in data["annotations"]:
            classes.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not COCO instance annotations ({type(exc).__name__}: {exc})") from None
    missing = [i for i in image_ids if i not in known]
    if missing:
        raise DataError(f"{path}: instance annotations for other images: none for image ids {format_ids(missing)}")
    return classes


def build_extra_metrics(names: Sequence[str], args, refs: Mapping[Hashable, Sequence[str]],
                        file_names: Mapping[Hashable, str] | None = None) -> list:
    """The callables for the extra metric names, from the CLI's --clip/--images/--instances/--device."""
    if getattr(args, "clip", None) and not getattr(args, "images", None):
        raise DataError(f"--clip {args.clip} given without --images: CLIPScore needs the images")
    out, scorer = [], None
    for name in names:
        if name in ("clipscore", "refclipscore"):
            if not args.clip:
                out.append(Unavailable(name, "no CLIP given (--clip PATH, an OpenAI-format checkpoint such as "
                                             "ViT-B-32.pt, and --images DIR)"))
                continue
            if scorer is None:
                from fsgr.evaluation.clipscore import ClipScorer   # torch and CLIP load only when asked
                scorer = ClipScorer(args.clip, args.images, file_names, device=args.device)
                scorer.image_paths(list(refs))  # every image present, before any scoring
            out.append(ClipScoreMetric(name, scorer, refs))
        elif name == "chair":
            if not args.instances:
                out.append(Unavailable(name, "no instance annotations given (--instances instances_val2014.json)"))
                continue
            out.append(ChairMetric(read_instances(args.instances, list(refs)), refs))
    return out
