"""CIDEr-D exactly as pycocoevalcap's CiderScorer (which is CIDEr-D): n = 1..4, tf-idf vectors with
idf = log(#images) - log(max(1, df)), clipped matches min(candidate, reference) * reference, a Gaussian length
penalty exp(-delta^2 / (2 sigma^2)) with sigma = 6, averaged over n and references, times 10.

Two quirks of the toolkit are kept because they are the official numbers: the "length" in the penalty is the
number of bigrams (len - 1), not of words; and the document frequencies and log(#images) come from the references
being scored (`corpus_cider_d`) — or, for the SCST reward, from the training references (`fsgr.metrics.reward`).
Both weigh their n-grams with `TfIdf` (the one place of that arithmetic) and compute the penalty with the C library's
pow, as the toolkit does (`length_penalty`); sums are added in the toolkit's order, so the values are its own to the
last bit (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fsgr.metrics.ngrams import MAX_N, CorpusRows, NgramRows, count_runs, encode_corpus, find_sorted

SIGMA = 6.0


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + l) for each (s, l), without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(np.asarray(starts, dtype=np.int64), lengths) + (np.arange(total, dtype=np.int64) - offsets)


def norms(rows: NgramRows, weights: np.ndarray, n_sentences: int, n: int = MAX_N) -> np.ndarray:
    """[S, n] Euclidean norm of each sentence's tf-idf vector, per n-gram order."""
    sq = np.bincount(rows.sentence * n + rows.order - 1, weights=weights * weights, minlength=n_sentences * n)
    return np.sqrt(sq[: n_sentences * n].reshape(n_sentences, n))


def pair_similarities(cand_rows: NgramRows, cand_w: np.ndarray, cand_norm: np.ndarray, cand_len: np.ndarray,
                      ref_rows: NgramRows, ref_w: np.ndarray, ref_norm: np.ndarray, ref_len: np.ndarray,
                      ref_row_start: np.ndarray, pair_cand: np.ndarray, pair_ref: np.ndarray,
                      width: int, sigma: float = SIGMA, n: int = MAX_N) -> np.ndarray:
    """[P, n] CIDEr-D similarity of each (candidate, reference) pair (the toolkit's `sim`).

    ref_row_start[r]..ref_row_start[r+1] are reference r's rows; candidate rows are sorted by (sentence, n-gram).
    cand_len/ref_len are the toolkit's lengths (bigram counts).
    """
    n_pairs = len(pair_cand)
    ref_count = ref_row_start[pair_ref + 1] - ref_row_start[pair_ref]
    rows = ranges(ref_row_start[pair_ref], ref_count)
    row_pair = np.repeat(np.arange(n_pairs, dtype=np.int64), ref_count)
    cand_key = cand_rows.sentence * np.int64(width) + cand_rows.ngram
    key = pair_cand[row_pair] * np.int64(width) + ref_rows.ngram[rows]
    val = np.zeros(n_pairs * n)
    if len(cand_key) and len(key):
        pos, hit = find_sorted(cand_key, key)
        vh = cand_w[pos[hit]]
        vr = ref_w[rows[hit]]
        slot = row_pair[hit] * n + ref_rows.order[rows[hit]] - 1
        # float64 always: bincount of an empty `slot` (no n-gram matched, e.g. "zzz") returns int64 and the
        # in-place float ops below would then fail to cast
        val = np.bincount(slot, weights=np.minimum(vh, vr) * vr,
                          minlength=n_pairs * n)[: n_pairs * n].astype(np.float64, copy=False)
    return normalised(val.reshape(n_pairs, n), cand_norm[pair_cand], ref_norm[pair_ref], cand_len[pair_cand],
                      ref_len[pair_ref], sigma)


@dataclass
class TfIdf:
    """CIDEr-D's document frequencies and tf-idf weights, as the toolkit's CiderScorer computes them: an n-gram's
    weight in a sentence is its count there times log(#documents) - log(max(1, df)), df = the number of documents
    (images, or captions) whose references hold it. The one place of this arithmetic: the corpus scorer
    (`corpus_cider_d`) and the SCST reward (`fsgr.metrics.reward`) both weigh their n-grams here."""

    log_df: np.ndarray  # [width] log(max(1, df)) of each n-gram id
    log_documents: float  # log(#documents) (the toolkit's `ref_len`)

    @staticmethod
    def count(document: np.ndarray, ngram: np.ndarray, width: int, n_documents: int) -> "TfIdf":
        """From rows (document, n-gram id < width), repeats allowed: df = the distinct documents of each n-gram."""
        pairs, _ = count_runs(document * np.int64(width) + ngram)  # each distinct (document, n-gram) once
        return TfIdf.from_distinct(pairs % width, width, n_documents)

    @staticmethod
    def from_distinct(ngram: np.ndarray, width: int, n_documents: int) -> "TfIdf":
        """From the n-gram id of each distinct (document, n-gram) pair."""
        df = np.bincount(ngram, minlength=width).astype(np.float64)
        return TfIdf(np.log(np.maximum(1.0, df)), float(np.log(float(n_documents))))

    def weights(self, count: np.ndarray, ngram: np.ndarray) -> np.ndarray:
        """The tf-idf weight of rows (count, n-gram id); an id past the counted ones (an n-gram no document holds,
        `NgramVocab.encode`'s own ids) has df 0, as in the toolkit's defaultdict."""
        seen = ngram < len(self.log_df)
        if seen.all():  # (the corpus scorer: every n-gram of the evaluation counted)
            return count * (self.log_documents - self.log_df[ngram])
        log_df = np.zeros(len(ngram))
        log_df[seen] = self.log_df[ngram[seen]]
        return count * (self.log_documents - log_df)


def bigram_lengths(word_lengths: np.ndarray) -> np.ndarray:
    """The toolkit's CIDEr "length": the number of bigrams of a sentence."""
    return np.maximum(word_lengths - 1, 0)


def normalised(val: np.ndarray, cand_norm: np.ndarray, ref_norm: np.ndarray, cand_len: np.ndarray,
               ref_len: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """The rest of the toolkit's `sim` for [P, n] dot products of (candidate, reference) pairs: divided by the two
    norms where both are non-zero, times the Gaussian penalty on the difference of their (bigram) lengths."""
    denom = cand_norm * ref_norm
    ok = denom != 0
    val[ok] = val[ok] / denom[ok]
    val *= length_penalty(cand_len, ref_len, sigma)[:, None]
    return val


def length_penalty(cand_len: np.ndarray, ref_len: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """The Gaussian penalty on the difference of (bigram) lengths, exp(-delta^2 / (2 sigma^2)), computed as the
    toolkit computes it: `np.e ** x` on Python floats, i.e. the C library's pow, once per distinct |delta|. (numpy's
    vectorised power differs from it in the last bit for some exponents on some CPUs: 7 of the deltas 0..59 on an
    AVX-512 machine.)"""
    delta = np.abs(np.asarray(cand_len, dtype=np.int64) - np.asarray(ref_len, dtype=np.int64))
    by_delta = [np.e ** (-(float(d) ** 2) / (2 * sigma ** 2)) for d in range(int(delta.max(initial=0)) + 1)]
    return np.array(by_delta, dtype=np.float64)[delta]


def corpus_cider_d(refs: list[list[str]], cands: list[str], sigma: float = SIGMA, n: int = MAX_N,
                   rows: CorpusRows | None = None) -> tuple[float, np.ndarray]:
    """CIDEr-D of tokenised candidates (one per image); document frequencies from these references."""
    rows = encode_corpus(refs, cands, n) if rows is None else rows
    n_images = len(rows.n_refs)
    if n_images == 0:
        return 0.0, np.zeros(0)
    n_ref_sent, id_bits = len(rows.ref_lengths), rows.id_bits
    val = np.zeros((n_ref_sent, n))  # [R, n] sum over shared n-grams of min(candidate, reference) * reference
    ref_norm_sq = np.zeros((n_ref_sent, n))
    cand_norm_sq = np.zeros((n_images, n))
    for k, order in enumerate(rows.orders[:n]):
        # document frequency: the images whose references hold the n-gram (one group per image and n-gram);
        # this order's ids are first..first + width - 1
        first, width = rows.offsets[k], rows.offsets[k + 1] - rows.offsets[k]
        tf_idf = TfIdf.from_distinct((order.group_key & ((1 << id_bits) - 1)) - first, width, n_images)
        ref_w = tf_idf.weights(order.ref_count, order.ref_ngram - first)
        cand_image, cand_ngram = order.cand_key >> id_bits, order.cand_key & ((1 << id_bits) - 1)
        cand_w = tf_idf.weights(order.cand_count, cand_ngram - first)
        # (bincount adds in array order: each reference's norm in the toolkit's order, and so each product below)
        ref_norm_sq[:, k] = np.bincount(order.ref_sentence[order.ref_order], weights=(ref_w * ref_w)[order.ref_order],
                                        minlength=n_ref_sent)
        cand_norm_sq[:, k] = np.bincount(cand_image, weights=cand_w * cand_w, minlength=n_images)
        # each candidate n-gram against the rows of its group: the references of its image that hold it
        found = np.flatnonzero(order.cand_group >= 0)
        group = order.cand_group[found]
        hits = order.group_start[group + 1] - order.group_start[group]
        ref_row = ranges(order.group_start[group], hits)
        vh, vr = np.repeat(cand_w[found], hits), ref_w[ref_row]
        val[:, k] = np.bincount(order.ref_sentence[ref_row], weights=np.minimum(vh, vr) * vr, minlength=n_ref_sent)
    val = normalised(val, np.sqrt(cand_norm_sq)[rows.ref_image], np.sqrt(ref_norm_sq),
                     bigram_lengths(rows.cand_lengths)[rows.ref_image], bigram_lengths(rows.ref_lengths), sigma)
    summed = np.stack([np.bincount(rows.ref_image, weights=val[:, k], minlength=n_images) for k in range(n)], axis=1)
    scores = summed.mean(axis=1) / rows.n_refs * 10.0
    return float(np.mean(scores)), scores
