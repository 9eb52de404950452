"""Concept recall, CHAIR-style hallucination and binding swaps on hand-made captions with known answers."""

import pytest

from fsgr.metrics.concepts import binding_swaps, concept_recall, hallucination, macro_recall, mentions

CONCEPTS = ["red circle", "blue square", "red square", "blue circle", "green star"]


def test_mentions_are_contiguous_phrases():
    assert mentions("A small red circle, left of a big blue square.", CONCEPTS) == {"red circle", "blue square"}
    assert mentions("one circle that is red", CONCEPTS) == set()
    assert mentions("a red circled square", CONCEPTS) == set()        # whole words only


def test_recall_hallucination_and_swaps():
    truth = {1: {"red circle", "blue square"}, 2: {"red circle"}, 3: {"green star"}, 4: {"blue circle"}}
    captions = {1: "a red square and a blue circle",      # both words held, bound wrongly: 2 swaps, 2 hallucinated
                2: "a red circle",                        # right
                3: "a green star and a red circle",       # one hallucination, not a swap (nothing red held)
                4: "a big blue circle"}                   # right
    recall = concept_recall(captions, truth, CONCEPTS)
    assert recall["red circle"] == pytest.approx(0.5) and recall["blue square"] == 0.0
    assert recall["green star"] == 1.0 and recall["blue circle"] == 1.0 and recall["red square"] is None
    assert macro_recall(recall, ["red circle", "blue square", "red square"]) == pytest.approx(0.25)
    chair = hallucination(captions, truth, CONCEPTS)
    assert chair["mentions"] == 6 and chair["hallucinated_mentions"] == 3
    assert chair["chair_i"] == pytest.approx(0.5) and chair["chair_s"] == pytest.approx(0.5)
    swaps = binding_swaps(captions, truth, CONCEPTS)
    assert swaps == {"rate": pytest.approx(2 / 6), "swaps": 2, "mentions": 6}


def test_concept_scores_match_the_corpus_functions_and_resample_exactly():
    import numpy as np

    from fsgr.metrics.concepts import ConceptWorld, concept_scores, concept_recall, macro_recall
    from fsgr.metrics.resample import resample_counts

    concepts = ["red circle", "blue square", "red square", "green star"]
    truth = {1: {"red circle"}, 2: {"blue square", "red circle"}, 3: {"red circle", "blue square"}, 4: {"green star"}}
    caps = {1: "a red circle", 2: "a red square and a blue square", 3: "a blue square", 4: "a green star"}
    world = ConceptWorld(concepts, truth, groups={"reds": ["red circle", "red square"], "star": ["green star"]})
    ids = [1, 2, 3, 4]
    scores, per_image = concept_scores(world, ids, [caps[i] for i in ids])
    recall = concept_recall(caps, truth, concepts)
    assert scores["concept-recall"] == pytest.approx(macro_recall(recall, concepts)) == pytest.approx((1 / 3 + 1 + 1) / 3)
    assert scores["recall:reds"] == 1 / 3 and scores["recall:star"] == 1.0       # red square: no holder, left out
    assert scores["concept-CHAIR-i"] == hallucination(caps, truth, concepts)["chair_i"] == 1 / 5
    assert scores["binding-swaps"] == binding_swaps(caps, truth, concepts)["rate"] == 1 / 5
    # a resample's value is the metric recomputed on the drawn images
    counts = resample_counts(4, 20, seed=1)
    for row in counts:
        drawn = [i for i, n in zip(ids, row) for _ in range(int(n))]
        again, _ = concept_scores(world, drawn, [caps[i] for i in drawn])
        for key, stats in per_image.items():
            value = stats.combine((row @ stats.stats)[None], 4)[0, 0]
            assert (np.isnan(value) and again[key] is None) or value == pytest.approx(again[key], abs=1e-15), key
