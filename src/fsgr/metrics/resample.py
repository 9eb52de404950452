"""Per-image statistics of a corpus metric and the paired bootstrap over images.

A corpus metric is a function of per-image statistics summed over the images: BLEU of its clipped matches, guesses
and lengths; a mean metric (ROUGE-L, SPICE, CLIPScore, ...) of its per-image values. A bootstrap sample draws the
images again with replacement; each image's statistics then count as many times as it was drawn, so the sample's
corpus value is `combine(counts @ stats)`. Where that is the metric recomputed on the sampled images, `exact` is
True. CIDEr-D and METEOR are not decomposable this way (CIDEr-D's document frequencies come from the references
being scored, METEOR aggregates alignment statistics the jar does not expose per image): their samples are means of
per-image scores computed once on the whole set (`exact` False; docs/metrics.md says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fsgr.metrics.bleu import bleu_from_stats
from fsgr.metrics.ngrams import MAX_N


@dataclass
class PerImage:
    keys: tuple[str, ...]  # the result keys this metric produces
    stats: np.ndarray  # [I, k] float64 per-image statistics
    combine: Callable[[np.ndarray, int], np.ndarray]  # ([B, k] summed statistics, images per sample) -> [B, keys]
    exact: bool  # combine(sum over a resample) is the metric recomputed on the resampled images

    @staticmethod
    def mean(key: str, values: Sequence[float], exact: bool = True) -> "PerImage":
        return PerImage((key,), np.asarray(values, dtype=np.float64).reshape(-1, 1), _mean, exact)

    @staticmethod
    def ratio(key: str, numerator: Sequence[float], denominator: Sequence[float]) -> "PerImage":
        """sum(numerator) / sum(denominator) over the images (e.g. CHAIR-i)."""
        stats = np.stack([np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)], axis=1)
        return PerImage((key,), stats, _ratio, True)

    @staticmethod
    def bleu(stats: np.ndarray) -> "PerImage":
        return PerImage(tuple(f"BLEU-{k}" for k in range(1, MAX_N + 1)), stats.astype(np.float64), _bleu, True)


def _mean(sums: np.ndarray, n_images: int) -> np.ndarray:
    return sums / n_images


def _ratio(sums: np.ndarray, n_images: int) -> np.ndarray:
    den = sums[:, 1:2]
    return np.divide(sums[:, 0:1], den, out=np.zeros_like(den), where=den != 0)


def _bleu(sums: np.ndarray, n_images: int) -> np.ndarray:
    """`fsgr.metrics.bleu.bleu_from_stats` of each row of summed statistics [B, 2n + 2] (the very formula, so a
    sample's BLEU is what scoring those images gives)."""
    return np.array([bleu_from_stats(row) for row in sums], dtype=np.float64).reshape(len(sums), -1)


def resample_counts(n_images: int, samples: int, seed: int) -> np.ndarray:
    """[samples, n_images] how often each image is drawn in each bootstrap sample (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    counts = np.empty((samples, n_images), dtype=np.float64)
    chunk = max(1, 2_000_000 // max(n_images, 1))
    for lo in range(0, samples, chunk):
        hi = min(samples, lo + chunk)
        draws = rng.integers(0, n_images, size=(hi - lo, n_images))
        flat = (np.arange(hi - lo)[:, None] * n_images + draws).ravel()
        counts[lo:hi] = np.bincount(flat, minlength=(hi - lo) * n_images).reshape(hi - lo, n_images)
    return counts


def bootstrap_deltas(a: PerImage, b: PerImage, counts: np.ndarray) -> np.ndarray:
    """[samples, keys] metric(b) - metric(a) on each bootstrap sample (the same images for both: paired)."""
    n_images = a.stats.shape[0]
    return b.combine(counts @ b.stats, n_images) - a.combine(counts @ a.stats, n_images)


def summarize(delta: float, deltas: np.ndarray) -> dict:
    """95% percentile interval of the bootstrap deltas, and the two-sided p-value of "no difference": the share of
    samples whose delta, centred on the bootstrap mean (the null), is at least as far from 0 as the observed one
    (sacreBLEU's paired bootstrap; +1 in numerator and denominator so that p is never 0)."""
    low, high = np.percentile(deltas, [2.5, 97.5])
    centred = np.abs(deltas - deltas.mean())
    p = (1 + int(np.sum(centred >= abs(delta) - 1e-12))) / (len(deltas) + 1)
    return {"delta": float(delta), "ci_low": float(low), "ci_high": float(high), "p_value": float(p)}


# ---- paired t over a few independent units (seeds) -----------------------------------------------------------------


def _t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with an integer number of degrees of freedom: the closed forms of Abramowitz &
    Stegun 26.7.3 (no scipy needed; exact up to float rounding)."""
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        term, total = s * c, 0.0                 # the odd series: sin(cos + 2/3 cos^3 + 2*4/(3*5) cos^5 + ...)
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c * c * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + total)
    term, total = 1.0, 0.0                       # the even series: sin(1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
    for k in range(df // 2):
        total += term
        term *= c * c * (2 * k + 1) / (2 * k + 2)
    return s * total


def t_quantile(level: float, df: int) -> float:
    """t such that P(|T| <= t) = level (two-sided), by bisection on `_t_central`."""
    lo, hi = 0.0, 1.0
    while _t_central(hi, df) < level:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_central(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


def paired_t(deltas: Sequence[float], level: float = 0.95) -> dict:
    """Mean of paired differences (one per independent unit, e.g. a training seed), its two-sided Student-t interval
    and the p-value of "mean 0". With one unit there is no interval (None). Identical differences give a
    zero-width interval and p 0 (or 1 when they are all 0)."""
    d = np.asarray(deltas, dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None, "p_value": None, "n": n}
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "p_value": 1.0 if mean == 0 else 0.0, "n": n}
    half = t_quantile(level, n - 1) * se
    p = 1 - _t_central(mean / se, n - 1)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "p_value": max(p, 0.0), "n": n}
