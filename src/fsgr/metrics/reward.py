"""The CIDEr-D reward for self-critical sequence training, without Java and without a subprocess.

`CiderDReward(refs)` PTB-tokenises the training references once and precomputes, once, the document frequencies
(number of training images whose references hold each n-gram), the log of the number of training images (the
`ref_len` term: pycocoevalcap's CiderScorer uses `np.log(float(len(self.crefs)))`, the log of the number of images
being scored; M2-style CiderD rewards fix it to the training set, as here), and the tf-idf vectors and norms of
every reference. A call scores a batch of candidates against their images' references with array operations.

The value for a candidate is exactly pycocoevalcap's CiderScorer per-image CIDEr-D (n = 4, sigma = 6, clipped,
x10) computed with those document frequencies and that `ref_len`. Candidates are space-joined words already in the
PTB token space (what the decoder emits, from a vocabulary built with `ptb_tokenize`); they are split on white
space, not re-tokenised. An empty candidate scores 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fsgr.errors import DataError, format_ids
from fsgr.metrics.cider import SIGMA, TfIdf, bigram_lengths, norms, pair_similarities, ranges
from fsgr.metrics.ngrams import MAX_N, NgramVocab, first_references, reference_images
from fsgr.metrics.tokenizer import ptb_tokenize


class CiderDReward:
    """CIDEr-D of candidates against their image's training references, document frequencies fixed at build."""

    def __init__(self, refs: Mapping[int, Sequence[str]], sigma: float = SIGMA, n: int = MAX_N,
                 tokenized: bool = False, documents: str = "images") -> None:
        """documents: what the document frequencies count. "images": the images whose references hold an n-gram,
        ref_len = log(#images) (pycocoevalcap's CiderScorer over the training set); "captions": the training
        captions that hold it, ref_len = log(#captions) (M2/RSTNet's `Cider(PTBTokenizer.tokenize(captions))`)."""
        if documents not in ("images", "captions"):
            raise ValueError(f"documents must be 'images' or 'captions', got {documents!r}")
        if not refs:
            raise DataError("CiderDReward: no reference captions given")
        empty = [i for i, rs in refs.items() if len(rs) == 0]
        if empty:
            raise DataError(f"CiderDReward: images without reference captions: {format_ids(empty)}")
        self.sigma, self.n = sigma, n
        self.image_ids = list(refs)
        self.index = {image_id: k for k, image_id in enumerate(self.image_ids)}
        n_refs = np.array([len(refs[i]) for i in self.image_ids], dtype=np.int64)
        flat = [c for i in self.image_ids for c in refs[i]]
        sentences = flat if tokenized else ptb_tokenize(flat)

        self.vocab = NgramVocab(sentences, n)
        rows = self.vocab.own_rows()
        ref_image = reference_images(n_refs)
        by_image = documents == "images"
        self.tf_idf = TfIdf.count(ref_image[rows.sentence] if by_image else rows.sentence, rows.ngram,
                                  self.vocab.size, len(self.image_ids) if by_image else len(sentences))
        self.ref_rows = rows
        self.ref_w = self.tf_idf.weights(rows.count, rows.ngram)
        self.ref_norm = norms(rows, self.ref_w, len(sentences), n)
        self.ref_len_bigrams = bigram_lengths(rows.lengths)
        self.ref_row_start = np.searchsorted(rows.sentence, np.arange(len(sentences) + 1, dtype=np.int64))
        self.n_refs = n_refs
        self.first_ref = first_references(n_refs)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __call__(self, image_ids: Sequence[int], candidates: Sequence[str]) -> np.ndarray:
        """[B] float64 CIDEr-D of candidates[b] against the references of image_ids[b]."""
        if len(image_ids) != len(candidates):
            raise ValueError(f"{len(image_ids)} image ids for {len(candidates)} candidates")
        try:
            images = np.fromiter((self.index[i] for i in image_ids), dtype=np.int64, count=len(image_ids))
        except KeyError:
            missing = [i for i in image_ids if i not in self.index]
            raise DataError(f"CiderDReward: no training references for image ids {format_ids(missing)}") from None
        batch = len(candidates)
        if batch == 0:
            return np.zeros(0, dtype=np.float64)
        cand_rows = self.vocab.encode(list(candidates))
        cand_w = self.tf_idf.weights(cand_rows.count, cand_rows.ngram)  # (unseen in training: df 0)
        cand_norm = norms(cand_rows, cand_w, batch, self.n)

        # every (candidate, reference of its image) pair
        pair_n = self.n_refs[images]
        pair_cand = np.repeat(np.arange(batch, dtype=np.int64), pair_n)
        pair_ref = ranges(self.first_ref[images], pair_n)
        val = pair_similarities(cand_rows, cand_w, cand_norm, bigram_lengths(cand_rows.lengths),
                                self.ref_rows, self.ref_w, self.ref_norm, self.ref_len_bigrams,
                                self.ref_row_start, pair_cand, pair_ref, cand_rows.id_limit, self.sigma, self.n)
        summed = np.bincount(pair_cand, weights=val.sum(axis=1), minlength=batch)
        return summed / self.n / pair_n * 10.0
