"""The mechanism's metrics on a synthetic world's test split (the demo report; docs/ablation.md): per test subset
(the long-tail world's iid / tail / novel thirds; the shapes world is all iid) CIDEr, the macro recall of its concept
words (tail concepts by k; novel pairs; head), CHAIR-style hallucinated concept mentions and colour-shape binding
swaps (`fsgr.metrics.concepts`), from the generator's object lists in dataset_shapes.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from fsgr.data.synthetic import CONCEPTS, OBJECT_CONCEPTS, longtail_concepts
from fsgr.metrics import score
from fsgr.metrics.concepts import binding_swaps, concept_recall, hallucination, macro_recall


def image_concepts(root: str | Path) -> tuple[dict[int, set[str]], dict[int, str], bool]:
    """({image id: names of the concepts it holds (objects and its background texture)}, {image id: test subset},
    is the long-tail world) from the dataset's dataset_shapes.json."""
    data = json.loads((Path(root) / "dataset_shapes.json").read_text())
    truth = {int(im["imgid"]): {f"{o['colour']} {o['shape']}" for o in im["objects"]} | {f"{im['background']} background"}
             for im in data["images"]}
    subsets = {int(im["imgid"]): im.get("subset", "iid") for im in data["images"] if im["split"] == "test"}
    return truth, subsets, data.get("world", {}).get("name") == "longtail"


def mechanism_report(root: str | Path, preds: Mapping[int, str], refs: Mapping[int, Sequence[str]],
                     metrics: str = "cider") -> dict:
    """{subset: {"images", "CIDEr", "recall": {...}, "hallucination": {...}, "binding_swaps": {...}}} over the
    test images in `preds`, plus "all"."""
    truth, subsets, longtail = image_concepts(root)
    concepts = [c for c in CONCEPTS if c != "background"]
    groups = longtail_concepts() if longtail else {"head": list(OBJECT_CONCEPTS), "tail": {}, "novel": []}
    out = {}
    for subset in ("all", *sorted(set(subsets[i] for i in preds))):
        ids = [i for i in preds if subset == "all" or subsets[i] == subset]
        captions = {i: preds[i] for i in ids}
        held = {i: truth[i] for i in ids}
        recall = concept_recall(captions, held, concepts)
        row = {"images": len(ids), "CIDEr": dict(score({i: list(refs[i]) for i in ids}, captions, metrics))["CIDEr"],
               "recall": {"head": macro_recall(recall, groups["head"]),
                          **{f"tail_k{k}": macro_recall(recall, names) for k, names in groups["tail"].items()},
                          "novel": macro_recall(recall, groups["novel"])},
               "hallucination": hallucination(captions, held, concepts),
               "binding_swaps": binding_swaps(captions, held, concepts)}
        out[subset] = row
    return out
