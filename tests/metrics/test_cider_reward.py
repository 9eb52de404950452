"""The SCST reward equals pycocoevalcap's CiderScorer math with training document frequencies."""

import numpy as np
import pytest

from fsgr.errors import DataError
from fsgr.metrics.reward import CiderDReward
from fsgr.metrics.tokenizer import ptb_tokenize


class _CountAs(list):
    """A list whose len() is the number of training images: CiderScorer takes ref_len = log(len(crefs))."""

    def __init__(self, items, n):
        super().__init__(items)
        self._n = n

    def __len__(self):
        return self._n


def toolkit_scores(train_refs_tok, image_keys, cands):
    """pycocoevalcap CiderScorer on a batch, with document frequencies and ref_len from all training images."""
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    full = CiderScorer(n=4, sigma=6.0)
    for rs in train_refs_tok.values():
        full += (None, rs)
    full.compute_doc_freq()
    batch = CiderScorer(n=4, sigma=6.0)
    for key, cand in zip(image_keys, cands):
        batch += (cand, train_refs_tok[key])
    batch.document_frequency = full.document_frequency
    batch.crefs = _CountAs(batch.crefs, len(train_refs_tok))
    return np.array(batch.compute_cider())


@pytest.fixture(scope="module")
def train(flickr):
    names = list(flickr)[:600]
    refs = {k: flickr[n][1:] for k, n in enumerate(names)}
    cands = {k: flickr[n][0] for k, n in enumerate(names)}
    return refs, cands


def test_reward_equals_toolkit_with_training_df(train):
    refs, cands = train
    reward = CiderDReward(refs)
    refs_tok = {k: ptb_tokenize(rs) for k, rs in refs.items()}
    rng = np.random.default_rng(0)
    keys = rng.choice(len(refs), 200).tolist()  # repeated images, as SCST samples several captions per image
    batch = [ptb_tokenize([cands[k]])[0] for k in keys]
    batch[0] = ""  # empty candidate
    batch[1] = "zebra zebra unseen words only"  # n-grams never seen in training (df 0)
    batch[2] = refs_tok[keys[2]][0]  # a training reference itself
    got = reward(keys, batch)
    expected = toolkit_scores(refs_tok, keys, batch)
    assert got.dtype == np.float64 and got.shape == (200,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert got[0] == 0.0 and got[2] > 1.0


def test_reward_is_per_candidate_and_order_free(train):
    refs, cands = train
    reward = CiderDReward(refs)
    batch = ptb_tokenize([cands[k] for k in range(20)])
    together = reward(list(range(20)), batch)
    alone = np.array([reward([k], [batch[k]])[0] for k in range(20)])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-12)
    assert reward([], []).shape == (0,)


def test_reward_errors(train):
    refs, _ = train
    reward = CiderDReward(refs)
    with pytest.raises(DataError, match="999999"):
        reward([0, 999999], ["a dog", "a cat"])
    with pytest.raises(ValueError):
        reward([0], ["a", "b"])
    with pytest.raises(DataError, match="7"):
        CiderDReward({7: []})
