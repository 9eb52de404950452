"""Random and degenerate captions: CIDEr-D, BLEU, ROUGE-L and the SCST reward never crash and equal the toolkit.

A candidate none of whose n-grams occurs in any reference ("zzz", a garbage sample early in SCST) once raised a numpy
casting error (float64 into int64) in CIDEr; its score is 0.0.
"""

import random

import numpy as np
import pytest

from fsgr.metrics import score
from fsgr.metrics.cider import corpus_cider_d
from fsgr.metrics.reward import CiderDReward

WORDS = ["a", "dog", "runs", "on", "the", "grass", "cat", "red", "ball", "zzz", "qq", "of", "two"]


def _toolkit_cider(refs, cands):
    from pycocoevalcap.cider.cider import Cider

    return Cider().compute_score({k: rs for k, rs in enumerate(refs)}, {k: [c] for k, c in enumerate(cands)})


def _random_caption(rng, max_words=12):
    kind = rng.random()
    if kind < 0.1:
        return ""
    if kind < 0.2:
        return "zzz"                                   # matches nothing
    if kind < 0.3:
        return " ".join([rng.choice(WORDS)] * rng.randint(1, 15))   # one word repeated
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words)))


def test_candidate_matching_nothing_scores_zero_not_a_crash():
    refs = [["a dog runs on the grass", "a brown dog running"]]
    total, per = corpus_cider_d(refs, ["zzz"])
    assert total == 0.0 and per.tolist() == [0.0]
    total, per = corpus_cider_d(refs * 3, ["zzz", "qq qq", "zzz qq zzz"])
    assert total == 0.0 and per.tolist() == [0.0, 0.0, 0.0]
    result = score({1: ["a dog runs on the grass"], 2: ["a cat"]}, {1: "zzz", 2: "qq"}, metrics=["cider"])
    assert result["CIDEr"] == 0.0


def test_reward_of_candidates_matching_nothing_is_zero():
    reward = CiderDReward({1: ["a dog runs on the grass", "a dog"], 2: ["a red ball"]}, tokenized=True)
    np.testing.assert_array_equal(reward([1, 2, 1], ["zzz", "qq qq qq", "zzz zzz"]), [0.0, 0.0, 0.0])


@pytest.mark.parametrize("seed", range(20))
def test_random_and_degenerate_captions_equal_toolkit(seed):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge

    from fsgr.metrics.bleu import corpus_bleu
    from fsgr.metrics.rouge import corpus_rouge_l

    rng = random.Random(seed)
    n = rng.randint(1, 8)
    refs = [[_random_caption(rng) or "a dog" for _ in range(rng.randint(1, 4))] for _ in range(n)]
    cands = [_random_caption(rng) for _ in range(n)]
    cider, cider_per = corpus_cider_d(refs, cands)
    tk_cider, tk_per = _toolkit_cider(refs, cands)
    assert np.isfinite(cider) and abs(cider - tk_cider) < 1e-9
    np.testing.assert_allclose(cider_per, tk_per, rtol=0, atol=1e-9)
    # BLEU and ROUGE-L: the toolkit asserts on empty candidates, so compare on the non-empty ones
    keep = [k for k, c in enumerate(cands) if c]
    if keep:
        r = [refs[k] for k in keep]
        c = [cands[k] for k in keep]
        gts, res = {k: rs for k, rs in enumerate(r)}, {k: [x] for k, x in enumerate(c)}
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        np.testing.assert_allclose(corpus_bleu(r, c), bleu, rtol=0, atol=1e-9)
        rouge, _ = Rouge().compute_score(gts, res)
        assert abs(corpus_rouge_l(r, c)[0] - rouge) < 1e-9


@pytest.mark.parametrize("seed", range(10))
def test_random_reward_batches_equal_toolkit(seed):
    from test_cider_reward import toolkit_scores

    rng = random.Random(100 + seed)
    refs = {k: [_random_caption(rng) or "a dog" for _ in range(rng.randint(1, 5))] for k in range(rng.randint(1, 6))}
    keys = [rng.randrange(len(refs)) for _ in range(rng.randint(1, 20))]
    cands = [_random_caption(rng) for _ in keys]
    got = CiderDReward(refs, tokenized=True)(keys, cands)
    assert got.dtype == np.float64 and np.isfinite(got).all()
    np.testing.assert_allclose(got, toolkit_scores(refs, keys, cands), rtol=0, atol=1e-9)
