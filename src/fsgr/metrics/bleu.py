"""BLEU-1..4 exactly as pycocoevalcap's BleuScorer computes the corpus score with option "closest".

Clipped n-gram matches and candidate n-gram counts are summed over the corpus, the reference length of each
candidate is the closest reference length (ties to the shorter), and the toolkit's smoothing constants are kept:
each precision is (matches + 1e-15) / (guesses + 1e-9), and the brevity penalty uses (c + 1e-15) / (r + 1e-9).
"""

from __future__ import annotations

import math

import numpy as np

from fsgr.metrics.ngrams import MAX_N, CorpusRows, encode_corpus

TINY = 1e-15
SMALL = 1e-9


def corpus_bleu(refs: list[list[str]], cands: list[str], n: int = MAX_N,
                rows: CorpusRows | None = None) -> list[float]:
    """BLEU-1..n of tokenised candidates (one per image) against their tokenised references."""
    return bleu_from_stats(bleu_image_stats(refs, cands, n, rows).sum(axis=0), n)


def bleu_image_stats(refs: list[list[str]], cands: list[str], n: int = MAX_N,
                     rows: CorpusRows | None = None) -> np.ndarray:
    """[I, 2n + 2] int64 per image: clipped matches of orders 1..n, candidate n-grams of orders 1..n, candidate
    length, closest reference length. Corpus BLEU is `bleu_from_stats` of their sum (over any multiset of images:
    what the paired bootstrap resamples)."""
    rows = encode_corpus(refs, cands, n) if rows is None else rows
    n_images = len(rows.n_refs)
    stats = np.zeros((n_images, 2 * n + 2), dtype=np.int64)
    for k, order in enumerate(rows.orders[:n]):
        # a candidate n-gram counts at most as often as in the one reference of its image that holds it most
        found = order.cand_group >= 0
        clipped = np.minimum(order.cand_count[found], order.group_max[order.cand_group[found]])
        stats[:, k] = np.bincount(order.cand_key[found] >> rows.id_bits, weights=clipped, minlength=n_images)

    testlen = rows.cand_lengths
    stats[:, n:2 * n] = np.maximum(testlen[:, None] - np.arange(n)[None, :], 0)
    stats[:, 2 * n] = testlen

    # closest reference length: min over refs of (|l - testlen|, l)
    ref_len = rows.ref_lengths
    key = np.abs(ref_len - testlen[rows.ref_image]) * np.int64(1 << 32) + ref_len
    if len(key):
        stats[:, 2 * n + 1] = np.minimum.reduceat(key, rows.first_ref) & np.int64((1 << 32) - 1)
    return stats


def bleu_from_stats(sums: np.ndarray, n: int = MAX_N) -> list[float]:
    """Corpus BLEU-1..n from summed `bleu_image_stats` (the toolkit's formula, constants included)."""
    correct, guess = sums[:n], sums[n:2 * n]
    total_test, total_ref = int(sums[2 * n]), int(sums[2 * n + 1])
    bleus = []
    bleu = 1.0
    for k in range(n):
        bleu *= float(int(correct[k]) + TINY) / (int(guess[k]) + SMALL)
        bleus.append(bleu ** (1.0 / (k + 1)))
    ratio = (total_test + TINY) / (total_ref + SMALL)
    if ratio < 1:
        for k in range(n):
            bleus[k] *= math.exp(1 - 1 / ratio)
    return bleus
