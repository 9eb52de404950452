"""ROUGE-L (beta 1.2) exactly as pycocoevalcap's Rouge: per image, the best LCS precision and the best LCS recall
over the references (taken separately), combined as an F-measure; the corpus score is the mean over images.

Tokens come from `str.split(" ")`, as in the toolkit (so an empty caption is one empty token). With the n-gram
table's word ids (`rows`) every (candidate, reference) pair's longest common subsequence is found at once: by the
dynamic programme in C where `fsgr.metrics.speedups` is built, else by Hyyrö's bit-parallel algorithm in numpy
uint64 words (candidates up to 63 words). Otherwise, and for captions whose `split(" ")` is not their `split()`
(empty, doubled spaces), the bit-parallel algorithm runs in Python, one integer operation per reference word.
"""

from __future__ import annotations

import re

import numpy as np

from fsgr.metrics import speedups
from fsgr.metrics.ngrams import find_sorted

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


def corpus_rouge_l(refs: list[list[str]], cands: list[str], rows=None) -> tuple[float, np.ndarray]:
    """ROUGE-L of tokenised candidates (one per image). `rows`: the corpus's `fsgr.metrics.ngrams.CorpusRows`
    (with word ids) for the vectorised LCS; the scores are the same either way, bit for bit."""
    if rows is None or rows.words is None:
        scores = np.array([rouge_l_image(c, r) for c, r in zip(cands, refs, strict=True)], dtype=np.float64)
    else:
        scores = _rouge_l_vectorised(refs, cands, rows)
    return float(np.mean(scores)) if len(scores) else 0.0, scores


MAX_WORDS = 63  # v + u stays below 2**64 for candidates of up to 63 words
_OTHER_SPACE = re.compile(r"[^\S ]")  # white space other than " ": str.split() splits there, split(" ") does not
_ASCII_OTHER_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"  # (the ASCII ones)


_BYTE_BITS = np.array([bin(b).count("1") for b in range(256)], dtype=np.int64)


def popcount(v: np.ndarray) -> np.ndarray:
    """[N] int64 set bits of uint64 words (numpy >= 2 has it built in; older numpy: a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(v).astype(np.int64)
    return _BYTE_BITS[np.ascontiguousarray(v).view(np.uint8)].reshape(-1, 8).sum(axis=1)


def _odd_spacing(sentences: list[str], n_words: np.ndarray) -> np.ndarray:
    """[S] True where split(" ") is not split(): empty, leading/trailing/doubled spaces, other white space."""
    joined = " ".join(sentences)
    # Usually none: ASCII without other white space, and then exactly one space between words everywhere.
    if joined.isascii() and not any(ch in joined for ch in _ASCII_OTHER_SPACE) and \
            joined.count(" ") == int(n_words.sum()) - 1:
        return np.zeros(len(sentences), dtype=bool)
    odd = np.fromiter((s.count(" ") for s in sentences), np.int64, len(sentences)) != n_words - 1
    odd |= n_words == 0
    odd |= np.fromiter((_OTHER_SPACE.search(s) is not None for s in sentences), bool, len(sentences))
    return odd


def _rouge_l_vectorised(refs: list[list[str]], cands: list[str], rows, beta: float = BETA) -> np.ndarray:
    n_images = len(cands)
    ref_len, cand_len = rows.ref_lengths, rows.cand_lengths
    n_ref = len(ref_len)
    # images done in Python: a caption whose split(" ") differs from split() (empty, doubled or outer spaces,
    # tabs): the C table marks them as it splits, otherwise they are searched here
    if rows.odd_spacing is not None:
        odd_refs, odd = rows.odd_spacing[:n_ref], rows.odd_spacing[n_ref:].copy()
    else:
        odd_refs, odd = _odd_spacing([r for rs in refs for r in rs], ref_len), _odd_spacing(cands, cand_len)
    odd |= np.bincount(rows.ref_image, weights=odd_refs, minlength=n_images) > 0
    if speedups.lcs_lengths is not None:  # the dynamic programme in C, any length
        lcs = speedups.lcs_lengths(rows.words, ref_len, cand_len, rows.n_refs)
        lcs = np.frombuffer(lcs, dtype=np.int64)
    else:
        odd |= cand_len > MAX_WORDS  # (one 64-bit word per candidate)
        lcs = _bit_parallel_lcs(rows)
    m = cand_len[rows.ref_image]
    prec = lcs / np.maximum(m, 1).astype(np.float64)
    rec = lcs / np.maximum(ref_len, 1).astype(np.float64)
    prec_max = np.maximum.reduceat(prec, rows.first_ref) if n_ref else np.zeros(n_images)
    rec_max = np.maximum.reduceat(rec, rows.first_ref) if n_ref else np.zeros(n_images)
    ok = (prec_max != 0) & (rec_max != 0)
    scores = np.zeros(n_images)
    scores[ok] = ((1 + beta ** 2) * prec_max[ok] * rec_max[ok]) / (rec_max[ok] + beta ** 2 * prec_max[ok])
    for i in np.flatnonzero(odd).tolist():
        scores[i] = rouge_l_image(cands[i], refs[i], beta)
    return scores


def _bit_parallel_lcs(rows) -> np.ndarray:
    """[R] each reference's LCS with its image's candidate, all at once in uint64 words (Hyyro's algorithm; a
    candidate's positions past MAX_WORDS are left out: the caller scores those images in Python)."""
    ref_len, cand_len = rows.ref_lengths, rows.cand_lengths
    n_images, n_ref = len(cand_len), len(ref_len)
    words = rows.words
    n_ref_words = int(ref_len.sum())
    ref_words, cand_words = words[:n_ref_words], words[n_ref_words:]
    vocab = np.int64(int(words.max()) + 1 if len(words) else 1)
    # candidate (image, word) -> bit mask of the word's positions in the candidate
    cand_image = np.repeat(np.arange(n_images, dtype=np.int64), cand_len)
    cand_pos = np.arange(len(cand_words), dtype=np.int64) - np.repeat(np.cumsum(cand_len) - cand_len, cand_len)
    short = cand_pos < MAX_WORDS
    key = cand_image[short] * vocab + cand_words[short]
    bits = np.left_shift(np.uint64(1), cand_pos[short].astype(np.uint64))
    order = np.argsort(key, kind="stable")
    key, bits = key[order], bits[order]
    first = np.flatnonzero(np.append(True, key[1:] != key[:-1])) if len(key) else np.zeros(0, np.int64)
    mask_key = key[first]
    mask = np.bitwise_or.reduceat(bits, first) if len(first) else np.zeros(0, np.uint64)

    # each reference word's match mask, laid out [reference, position]
    ref_of_word = np.repeat(np.arange(n_ref, dtype=np.int64), ref_len)
    word_pos = np.arange(n_ref_words, dtype=np.int64) - np.repeat(np.cumsum(ref_len) - ref_len, ref_len)
    look = rows.ref_image[ref_of_word] * vocab + ref_words
    idx, hit = find_sorted(mask_key, look)
    width = int(ref_len.max()) if n_ref else 0
    match = np.zeros((n_ref, max(width, 1)), dtype=np.uint64)
    match[ref_of_word[hit], word_pos[hit]] = mask[idx[hit]]

    m = cand_len[rows.ref_image]
    full = np.left_shift(np.uint64(1), np.minimum(m, MAX_WORDS).astype(np.uint64)) - np.uint64(1)
    v = full.copy()
    for t in range(width):
        u = v & match[:, t]
        v = ((v + u) | (v - u)) & full
    return m - popcount(v)
