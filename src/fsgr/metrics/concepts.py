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
{image id: str}; truths are {image id: set of concept names}.

`ConceptWorld` gathers a world (its concepts, named groups, each image's truth) and scores captions with per-image
statistics (`fsgr.metrics.resample.PerImage`), so that the paired bootstrap of `fsgr compare` and `fsgr ablate`
resamples them like any corpus metric: `concept_scores`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from fsgr.metrics.resample import PerImage

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
    return sum(values) / len(values) if values else None


@dataclass
class ImageCounts:
    """What one caption says of the world's concepts, against what its image holds."""
    named: set[str]          # the concepts it mentions
    hallucinated: int        # of which the image does not hold
    pair_mentions: int       # mentions of two-word (attribute, noun) concepts
    swaps: int               # of which binding swaps: attribute and noun both held, bound to other objects


def image_counts(caption: str, held: Iterable[str], concepts: Sequence[str]) -> ImageCounts:
    held = set(held)
    named = mentions(caption, concepts)
    pairs = {c: tuple(words(c)) for c in named if len(words(c)) == 2}
    own = [tuple(words(c)) for c in held if len(words(c)) == 2]
    attributes, nouns = {a for a, _ in own}, {n for _, n in own}
    swaps = sum(c not in held and a in attributes and n in nouns for c, (a, n) in pairs.items())
    return ImageCounts(named=named, hallucinated=len(named - held), pair_mentions=len(pairs), swaps=swaps)


def hallucination(captions: Mapping, truth: Mapping, concepts: Sequence[str]) -> dict[str, float | int]:
    """CHAIR-i and CHAIR-s over the world's concepts, with the counts behind them."""
    counts = [image_counts(captions[i], truth[i], concepts) for i in truth]
    mentioned = sum(len(c.named) for c in counts)
    wrong = sum(c.hallucinated for c in counts)
    captions_wrong = sum(c.hallucinated > 0 for c in counts)
    return {"chair_i": wrong / mentioned if mentioned else 0.0, "chair_s": captions_wrong / len(truth) if truth else 0.0,
            "mentions": mentioned, "hallucinated_mentions": wrong, "captions": len(truth)}


def binding_swaps(captions: Mapping, truth: Mapping, concepts: Sequence[str]) -> dict[str, float | int]:
    """Two-word concepts (attribute, noun): mentions whose attribute and noun the image both holds, bound to other
    objects. -> {"rate": swaps / mentions, "swaps", "mentions"}."""
    counts = [image_counts(captions[i], truth[i], concepts) for i in truth]
    mentioned = sum(c.pair_mentions for c in counts)
    swaps = sum(c.swaps for c in counts)
    return {"rate": swaps / mentioned if mentioned else 0.0, "swaps": swaps, "mentions": mentioned}


@dataclass
class ConceptWorld:
    """A closed world of concept phrases: `concepts` (every name a caption may mention), `groups` (name -> concepts
    whose recall is macro-averaged, e.g. {"tail_k1": [...]}) and `truth` (image id -> the concepts it holds).
    Called with (image_ids, captions) it is an extra metric of `fsgr.metrics.compare.score_system`."""
    concepts: list[str]
    truth: Mapping[int, set[str]]
    groups: dict[str, list[str]] = field(default_factory=dict)
    name = "concepts"

    @property
    def keys(self) -> tuple[str, ...]:
        return ("concept-recall", *(f"recall:{g}" for g in self.groups), "concept-CHAIR-i", "binding-swaps")

    def __call__(self, image_ids: Sequence, captions: Sequence[str]):
        return concept_scores(self, image_ids, captions)


def _macro_recall_stats(key: str, named: list[set[str]], held: list[set[str]], group: Sequence[str]) -> PerImage:
    """Per image: [named_c and held_c, held_c] for every concept c of the group; combined, the mean over the
    concepts some image holds of named / held (the macro recall, recomputed exactly on a resample)."""
    hits = np.array([[c in n and c in h for c in group] for n, h in zip(named, held)], dtype=np.float64)
    holds = np.array([[c in h for c in group] for h in held], dtype=np.float64)
    stats = np.concatenate([hits.reshape(len(held), -1), holds.reshape(len(held), -1)], axis=1)
    k = len(group)

    def combine(sums: np.ndarray, n_images: int) -> np.ndarray:
        den = sums[:, k:]
        rates = np.divide(sums[:, :k], den, out=np.full_like(den, np.nan), where=den > 0)
        seen = (den > 0).sum(axis=1)
        total = np.where(den > 0, rates, 0.0).sum(axis=1)
        return np.divide(total, seen, out=np.full(len(sums), np.nan), where=seen > 0)[:, None]

    return PerImage((key,), stats, combine, True)


def concept_scores(world: ConceptWorld, image_ids: Sequence, captions: Sequence[str]
                   ) -> tuple[dict[str, Optional[float]], dict[str, PerImage]]:
    """The world's metrics of these captions (one per image id) and their per-image statistics:
    concept-recall (macro over every concept some image holds), recall:GROUP, concept-CHAIR-i, binding-swaps.
    A recall no image can have (no holder) is None."""
    missing = [i for i in image_ids if i not in world.truth]
    if missing:
        raise KeyError(f"concept world: no truth for image {missing[0]} ({len(missing)} images without)")
    held = [set(world.truth[i]) for i in image_ids]
    counts = [image_counts(c, h, world.concepts) for c, h in zip(captions, held)]
    named = [c.named for c in counts]
    per_image = {}
    for key, group in (("concept-recall", world.concepts), *((f"recall:{g}", v) for g, v in world.groups.items())):
        per_image[key] = _macro_recall_stats(key, named, held, group)
    per_image["concept-CHAIR-i"] = PerImage.ratio("concept-CHAIR-i", [c.hallucinated for c in counts],
                                                  [len(c.named) for c in counts])
    per_image["binding-swaps"] = PerImage.ratio("binding-swaps", [c.swaps for c in counts],
                                                [c.pair_mentions for c in counts])
    scores = {}
    for key, stats in per_image.items():
        value = float(stats.combine(stats.stats.sum(axis=0, keepdims=True), len(image_ids))[0, 0])
        scores[key] = None if np.isnan(value) else value
    return scores, per_image
