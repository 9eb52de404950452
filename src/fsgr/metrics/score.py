"""`score(refs, preds)`: the COCO caption metrics of predictions against references, as pycocoevalcap computes them.

Both sides are raw text, PTB-tokenised here exactly as the toolkit does (references in image order, then the
predictions in the same image order). BLEU, ROUGE-L and CIDEr-D are computed in Python; METEOR and SPICE run their
jars when Java (and, for SPICE, the Stanford CoreNLP models) are present. A metric that cannot run is left out of
the result and its reason is in `result.unavailable` (never a 0).
"""

from __future__ import annotations

# Deferred imports: METEOR and SPICE (subprocess, threading, tempfile) load when they are asked for; `fsgr score
# --metrics bleu,rouge,cider` never starts Java and does not pay for them (~8 ms of its start-up).

from collections.abc import Hashable, Iterable, Mapping, Sequence

from fsgr.errors import DataError, format_ids
from fsgr.metrics.bleu import bleu_from_stats, bleu_image_stats
from fsgr.metrics.cider import corpus_cider_d
from fsgr.metrics.java import MetricError, MetricUnavailable
from fsgr.metrics.ngrams import encode_corpus
from fsgr.metrics.resample import PerImage
from fsgr.metrics.rouge import corpus_rouge_l
from fsgr.metrics.tokenizer import ptb_tokenize

# metric name (as --metrics takes it) -> result keys
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "bleu": ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"),
    "meteor": ("METEOR",),
    "rouge": ("ROUGE-L",),
    "cider": ("CIDEr",),
    "spice": ("SPICE",),
}
ALL_METRICS = tuple(METRIC_KEYS)
KEY_ORDER = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")


class Scores(dict):
    """The scores (`{"BLEU-1": ..., "CIDEr": ...}`) plus `unavailable`: metric key -> why it could not run."""

    def __init__(self, values=(), unavailable: Mapping[str, str] | None = None):
        super().__init__(values)
        self.unavailable: dict[str, str] = dict(unavailable or {})


METRIC_ALIASES = {"rouge-l": "rouge", "rouge_l": "rouge", "cider-d": "cider", "bleu-4": "bleu"}


def parse_metrics(metrics: str | Iterable[str] | None) -> list[str]:
    if metrics is None:
        return list(ALL_METRICS)
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [n.strip().lower() for n in names if n.strip()]
    names = [METRIC_ALIASES.get(n, n) for n in names]
    unknown = [n for n in names if n not in METRIC_KEYS]
    if unknown or not names:
        raise DataError(f"unknown metric(s) {unknown or names}: choose from {', '.join(ALL_METRICS)}")
    return list(dict.fromkeys(names))


def validate(refs: Mapping[Hashable, Sequence[str]], preds: Mapping[Hashable, str]) -> None:
    """DataError naming the ids: predictions without references, references without predictions, images with no
    or empty reference captions, captions that are not text. (An empty prediction is legal and scores 0.)"""
    no_refs = [i for i in preds if i not in refs]
    if no_refs:
        raise DataError(f"predictions for images without references: {format_ids(no_refs)}")
    no_preds = [i for i in refs if i not in preds]
    if no_preds:
        raise DataError(f"references for images without a prediction: {format_ids(no_preds)}")
    bad_type = [i for i, p in preds.items() if not isinstance(p, str)]
    if bad_type:
        raise DataError(f"predictions that are not strings for images {format_ids(bad_type)}")
    not_lists = [i for i, rs in refs.items() if isinstance(rs, str) or not isinstance(rs, Sequence)]
    if not_lists:
        raise DataError(f"references must be a list of captions per image; not for images {format_ids(not_lists)}")
    empty = [i for i, rs in refs.items() if len(rs) == 0 or any(not isinstance(r, str) or not r.strip() for r in rs)]
    if empty:
        raise DataError(f"empty reference captions (or none) for images {format_ids(empty)}")


def tokenize_groups(groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """PTB-tokenised captions, group by group (one tokenizer call for the whole corpus, as pycocoevalcap makes)."""
    flat = iter(ptb_tokenize([c for group in groups for c in group]))
    return [[next(flat) for _ in group] for group in groups]


def tokenize_refs(refs: Mapping[Hashable, Sequence[str]]) -> tuple[list, list[list[str]]]:
    """(image ids in `refs` order, the PTB-tokenised references of each)."""
    image_ids = list(refs)
    return image_ids, tokenize_groups([refs[i] for i in image_ids])


def score(refs: Mapping[Hashable, Sequence[str]], preds: Mapping[Hashable, str],
          metrics: str | Iterable[str] | None = None) -> Scores:
    """COCO caption metrics of `preds` (one raw caption per image id) against `refs` (raw captions per image id).

    Returns a `Scores` dict with keys among BLEU-1..BLEU-4, METEOR, ROUGE-L, CIDEr, SPICE; metrics that cannot
    run here (no Java, no pycocoevalcap, no SPICE models) are absent and explained in `.unavailable`.
    """
    names = parse_metrics(metrics)
    validate(refs, preds)

    image_ids, ref_tok = tokenize_refs(refs)
    cand_tok = ptb_tokenize([preds[i] for i in image_ids])
    return score_tokenized(image_ids, ref_tok, cand_tok, names)


def score_tokenized(image_ids: list, ref_tok: list[list[str]], cand_tok: list[str],
                    metrics: Iterable[str], per_image: dict | None = None, tolerate_failures: bool = False,
                    java_timeout: float | None = None) -> Scores:
    """The metrics of already PTB-tokenised text (what pycocoevalcap's scorers receive).

    `per_image`, when given, is filled with metric name -> `fsgr.metrics.resample.PerImage`: the per-image
    statistics the corpus values are made of (what `fsgr.metrics.compare` resamples). `tolerate_failures`: a Java
    metric whose process fails (crash, time-out, broken pipe) goes to `.unavailable` with its reason instead of
    raising (validation during training: an evaluation fault must not cost the epoch). `java_timeout`: seconds a
    METEOR or SPICE run may take before it is killed (None: their own limits, 30 and 60 minutes)."""
    limit = {} if java_timeout is None else {"timeout": float(java_timeout)}
    failures = (MetricUnavailable, MetricError, OSError) if tolerate_failures else (MetricUnavailable,)

    names = parse_metrics(list(metrics))
    out = Scores()
    rows = None
    if "bleu" in names or "cider" in names or "rouge" in names:
        rows = encode_corpus(ref_tok, cand_tok)
    if "bleu" in names:
        stats = bleu_image_stats(ref_tok, cand_tok, rows=rows)
        for key, value in zip(METRIC_KEYS["bleu"], bleu_from_stats(stats.sum(axis=0))):
            out[key] = value
        if per_image is not None:
            per_image["bleu"] = PerImage.bleu(stats)
    if "meteor" in names:
        from fsgr.metrics.meteor import corpus_meteor

        try:
            out["METEOR"], values = corpus_meteor(ref_tok, cand_tok, image_ids=image_ids, **limit)
            if per_image is not None:
                per_image["meteor"] = PerImage.mean("METEOR", values, exact=False)
        except failures as exc:
            out.unavailable["METEOR"] = _reason(exc)
    if "rouge" in names:
        out["ROUGE-L"], values = corpus_rouge_l(ref_tok, cand_tok, rows=rows)
        if per_image is not None:
            per_image["rouge"] = PerImage.mean("ROUGE-L", values)
    if "cider" in names:
        out["CIDEr"], values = corpus_cider_d(ref_tok, cand_tok, rows=rows)
        if per_image is not None:
            per_image["cider"] = PerImage.mean("CIDEr", values, exact=False)
    if "spice" in names:
        from fsgr.metrics.spice import corpus_spice

        try:
            out["SPICE"], values = corpus_spice(image_ids, ref_tok, cand_tok, **limit)
            if per_image is not None:
                per_image["spice"] = PerImage.mean("SPICE", values)
        except failures as exc:
            out.unavailable["SPICE"] = _reason(exc)
    ordered = Scores({k: out[k] for k in KEY_ORDER if k in out}, out.unavailable)
    return ordered


def _reason(exc: Exception) -> str:
    """Why a metric has no value: MetricUnavailable's own reason, or "failed: ..." for a process that failed."""
    return str(exc) if isinstance(exc, MetricUnavailable) else f"failed: {' '.join(str(exc).split())}"
