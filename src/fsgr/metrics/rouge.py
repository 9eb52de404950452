"""ROUGE-L (beta 1.2) exactly as pycocoevalcap's Rouge: per image, the best LCS precision and the best LCS recall
over the references (taken separately), combined as an F-measure; the corpus score is the mean over images.

Tokens come from `str.split(" ")`, as in the toolkit (so an empty caption is one empty token). The longest common
subsequence uses Hyyrö's bit-parallel algorithm: one Python integer operation per reference word.
"""

from __future__ import annotations

import numpy as np

BETA = 1.2


def _masks(tokens: list[str]) -> dict[str, int]:
    masks: dict[str, int] = {}
    for i, t in enumerate(tokens):
        masks[t] = masks.get(t, 0) | (1 << i)
    return masks


def lcs_length(masks: dict[str, int], m: int, other: list[str]) -> int:
    """Length of the longest common subsequence of the m tokens behind `masks` and `other`."""
    full = (1 << m) - 1
    v = full
    get = masks.get
    for t in other:
        match = get(t)
        if match:
            u = v & match
            v = ((v + u) | (v - u)) & full
    return m - v.bit_count()


def rouge_l_image(cand: str, refs: list[str], beta: float = BETA) -> float:
    token_c = cand.split(" ")
    masks, m = _masks(token_c), len(token_c)
    prec_max = rec_max = 0.0
    for ref in refs:
        token_r = ref.split(" ")
        lcs = lcs_length(masks, m, token_r)
        prec = lcs / float(m)
        rec = lcs / float(len(token_r))
        if prec > prec_max:
            prec_max = prec
        if rec > rec_max:
            rec_max = rec
    if prec_max != 0 and rec_max != 0:
        return ((1 + beta ** 2) * prec_max * rec_max) / float(rec_max + beta ** 2 * prec_max)
    return 0.0


def corpus_rouge_l(refs: list[list[str]], cands: list[str]) -> tuple[float, np.ndarray]:
    scores = np.array([rouge_l_image(c, r) for c, r in zip(cands, refs, strict=True)], dtype=np.float64)
    return float(np.mean(scores)) if len(scores) else 0.0, scores
