"""BLEU-1..4, ROUGE-L, CIDEr-D (and METEOR when Java is present) equal pycocoevalcap 1.2's own scorers."""

import random

import numpy as np
import pytest

from fsgr.metrics import score, score_tokenized
from fsgr.metrics.bleu import corpus_bleu
from fsgr.metrics.cider import corpus_cider_d
from fsgr.metrics.rouge import corpus_rouge_l, lcs_length
from fsgr.metrics.score import tokenize_refs
from fsgr.metrics.tokenizer import ptb_tokenize


def toolkit(ref_tok, cand_tok):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {k: rs for k, rs in enumerate(ref_tok)}
    res = {k: [c] for k, c in enumerate(cand_tok)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_per = Rouge().compute_score(gts, res)
    cider, cider_per = Cider().compute_score(gts, res)
    return bleu, rouge, rouge_per, cider, cider_per


def check_equal(ref_tok, cand_tok):
    bleu, rouge, rouge_per, cider, cider_per = toolkit(ref_tok, cand_tok)
    ours_bleu = corpus_bleu(ref_tok, cand_tok)
    ours_rouge, ours_rouge_per = corpus_rouge_l(ref_tok, cand_tok)
    ours_cider, ours_cider_per = corpus_cider_d(ref_tok, cand_tok)
    # every value to the last bit, image by image: the same operations in the toolkit's order (its log, pow, sums)
    assert ours_bleu == bleu
    assert ours_rouge == rouge and np.array_equal(ours_rouge_per, rouge_per)
    assert ours_cider == cider and np.array_equal(ours_cider_per, cider_per)
    return ours_bleu, ours_rouge, ours_cider


def _tok(refs, preds):
    ids, ref_tok = tokenize_refs(refs)
    return ids, ref_tok, ptb_tokenize([preds[i] for i in ids])


def test_real_captions_equal_toolkit(flickr_split):
    refs, preds = flickr_split
    _, ref_tok, cand_tok = _tok(refs, preds)
    bleu, rouge, cider = check_equal(ref_tok, cand_tok)
    # human captions against human captions: sane, non-trivial values
    assert 0.5 < bleu[0] < 0.8 and 0.1 < bleu[3] < 0.35 and 0.3 < rouge < 0.6 and 0.3 < cider < 1.2


@pytest.fixture(params=["compiled", "numpy"])
def metric_path(request, monkeypatch):
    """The metrics with the C extension (where built) and with its numpy reference code (nothing compiled)."""
    from fsgr.metrics import speedups

    if request.param == "compiled" and speedups.compiled is None:
        pytest.skip(f"not built: {speedups.missing}")
    if request.param == "numpy":
        speedups.switch_off(monkeypatch)
    return request.param


@pytest.mark.usefixtures("metric_path")
def test_synthetic_edge_cases_equal_toolkit():
    rng = random.Random(7)
    words = ["a", "dog", "man", "red", "the", "on", "grass", "runs", "ball", "two", "is", "of"]
    ref_tok, cand_tok = [], []
    for i in range(300):
        n_refs = rng.choice([1, 1, 2, 5, 7])
        refs = [" ".join(rng.choices(words, k=rng.randint(1, 14))) for _ in range(n_refs)]
        kind = i % 6
        if kind == 0:
            cand = ""  # empty candidate: legal, scores 0
        elif kind == 1:
            cand = " ".join([rng.choice(words)] * rng.randint(1, 9))  # duplicated words (clipping)
        elif kind == 2:
            cand = " ".join(rng.choices(words, k=rng.randint(40, 120)))  # very long
        elif kind == 3:
            cand = refs[0]  # exact copy of a reference
        elif kind == 4:
            cand = rng.choice(words)  # one word: no bigrams (CIDEr length 0)
        else:
            cand = " ".join(rng.choices(words + ["zebra", "unseen"], k=rng.randint(2, 15)))
        ref_tok.append(refs)
        cand_tok.append(cand)
    check_equal(ref_tok, cand_tok)
    _, per = corpus_cider_d(ref_tok, cand_tok)
    assert all(per[i] == 0 for i in range(0, 300, 6))
    assert corpus_rouge_l(ref_tok, cand_tok)[1][0] == 0


def test_length_penalty_is_the_toolkits_pow():
    """CIDEr-D's Gaussian length penalty to the last bit as the toolkit computes it: `np.e ** x` on Python floats
    (the C library's pow; numpy's vectorised power differs from it for some exponents on some CPUs)."""
    from fsgr.metrics.cider import SIGMA, length_penalty

    deltas = np.arange(-80, 81)
    toolkit_penalty = [np.e ** (-(float(d) ** 2) / (2 * SIGMA ** 2)) for d in deltas.tolist()]
    assert length_penalty(deltas, np.zeros_like(deltas)).tolist() == toolkit_penalty
    assert length_penalty(np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)


def test_single_image_single_reference():
    check_equal([["a dog runs on the grass"]], ["a dog runs"])
    check_equal([["a dog runs on the grass", "a dog"]], ["a cat sleeps"])


def test_lcs_matches_dynamic_programming():
    from pycocoevalcap.rouge.rouge import my_lcs

    rng = random.Random(3)
    for _ in range(300):
        a = rng.choices("abcde", k=rng.randint(1, 30))
        b = rng.choices("abcdef", k=rng.randint(1, 30))
        masks = {}
        for i, t in enumerate(a):
            masks[t] = masks.get(t, 0) | (1 << i)
        assert lcs_length(masks, len(a), b) == my_lcs(b, a)


def test_score_api_equals_toolkit_pipeline(flickr_split):
    refs, preds = flickr_split
    small_refs = {k: refs[k] for k in list(refs)[:200]}
    small_preds = {k: preds[k] for k in small_refs}
    got = score(small_refs, small_preds, metrics="bleu,rouge,cider")
    _, ref_tok, cand_tok = _tok(small_refs, small_preds)
    bleu, rouge, _, cider, _ = toolkit(ref_tok, cand_tok)
    assert list(got) == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"]
    np.testing.assert_allclose([got[f"BLEU-{k}"] for k in range(1, 5)], bleu, atol=1e-9, rtol=0)
    assert abs(got["ROUGE-L"] - rouge) < 1e-9 and abs(got["CIDEr"] - cider) < 1e-9
    assert got.unavailable == {}


def test_meteor_equals_toolkit(java, flickr_split):
    from pycocoevalcap.meteor.meteor import Meteor

    refs, preds = flickr_split
    ids = list(refs)[:150]
    ids_, ref_tok, cand_tok = _tok({i: refs[i] for i in ids}, {i: preds[i] for i in ids})
    cand_tok[0] = ""  # an empty prediction is legal
    cand_tok[1] = "a ||| tricky  hypothesis"
    got = score_tokenized(ids_, ref_tok, cand_tok, ["meteor"])
    expected, _ = Meteor().compute_score({i: r for i, r in zip(ids, ref_tok)}, {i: [c] for i, c in zip(ids, cand_tok)})
    assert abs(got["METEOR"] - expected) < 1e-4
    assert 0.1 < got["METEOR"] < 0.5


def test_spice_is_unavailable_not_zero(flickr_split):
    """SPICE's Stanford CoreNLP models are not installed here: it must be absent with a reason, never 0."""
    from fsgr.metrics.spice import CORENLP_JARS
    from fsgr.metrics.java import toolkit_dir

    if all((toolkit_dir() / "spice" / "lib" / j).is_file() for j in CORENLP_JARS):
        pytest.skip("the SPICE models are installed on this machine")
    refs, preds = flickr_split
    ids = list(refs)[:5]
    got = score({i: refs[i] for i in ids}, {i: preds[i] for i in ids}, metrics=["cider", "spice"])
    assert "SPICE" not in got and "CIDEr" in got
    assert "CoreNLP" in got.unavailable["SPICE"] and "never downloads" in got.unavailable["SPICE"]
