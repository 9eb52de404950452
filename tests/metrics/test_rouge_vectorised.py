"""The vectorised ROUGE-L (all LCS at once: the dynamic programme in C, or uint64 words in numpy; on either n-gram
table) equals the per-image Python one bit for bit, including the cases it hands back to Python (odd spacing, other
white space, and for numpy candidates over 63 words)."""

import random

import numpy as np
import pytest

from fsgr.metrics import rouge, speedups
from fsgr.metrics.ngrams import encode_corpus
from fsgr.metrics.rouge import corpus_rouge_l

NOT_BUILT = pytest.mark.skipif(speedups.lcs_lengths is None, reason=f"not built: {speedups.missing}")
WAYS = [pytest.param(True, marks=NOT_BUILT, id="C-table-C-lcs"),
        pytest.param(False, marks=NOT_BUILT, id="numpy-table-C-lcs"),
        pytest.param(None, id="numpy")]


@pytest.fixture(params=WAYS)
def table(request, monkeypatch):
    """The `native` argument for encode_corpus (LCS in C), or None with nothing compiled (numpy everywhere)."""
    if request.param is None:
        speedups.switch_off(monkeypatch)
    return request.param


def test_vectorised_equals_python_on_random_and_odd_text(table):
    rng = random.Random(0)
    words = "a b c d e f the dog".split()
    refs, cands = [], []
    for _ in range(1500):
        cands.append(" ".join(rng.choice(words) for _ in range(rng.randint(0, 70))))
        refs.append([" ".join(rng.choice(words) for _ in range(rng.randint(1, 80))) for _ in range(rng.randint(1, 5))])
    cands[:6] = ["", " a b", "a  b", "a\tb c", "a b\x0bc", "a b "]
    refs[6][0], refs[7][0], refs[8][0] = "a  b c", "x\ty", "d e\x1ff"
    rows = encode_corpus(refs, cands, native=table)
    python_mean, python = corpus_rouge_l(refs, cands)
    vector_mean, vector = corpus_rouge_l(refs, cands, rows=rows)
    assert np.array_equal(python, vector) and python_mean == vector_mean
    assert (python[:6] >= 0).all() and python.max() > 0.5  # the hard cases were scored, and not all 0


def test_non_ascii_white_space_is_split_like_python(table):
    refs, cands = [["a b\xa0c", "a\u2003b c"], ["b c"]], ["a b\xa0c", "b\u3000c"]
    native = None if table else table  # (the C table takes ASCII only: with None, numpy's takes this text)
    assert np.array_equal(corpus_rouge_l(refs, cands)[1], corpus_rouge_l(refs, cands, rows=encode_corpus(
        refs, cands, native=native))[1])


def test_vectorised_equals_python_on_real_captions(flickr, table):
    names = list(flickr)[:500]
    refs = [[c.lower() for c in flickr[n][1:]] for n in names]
    cands = [flickr[n][0].lower() for n in names]
    rows = encode_corpus(refs, cands, native=table)
    assert np.array_equal(corpus_rouge_l(refs, cands)[1], corpus_rouge_l(refs, cands, rows=rows)[1])


def test_popcount_with_and_without_numpy_bitwise_count(monkeypatch):
    rng = np.random.default_rng(0)
    v = rng.integers(0, 2**63, 1000, dtype=np.uint64) | (rng.integers(0, 2, 1000, dtype=np.uint64) << np.uint64(63))
    expected = np.array([bin(int(x)).count("1") for x in v])
    assert np.array_equal(rouge.popcount(v), expected)
    monkeypatch.delattr(np, "bitwise_count", raising=False)  # numpy < 2
    assert np.array_equal(rouge.popcount(v), expected)
