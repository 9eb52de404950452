"""Metrics of the mechanism: does a caption name what the image holds, and only that?

For a closed world of concept phrases (the synthetic world's "red circle", ...; any list of multi-word names), with
the set of concepts each image truly holds:

- `concept_recall`: per concept, the share of the images holding it whose caption names it; `macro_recall` averages
  a group of concepts (e.g. the tail concepts seen in k training images) with equal weight.
- `hallucination`: CHAIR-style over the world's concepts (Rohrbach et al. 2018): CHAIR-i = concept mentions of
  concepts the image does not hold / all concept mentions; CHAIR-s = captions with at least one such mention /
  captions.
- `binding_swaps`: attribute-binding errors of two-word (attribute, noun) concepts: a mention "red square" where the
  image holds no red square but does hold something red AND some square (the words are right, their binding is not);
  rate = swapped mentions / all concept mentions.

A concept is mentioned when its words appear as a contiguous phrase in the lower-cased, whitespace- and
punctuation-split caption ("a small red circle" names "red circle"; "a circle that is red" does not). Captions are
{image id: str}; truths are {image id: set of concept names}. Pure Python, no other fsgr package (the metrics layer).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def mentions(caption: str, concepts: Iterable[str]) -> set[str]:
    """The concepts whose words appear as a contiguous phrase of the caption."""
    tokens = words(caption)
    padded = " " + " ".join(tokens) + " "
    return {c for c in concepts if " " + " ".join(words(c)) + " " in padded}


def concept_recall(captions: Mapping, truth: Mapping, concepts: Sequence[str]) -> dict[str, Optional[float]]:
    """Per concept: mentioned in the captions of the images that hold it / those images (None: no image holds it)."""
    named = {i: mentions(captions[i], concepts) for i in truth}
    out: dict[str, Optional[float]] = {}
    for c in concepts:
        holders = [i for i in truth if c in truth[i]]
        out[c] = sum(c in named[i] for i in holders) / len(holders) if holders else None
    return out


def macro_recall(recall: Mapping[str, Optional[float]], group: Iterable[str]) -> Optional[float]:
    """Mean recall over the concepts of `group` that some image holds (None if none does)."""
    values = [recall[c] for c in group if recall.get(c) is not None]
    return statistics.fmean(values) if values else None


def hallucination(captions: Mapping, truth: Mapping, concepts: Sequence[str]) -> dict[str, float | int]:
    """CHAIR-i and CHAIR-s over the world's concepts, with the counts behind them."""
    mentioned = wrong = captions_wrong = 0
    for i in truth:
        named = mentions(captions[i], concepts)
        false = named - set(truth[i])
        mentioned += len(named)
        wrong += len(false)
        captions_wrong += bool(false)
    return {"chair_i": wrong / mentioned if mentioned else 0.0, "chair_s": captions_wrong / len(truth) if truth else 0.0,
            "mentions": mentioned, "hallucinated_mentions": wrong, "captions": len(truth)}


def binding_swaps(captions: Mapping, truth: Mapping, concepts: Sequence[str]) -> dict[str, float | int]:
    """Two-word concepts (attribute, noun): mentions whose attribute and noun the image both holds, bound to other
    objects. -> {"rate": swaps / mentions, "swaps", "mentions"}."""
    pairs = {c: tuple(words(c)) for c in concepts if len(words(c)) == 2}
    mentioned = swaps = 0
    for i in truth:
        held = [pairs[c] for c in truth[i] if c in pairs]
        attributes, nouns = {a for a, _ in held}, {n for _, n in held}
        for c in mentions(captions[i], pairs):
            mentioned += 1
            a, n = pairs[c]
            swaps += c not in truth[i] and a in attributes and n in nouns
    return {"rate": swaps / mentioned if mentioned else 0.0, "swaps": swaps, "mentions": mentioned}
