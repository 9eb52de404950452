"""The vectorised ROUGE-L (all LCS at once in uint64 words) equals the per-image Python one bit for bit, including
the cases it hands back to Python (odd spacing, other white space, candidates over 63 words)."""

import random

import numpy as np

from fsgr.metrics.ngrams import encode_corpus
from fsgr.metrics.rouge import corpus_rouge_l


def test_vectorised_equals_python_on_random_and_odd_text():
    rng = random.Random(0)
    words = "a b c d e f the dog".split()
    refs, cands = [], []
    for _ in range(1500):
        cands.append(" ".join(rng.choice(words) for _ in range(rng.randint(0, 70))))
        refs.append([" ".join(rng.choice(words) for _ in range(rng.randint(1, 80))) for _ in range(rng.randint(1, 5))])
    cands[:6] = ["", " a b", "a  b", "a\tb c", "a b\xa0c", "a b "]
    refs[6][0], refs[7][0], refs[8][0] = "a  b c", "x\ty", "d e\x1ff"
    rows = encode_corpus(refs, cands)
    python_mean, python = corpus_rouge_l(refs, cands)
    vector_mean, vector = corpus_rouge_l(refs, cands, rows=rows)
    assert np.array_equal(python, vector) and python_mean == vector_mean
    assert (python[:6] >= 0).all() and python.max() > 0.5  # the hard cases were scored, and not all 0


def test_vectorised_equals_python_on_real_captions(flickr):
    names = list(flickr)[:500]
    refs = [[c.lower() for c in flickr[n][1:]] for n in names]
    cands = [flickr[n][0].lower() for n in names]
    rows = encode_corpus(refs, cands)
    assert np.array_equal(corpus_rouge_l(refs, cands)[1], corpus_rouge_l(refs, cands, rows=rows)[1])
