"""The mechanism's metrics on a synthetic world's test split (the demo report; docs/ablation.md): per test subset
(the long-tail world's iid / tail / novel thirds; the shapes world is all iid) CIDEr, the macro recall of its concept
words (tail concepts by k; novel pairs; head), CHAIR-style hallucinated concept mentions and colour-shape binding
swaps (`fsgr.metrics.concepts`), from the generator's object lists in dataset_shapes.json."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

from fsgr.data.synthetic import BACKGROUND_CONCEPTS, CONCEPTS, OBJECT_CONCEPTS, longtail_concepts
from fsgr.files import read_json
from fsgr.metrics import score
from fsgr.metrics.concepts import ConceptWorld, binding_swaps, concept_recall, hallucination, macro_recall


def image_concepts(root: str | Path, split: Optional[str] = None) -> tuple[dict[int, set[str]], dict[int, str], bool]:
    """({image id: names of the concepts it holds (objects and its background texture)} over every image or those
    of `split`, {image id: test subset}, is the long-tail world) from the dataset's dataset_shapes.json."""
    data = read_json(Path(root) / "dataset_shapes.json", "a synthetic dataset index")
    truth = {int(im["imgid"]): {f"{o['colour']} {o['shape']}" for o in im["objects"]} | {f"{im['background']} background"}
             for im in data["images"] if split is None or im["split"] == split}
    subsets = {int(im["imgid"]): im.get("subset", "iid") for im in data["images"] if im["split"] == "test"}
    return truth, subsets, data.get("world", {}).get("name") == "longtail"


def concept_groups(longtail: bool) -> dict[str, list[str]]:
    """The groups whose recall is reported: head / tail_k1, tail_k3, tail_k10 / novel on the long-tail world (head =
    every object on the shapes world), and the background textures."""
    if not longtail:
        return {"head": list(OBJECT_CONCEPTS), "backgrounds": list(BACKGROUND_CONCEPTS)}
    lt = longtail_concepts()
    return {"head": lt["head"], **{f"tail_k{k}": names for k, names in lt["tail"].items()}, "novel": lt["novel"],
            "backgrounds": list(BACKGROUND_CONCEPTS)}


def concept_world(root: str | Path, split: str = "test") -> ConceptWorld:
    """The synthetic world of `root` over one split as a `ConceptWorld`: every concept but the generic
    "background", each image's objects and texture, and the groups whose concepts some image of the split holds
    (a group none holds has no recall; the extra metric `fsgr ablate` adds on a synthetic config)."""
    truth, _, longtail = image_concepts(root, split)
    held = set().union(*truth.values()) if truth else set()
    groups = {name: [c for c in group if c in held] for name, group in concept_groups(longtail).items()}
    return ConceptWorld([c for c in CONCEPTS if c != "background"], truth, {k: v for k, v in groups.items() if v})


def mechanism_report(root: str | Path, preds: Mapping[int, str], refs: Mapping[int, Sequence[str]],
                     metrics: str = "cider") -> dict:
    """{subset: {"images", "CIDEr", "recall": {...}, "hallucination": {...}, "binding_swaps": {...}}} over the
    test images in `preds`, plus "all"."""
    truth, subsets, longtail = image_concepts(root)
    concepts = [c for c in CONCEPTS if c != "background"]
    groups = concept_groups(longtail)
    out = {}
    for subset in ("all", *sorted(set(subsets[i] for i in preds))):
        ids = [i for i in preds if subset == "all" or subsets[i] == subset]
        captions = {i: preds[i] for i in ids}
        held = {i: truth[i] for i in ids}
        recall = concept_recall(captions, held, concepts)
        row = {"images": len(ids), "CIDEr": dict(score({i: list(refs[i]) for i in ids}, captions, metrics))["CIDEr"],
               "recall": {name: macro_recall(recall, group) for name, group in groups.items()},
               "hallucination": hallucination(captions, held, concepts),
               "binding_swaps": binding_swaps(captions, held, concepts)}
        out[subset] = row
    return out
