"""The paired bootstrap and `compare_systems`: scores equal `score`, exact BLEU resampling, determinism, coverage
on a case with a known difference, bad input."""

import numpy as np
import pytest

from fsgr.errors import DataError
from fsgr.metrics import score
from fsgr.metrics.bleu import corpus_bleu
from fsgr.metrics.compare import compare_systems, paired_bootstrap
from fsgr.metrics.score import tokenize_refs
from fsgr.metrics.resample import PerImage, bootstrap_deltas, resample_counts, summarize
from fsgr.metrics.score import score_tokenized
from fsgr.metrics.tokenizer import ptb_tokenize


@pytest.fixture(scope="module")
def two_systems(flickr_split):
    """200 real images: system "human" = a held-out human caption, system "second" = another human caption with
    its last word dropped (worse), baseline "weak" = the same short generic caption for every image."""
    refs, preds = flickr_split
    names = list(refs)[:200]
    refs = {n: refs[n][1:] for n in names}
    human = {n: preds[n] for n in names}
    second = {n: " ".join(flickr_split[0][n][0].split()[:-1]) for n in names}
    weak = {n: "A dog." for n in names}
    return refs, {"weak": weak, "human": human, "second": second}


def test_system_scores_equal_score_and_signature(two_systems):
    refs, systems = two_systems
    result = compare_systems(refs, systems, metrics="bleu,rouge,cider", samples=200, seed=0)
    for name, preds in systems.items():
        assert result["systems"][name] == dict(score(refs, preds, "bleu,rouge,cider"))
    assert [(r["baseline"], r["system"]) for r in result["comparisons"]][:1] == [("weak", "human")]
    assert len(result["comparisons"]) == 2 * 6
    assert "refs-hash:" in result["signature"] and "cider-d:" in result["signature"]
    assert set(result["diagnostics"]) == set(systems)
    top = result["largest_differences"]["human"]
    assert len(top) == 5 and abs(top[0]["delta"]) >= abs(top[-1]["delta"])
    assert top[0]["baseline"] == "A dog."


def test_known_difference_is_significant_and_deterministic(two_systems):
    refs, systems = two_systems
    rows = paired_bootstrap(refs, systems["weak"], systems["human"], metrics="bleu,rouge,cider", samples=300, seed=3)
    again = paired_bootstrap(refs, systems["weak"], systems["human"], metrics="bleu,rouge,cider", samples=300, seed=3)
    other = paired_bootstrap(refs, systems["weak"], systems["human"], metrics="bleu,rouge,cider", samples=300, seed=4)
    assert rows == again
    assert rows != other
    for row in rows:
        assert set(row) >= {"baseline", "system", "metric", "delta", "ci_low", "ci_high", "p_value"}
        assert row["delta"] > 0 and row["ci_low"] > 0 and row["ci_low"] <= row["delta"] <= row["ci_high"]
        assert row["p_value"] < 0.01
    by_metric = {r["metric"]: r for r in rows}
    assert by_metric["BLEU-4"]["exact_resampling"] and not by_metric["CIDEr"]["exact_resampling"]


def test_identical_systems_have_zero_delta_and_p_one(two_systems):
    refs, systems = two_systems
    rows = paired_bootstrap(refs, systems["human"], dict(systems["human"]), metrics="rouge", samples=100)
    assert rows[0]["delta"] == 0 and rows[0]["ci_low"] == 0 == rows[0]["ci_high"] and rows[0]["p_value"] == 1


def test_bleu_resample_is_bleu_of_the_resampled_images(two_systems):
    """combine(counts @ stats) is the toolkit's corpus BLEU of the images drawn (duplicates included)."""
    refs, systems = two_systems
    ids, ref_tok = tokenize_refs(refs)
    cand_tok = ptb_tokenize([systems["second"][i] for i in ids])
    per_image = {}
    score_tokenized(ids, ref_tok, cand_tok, ["bleu"], per_image=per_image)
    counts = resample_counts(len(ids), 3, seed=7)
    for row in counts:
        drawn = np.repeat(np.arange(len(ids)), row.astype(int))
        expected = corpus_bleu([ref_tok[k] for k in drawn], [cand_tok[k] for k in drawn])
        got = per_image["bleu"].combine(row[None, :] @ per_image["bleu"].stats, len(ids))[0]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_resample_counts_deterministic_and_sum_to_images():
    a, b = resample_counts(50, 30, seed=1), resample_counts(50, 30, seed=1)
    assert (a == b).all() and (a.sum(axis=1) == 50).all()
    assert not (a == resample_counts(50, 30, seed=2)).all()


def test_interval_covers_the_true_difference():
    """Population: per-image scores of A ~ U(0, 1), B = A + 0.05 + noise (true mean delta 0.05). Over 200 test sets
    of 150 images the 95% interval covers 0.05 about 95% of the time, and the p-value is below 0.05 about as often
    as the power says; with no difference it is below 0.05 about 5% of the time."""
    rng = np.random.default_rng(0)
    covered, rejected_null, rejected_true = 0, 0, 0
    trials = 200
    for t in range(trials):
        a = rng.uniform(0, 1, 150)
        noise = rng.normal(0, 0.2, 150)
        counts = resample_counts(150, 400, seed=t)
        for shift, is_null in ((0.05, False), (0.0, True)):
            b = a + shift + noise
            pa, pb = PerImage.mean("X", a), PerImage.mean("X", b)
            row = summarize(b.mean() - a.mean(), bootstrap_deltas(pa, pb, counts)[:, 0])
            if is_null:
                rejected_null += row["p_value"] < 0.05
            else:
                covered += row["ci_low"] <= 0.05 <= row["ci_high"]
                rejected_true += row["p_value"] < 0.05
    assert 0.89 <= covered / trials <= 0.99
    assert rejected_null / trials <= 0.10
    assert rejected_true / trials >= 0.6  # power of a 0.05 shift with sd 0.2 on 150 images is ~0.95


def test_systems_on_other_images_are_named(two_systems):
    refs, systems = two_systems
    partial = dict(list(systems["human"].items())[:-1])
    missing = list(systems["human"])[-1]
    with pytest.raises(DataError, match=rf"partial: .*{missing}"):
        compare_systems(refs, {"human": systems["human"], "partial": partial}, metrics="bleu", samples=10)
    extra = {**systems["human"], "not-an-image": "a cat"}
    with pytest.raises(DataError, match="extra: predictions for images without references: 'not-an-image'"):
        compare_systems(refs, {"human": systems["human"], "extra": extra}, metrics="bleu", samples=10)
