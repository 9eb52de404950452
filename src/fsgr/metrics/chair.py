"""CHAIR object hallucination (Rohrbach et al. 2018, "Object Hallucination in Image Captioning"), as the authors'
`chair.py` computes it:

- a caption's object mentions: lower-cased words (PTB tokens here; NLTK's Treebank tokenizer there), plural words
  singularised, the authors' two-word names joined (their `coco_double_words`, "baby"/"adult" + animal -> the animal,
  "passenger" + jet/train -> the vehicle, "bow tie" -> tie, "toilet seat" -> toilet, "wine glas" -> wine glass),
  "seat" dropped when "toilet" is in the caption, then each word that is one of the published synonyms of a COCO
  class maps to that class (`assets/chair_synonyms.txt`, the authors' `data/synonyms.txt` as published, read as they
  read it: each line stripped and split at ", ", so " motor bike", " cheesecake" and "iPhone" never match a
  lower-cased caption there or here);
- an image's ground-truth objects: the classes of its COCO instance annotations plus the classes mentioned in its
  reference captions;
- CHAIR-i = mentions of classes not in the image / all class mentions (every mention counts, repeats included);
  CHAIR-s = captions with at least one such mention / all captions.

The reference singularises with `pattern.en.singularize`; we use a small rule set (irregular plurals, -ies,
-es after ss/ch/sh/x, -s), try the word itself first, so that listed words ending in s ("bus", "skis",
"scissors") match as written, then the word less "s" or "es" ("collies", "buffaloes"); docs/fidelity.md says where
the two differ.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SYNONYMS_FILE = Path(__file__).resolve().parents[1] / "assets" / "chair_synonyms.txt"
ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub")
VEHICLES = ("jet", "train")
# The authors' `coco_double_words`, as written there (repeats included): pairs read as one word before the lookup.
DOUBLE_WORDS = ("motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
                "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat",
                "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear",
                "hair drier", "potted plant", "bow tie", "laptop computer", "stove top oven", "hot dog", "teddy bear",
                "home plate", "train track")
IRREGULAR = {"men": "man", "women": "woman", "people": "person", "children": "child", "mice": "mouse",
             "geese": "goose", "feet": "foot", "teeth": "tooth", "oxen": "ox", "knives": "knife",
             "wolves": "wolf", "leaves": "leaf", "calves": "calf", "shelves": "shelf", "halves": "half",
             "buses": "bus"}


def singularize(word: str) -> str:
    if word in IRREGULAR:
        return IRREGULAR[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes")):
        return word[:-2]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@dataclass
class Synonyms:
    to_class: dict[str, str]  # synonym (one or two words) -> COCO class
    double_words: dict[str, str]  # "w1 w2" -> the word it stands for (a synonym, or an animal/vehicle)

    @staticmethod
    def load(path: Path = SYNONYMS_FILE) -> "Synonyms":
        to_class: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            names = line.strip().split(", ")
            for name in names:
                to_class[name] = names[0]  # a later line wins, as in the authors' dict
        double = {w: w for w in DOUBLE_WORDS}
        for animal in ANIMALS:
            double[f"baby {animal}"] = animal
            double[f"adult {animal}"] = animal
        for vehicle in VEHICLES:
            double[f"passenger {vehicle}"] = vehicle
        double["bow tie"] = "tie"
        double["toilet seat"] = "toilet"
        double["wine glas"] = "wine glass"
        return Synonyms(to_class, double)

    def singular(self, word: str) -> str:
        """The word if it is a synonym, else the first of its possible singulars that is one ("collies" -> collie,
        "buffaloes" -> buffalo), else `singularize(word)` (which two-word names may still join: "wine glasses")."""
        if word in self.to_class:
            return word
        forms = [singularize(word), word[:-1], word[:-2]] if word.endswith("s") else [singularize(word)]
        return next((f for f in forms if f in self.to_class), forms[0])

    def mentions(self, tokens: Sequence[str]) -> list[tuple[str, str]]:
        """(word as matched, COCO class) for each object mention of a tokenised caption, in order."""
        words = [self.singular(w) for w in tokens]
        joined, i = [], 0
        while i < len(words):
            pair = " ".join(words[i:i + 2])
            if i + 1 < len(words) and pair in self.double_words:
                joined.append(self.double_words[pair])
                i += 2
            else:
                joined.append(words[i])
                i += 1
        if "toilet" in joined and "seat" in joined:
            joined = [w for w in joined if w != "seat"]
        return [(w, self.to_class[w]) for w in joined if w in self.to_class]


def chair(captions: Sequence[Sequence[str]], truth: Sequence[set[str]], synonyms: Synonyms | None = None) -> dict:
    """CHAIR of tokenised captions (one per image) against each image's ground-truth classes.

    Returns {"CHAIR-i", "CHAIR-s", "hallucinated": [I] mentions not in the image, "mentions": [I] all mentions,
    "hallucinated_words": [I] list of (word, class)}."""
    synonyms = synonyms or Synonyms.load()
    hallucinated, mentions, words = [], [], []
    for tokens, objects in zip(captions, truth, strict=True):
        found = synonyms.mentions(tokens)
        wrong = [(w, c) for w, c in found if c not in objects]
        hallucinated.append(len(wrong))
        mentions.append(len(found))
        words.append(wrong)
    total = sum(mentions)
    return {"CHAIR-i": sum(hallucinated) / total if total else 0.0,
            "CHAIR-s": sum(h > 0 for h in hallucinated) / len(hallucinated) if hallucinated else 0.0,
            "hallucinated": hallucinated, "mentions": mentions, "hallucinated_words": words}


def ground_truth(image_ids: Sequence[Hashable], instance_classes: Mapping[Hashable, set[str]],
                 ref_tokens: Sequence[Sequence[Sequence[str]]], synonyms: Synonyms | None = None) -> list[set[str]]:
    """Per image: the classes of its instance annotations (COCO category names) and of its reference captions."""
    synonyms = synonyms or Synonyms.load()
    out = []
    for image_id, refs in zip(image_ids, ref_tokens, strict=True):
        objects = {synonyms.to_class.get(name, name) for name in instance_classes.get(image_id, set())}
        for ref in refs:
            objects.update(c for _, c in synonyms.mentions(ref))
        out.append(objects)
    return out
