"""The metrics beyond the COCO toolkit's, for `fsgr score` and `fsgr compare`: CLIPScore and RefCLIPScore (need
`--clip` and `--images`), CHAIR (needs `--instances`) and a closed world's concept metrics (needs `--concepts`:
recall per concept group, CHAIR-style hallucination, binding swaps; `fsgr.metrics.concepts`). Each is a callable (image_ids, captions) ->
(scores, {name: PerImage}) that `fsgr.metrics.compare.score_system` runs beside the toolkit metrics; one that
lacks what it needs raises MetricUnavailable with the reason (reported, never a 0)."""

from __future__ import annotations

# Deferred imports: CLIPScore needs torch and a CLIP; `fsgr score` without it stays torch-free.

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from fsgr.errors import DataError
from fsgr.evaluation.coco_files import read_concept_world, read_instances
from fsgr.metrics.chair import Synonyms, chair, ground_truth
from fsgr.metrics.java import MetricUnavailable
from fsgr.metrics.resample import PerImage
from fsgr.metrics.score import ALL_METRICS, METRIC_ALIASES, METRIC_KEYS, parse_metrics, tokenize_groups
from fsgr.metrics.tokenizer import ptb_tokenize

EXTRA_KEYS = {"clipscore": ("CLIPScore",), "refclipscore": ("RefCLIPScore",), "chair": ("CHAIR-i", "CHAIR-s"),
              "concepts": ("concept-recall", "concept-CHAIR-i", "binding-swaps")}


def split_metrics(spec: str | None) -> tuple[list[str], list[str]]:
    """(toolkit metric names, extra metric names) of a --metrics value; None = all toolkit metrics."""
    if spec is None:
        return list(ALL_METRICS), []
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXTRA_KEYS and n not in METRIC_KEYS and n not in METRIC_ALIASES]
    if unknown or not names:
        raise DataError(f"--metrics {spec!r}: unknown metric(s) {', '.join(unknown) or '(none given)'}: choose from "
                        f"{', '.join([*ALL_METRICS, *EXTRA_KEYS])}")
    extra = [n for n in dict.fromkeys(names) if n in EXTRA_KEYS]
    toolkit = [n for n in names if n not in EXTRA_KEYS]
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
        elif name == "concepts":
            if not getattr(args, "concepts", None):
                out.append(Unavailable(name, "no concept world given (--concepts CONCEPTS.json)"))
                continue
            out.append(read_concept_world(args.concepts, list(refs)))
    return out
