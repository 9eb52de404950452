"""Compare captioning systems on the same images: each system's scores (exactly `score`'s), and for each system
against the first (the baseline) the difference per metric with a paired-bootstrap 95% confidence interval and a
p-value, resampling images (`fsgr.metrics.resample` says how each metric is recomputed on a sample).

    from fsgr.metrics.compare import compare_systems, paired_bootstrap
    result = compare_systems(refs, {"xe": preds_xe, "scst": preds_scst}, metrics="bleu,cider", samples=1000, seed=0)
    result["systems"]["scst"]["CIDEr"], result["comparisons"][0]    # {"baseline", "system", "metric", "delta", ...}
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

from fsgr.errors import DataError
from fsgr.metrics.cider import corpus_cider_d
from fsgr.metrics.diagnostics import caption_diagnostics
from fsgr.metrics.java import MetricUnavailable
from fsgr.metrics.resample import PerImage, bootstrap_deltas, resample_counts, summarize
from fsgr.metrics.score import Scores, parse_metrics, score_tokenized, tokenize_refs, validate
from fsgr.metrics.signature import signature
from fsgr.metrics.tokenizer import ptb_tokenize


class ScoredSystem:
    """One system scored against tokenised references: its scores, per-image statistics and tokenised captions."""

    def __init__(self, scores: Scores, per_image: dict[str, PerImage], captions: list[str], tokens: list[str]):
        self.scores, self.per_image, self.captions, self.tokens = scores, per_image, captions, tokens


def score_system(image_ids: list, ref_tok: list[list[str]], preds: Mapping[Hashable, str],
                 names: list[str], extra_metrics: Sequence = (), tolerate_failures: bool = False) -> ScoredSystem:
    """`score`'s values (same tokenisation, same code) plus each extra metric's, with their per-image statistics.
    `tolerate_failures`: see `fsgr.metrics.score.score_tokenized` (a crashed METEOR/SPICE is reported, the rest kept).

    An extra metric is a callable (image_ids, captions) -> (scores dict, {name: PerImage}) that raises
    `fsgr.metrics.java.MetricUnavailable` when it cannot run (CLIPScore, CHAIR: built by the layers that have
    what they need)."""
    captions = [preds[i] for i in image_ids]
    tokens = ptb_tokenize(captions)
    per_image: dict[str, PerImage] = {}
    scores = score_tokenized(image_ids, ref_tok, tokens, names, per_image=per_image,
                             tolerate_failures=tolerate_failures) if names else Scores()
    for metric in extra_metrics:
        try:
            values, stats = metric(image_ids, captions)
        except MetricUnavailable as exc:
            for key in metric.keys:
                scores.unavailable[key] = str(exc)
            continue
        scores.update(values)
        per_image.update(stats)
    return ScoredSystem(scores, per_image, captions, tokens)


def check_same_images(refs: Mapping, systems: Mapping[str, Mapping]) -> None:
    """DataError naming the system and the ids when a system does not cover exactly the images of `refs`."""
    for name, preds in systems.items():
        try:
            validate(refs, preds)
        except DataError as exc:
            raise DataError(f"{name}: {exc}") from None


# the resampling matrix is samples x images float64: 10,000 samples of nocaps' 10,600 images take 0.85 GB, and a
# p-value's resolution is 1 / samples, so more than 10,000 buys nothing but memory
MAX_BOOTSTRAP_SAMPLES = 10_000


def check_bootstrap(samples: int, seed: int, seed_flag: str = "--seed") -> None:
    """DataError for a bootstrap sample count outside 1..MAX_BOOTSTRAP_SAMPLES or a negative seed (named as the
    command's flags name them)."""
    if not 1 <= samples <= MAX_BOOTSTRAP_SAMPLES:
        raise DataError(f"--bootstrap {samples}: give 1 to {MAX_BOOTSTRAP_SAMPLES:,} samples (1000 is usual; the "
                        f"resampling holds samples x images numbers in memory)")
    if seed < 0:
        raise DataError(f"{seed_flag} {seed}: a bootstrap seed is an integer >= 0")


def bootstrap_rows(a: ScoredSystem, b: ScoredSystem, counts: np.ndarray, baseline: str, system: str) -> list[dict]:
    """One comparison row per metric key both systems have: delta (b - a), CI, p-value."""
    rows = []
    for name, pa in a.per_image.items():
        pb = b.per_image.get(name)
        if pb is None:
            continue
        deltas = bootstrap_deltas(pa, pb, counts)
        for j, key in enumerate(pa.keys):
            if key not in a.scores or key not in b.scores:
                continue
            row = {"baseline": baseline, "system": system, "metric": key}
            row.update(summarize(b.scores[key] - a.scores[key], deltas[:, j]))
            row["exact_resampling"] = pa.exact
            rows.append(row)
    return rows


def paired_bootstrap(refs: Mapping[Hashable, Sequence[str]], system_a: Mapping[Hashable, str],
                     system_b: Mapping[Hashable, str], metrics: str | Iterable[str] | None = None,
                     samples: int = 1000, seed: int = 0, names: tuple[str, str] = ("A", "B")) -> list[dict]:
    """Paired bootstrap of system_b against system_a (the baseline) over the images of `refs`.

    Returns one dict per metric key: baseline, system (from `names`), metric, delta (b - a, the corpus scores'
    difference), ci_low, ci_high (95% percentile interval), p_value (two-sided), exact_resampling. Deterministic
    for a seed. Raises DataError when a system's images are not exactly those of `refs`.
    """
    result = compare_systems(refs, {names[0]: system_a, names[1]: system_b}, metrics, samples, seed,
                             diagnostics=False, top=0)
    return result["comparisons"]


def compare_systems(refs: Mapping[Hashable, Sequence[str]], systems: Mapping[str, Mapping[Hashable, str]],
                    metrics: str | Iterable[str] | None = None, samples: int = 1000, seed: int = 0,
                    diagnostics: bool = True, train_refs: Mapping[Hashable, Sequence[str]] | None = None,
                    top: int = 5, extra_metrics: Sequence = (), tolerate_failures: bool = False) -> dict:
    """Every system's scores and each system against the first (the baseline).

    Returns {"systems": {name: {metric: value}}, "comparisons": [{"baseline", "system", "metric", "delta",
    "ci_low", "ci_high", "p_value", "exact_resampling"}], "unavailable": {metric: reason}, "signature": str,
    "diagnostics": {name: {...}} (when asked), "largest_differences": {name: [...]} (the `top` images where the
    system's per-image CIDEr-D differs most from the baseline's, both captions)}. `extra_metrics`: see
    `score_system` (CLIPScore, CHAIR), as is `tolerate_failures`. `samples` is at most MAX_BOOTSTRAP_SAMPLES and
    `seed` >= 0, refused before any scoring.
    """

    if len(systems) < 1:
        raise DataError("compare: no systems")
    check_bootstrap(samples, seed)
    names = parse_metrics(metrics) if metrics != [] else []
    check_same_images(refs, systems)
    image_ids, ref_tok = tokenize_refs(refs)
    scored = {name: score_system(image_ids, ref_tok, preds, names, extra_metrics, tolerate_failures)
              for name, preds in systems.items()}
    counts = resample_counts(len(image_ids), samples, seed)
    system_names = list(scored)
    baseline = system_names[0]
    comparisons = []
    for name in system_names[1:]:
        comparisons.extend(bootstrap_rows(scored[baseline], scored[name], counts, baseline, name))
    unavailable: dict[str, str] = {}
    for s in scored.values():
        unavailable.update(s.scores.unavailable)
    out = {
        "systems": {name: dict(s.scores) for name, s in scored.items()},
        "comparisons": comparisons,
        "unavailable": unavailable,
        "signature": signature(refs, {name: systems[name] for name in system_names},
                               names + [m.name for m in extra_metrics],
                               extra={"bootstrap": f"paired,{samples},seed={seed}"}),
    }
    if diagnostics:
        train_tok = None
        if train_refs is not None:
            train_tok = set(ptb_tokenize([c for caps in train_refs.values() for c in caps]))
        out["diagnostics"] = {name: caption_diagnostics(s.tokens, train_tok) for name, s in scored.items()}
    if top > 0 and len(system_names) > 1:
        out["largest_differences"] = {
            name: largest_differences(image_ids, ref_tok, scored[baseline], scored[name], top)
            for name in system_names[1:]}
    return out


def largest_differences(image_ids: list, ref_tok: list[list[str]], a: ScoredSystem, b: ScoredSystem,
                        top: int) -> list[dict]:
    """The `top` images where b's per-image CIDEr-D is furthest from a's, with both raw captions."""
    def per_image_cider(s: ScoredSystem) -> np.ndarray:
        if "cider" in s.per_image:
            return s.per_image["cider"].stats[:, 0]
        return corpus_cider_d(ref_tok, s.tokens)[1]

    ca, cb = per_image_cider(a), per_image_cider(b)
    diff = cb - ca
    order = np.argsort(-np.abs(diff), kind="stable")[:top]
    return [{"image_id": image_ids[k], "cider_baseline": float(ca[k]), "cider_system": float(cb[k]),
             "delta": float(diff[k]), "baseline": a.captions[k], "system": b.captions[k]} for k in order]


__all__ = ["compare_systems", "paired_bootstrap"]
