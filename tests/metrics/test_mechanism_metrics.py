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
