"""Why does (or doesn't) the semantic grid help on the shapes demo? Measurements on trained demo checkpoints
(docs/ablation.md):

* object naming: a caption names an object when it holds its "colour shape" words; per image, whether the set of
  named objects is exactly the ground truth, and object recall / precision;
* naming against labelling: objects split by whether the tiny CLIP's own MaskCLIP patch labels (the labels the
  semantic head starts from) give the object its concept on most of its patches; the naming rate of each group;
* oracle grid: the same checkpoint, decoding with the semantic grid S built from the ground-truth patch concepts
  instead of the head's assignment (same codebook rows, same group-size normalisation): what a correct grid would buy;
* top-k recall: how many ground-truth objects survive the head's per-image top-k concept preselection;
* statements: of the size words, shape counts, backgrounds and relations the captions state, the fraction true;
* `--linear-probe`: linear probes of the patch concept on the frozen CLIP grid, beside the zero-shot codebook labels.

    python -m fsgr.demo.grid_probe RUN_DIR [RUN_DIR ...] [--split test] [--no-oracle] [--linear-probe] [--max-images N]
                              [--json OUT]

RUN_DIR: a `fsgr demo` / `fsgr train configs/demo.yaml` / `fsgr ablate` run directory with checkpoints/best.pt.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsgr.core.assets import resolve_clip, resolve_codebook
from fsgr.data.readers import read_records
from fsgr.data.synthetic import BACKGROUNDS, COLOURS, SHAPES, SIZE_WORDS, PatchLabels, concept_id, relation
from fsgr.demo.mechanism import mechanism_report
from fsgr.demo.pretrain_clip import csa_patch_embeddings
from fsgr.demo.run import image_batches, patch_accuracy
from fsgr.inference import Captioner
from fsgr.metrics import score
from fsgr.models.backbone import FSGRBackbone
from fsgr.models.clip import load_clip
from fsgr.models.codebook import load_codebook
from fsgr.models.config import AdapterConfig, BackboneConfig, PromptConfig
from fsgr.models.decoding import DecodeSettings, decode_images

_MENTION = re.compile(r"\b(" + "|".join(COLOURS) + r")\s+(" + "|".join(SHAPES) + r")s?\b")
_PHRASE = r"(" + "|".join(COLOURS) + r")\s+(" + "|".join(SHAPES) + r")"
_SIZED = re.compile(r"\b(" + "|".join(sorted({w for ws in SIZE_WORDS.values() for w in ws})) + r")\s+" + _PHRASE)
_BACKGROUND = re.compile(r"\b(" + "|".join(BACKGROUNDS) + r") background\b")
_COUNT = re.compile(r"\b(one|a single|two|three) shapes?\b")
_COUNTS = {"one": 1, "a single": 1, "two": 2, "three": 3}
_RELATION = re.compile(_PHRASE + r"\s+(to the left of|to the right of|above|below)\s+an?\s+(?:\w+\s+)?" + _PHRASE)


def mentioned_objects(caption: str) -> set[int]:
    """Concept ids of the "colour shape" phrases of a caption (size words may precede; they are not checked)."""
    return {concept_id(c, s) for c, s in _MENTION.findall(caption.lower())}


def load_objects(root: str | Path) -> tuple[dict[int, dict[int, dict]], dict[int, str]]:
    """({image id: {concept id: object (colour, shape, size, cx, cy, r)}}, {image id: background word}), from the
    dataset's dataset_shapes.json."""
    data = json.loads((Path(root) / "dataset_shapes.json").read_text())
    return ({int(im["imgid"]): {concept_id(o["colour"], o["shape"]): o for o in im["objects"]} for im in data["images"]},
            {int(im["imgid"]): im["background"] for im in data["images"]})


def stated_relations(caption: str) -> list[tuple[int, str, int]]:
    """(concept a, relation, concept b) of each "a <colour shape> <relation> a [size] <colour shape>" phrase."""
    return [(concept_id(c1, s1), rel, concept_id(c2, s2))
            for c1, s1, rel, c2, s2 in _RELATION.findall(caption.lower())]


def _rate(right: int, checked: int) -> Optional[float]:
    return right / checked if checked else None


def naming_scores(preds: dict[int, str], objects: dict[int, dict[int, dict]],
                  backgrounds: Optional[dict[int, str]] = None) -> dict[str, float]:
    """exact: the caption names exactly the image's objects; recall / precision over objects, pooled. Then, over the
    statements a caption makes, the fraction that are true: relations between two objects the image has (their
    positions), size words of objects it has, the background word, the number of shapes."""
    size_of = {w: size for size, words in SIZE_WORDS.items() for w in words}
    exact = hits = named = truth = 0
    checked = {"relations": [0, 0], "sizes": [0, 0], "backgrounds": [0, 0], "counts": [0, 0]}
    for image_id, caption in preds.items():
        real = objects[image_id]
        text = caption.lower()
        said = mentioned_objects(caption)
        exact += said == set(real)
        hits += len(said & set(real))
        named += len(said)
        truth += len(real)
        for a, rel, b in stated_relations(caption):
            if a in real and b in real and a != b:
                checked["relations"][0] += relation(real[a], real[b]) == rel
                checked["relations"][1] += 1
        for word, colour, shape in _SIZED.findall(text):
            obj = real.get(concept_id(colour, shape))
            if obj is not None:
                checked["sizes"][0] += obj["size"] == size_of[word]
                checked["sizes"][1] += 1
        if backgrounds is not None:
            for word in _BACKGROUND.findall(text):
                checked["backgrounds"][0] += word == backgrounds[image_id]
                checked["backgrounds"][1] += 1
        for word in _COUNT.findall(text):
            checked["counts"][0] += _COUNTS[word] == len(real)
            checked["counts"][1] += 1
    out = {"exact": exact / len(preds), "recall": hits / truth, "precision": hits / named if named else 0.0}
    for name, (right, n) in checked.items():
        out[f"{name}_stated"] = n
        out[f"{name}_true"] = _rate(right, n)
    return out


def object_labelled(patch_ids: torch.Tensor, truth: torch.Tensor) -> dict[int, bool]:
    """For each object concept of one image (truth (P,)), whether patch_ids (P,) give it on most of its patches."""
    out = {}
    for c in set(truth.tolist()) - {0}:
        mine = patch_ids[truth == c]
        out[c] = bool((mine == c).float().mean() > 0.5)
    return out


class OracleGrid(nn.Module):
    """Wraps a SemanticHead: its outputs, except that the grid S and the concept ids come from given patch ids
    (B, P): S_p = t_c(p) / (n_c(p) + 1) over the whole codebook, the head's own group-size normalisation."""

    def __init__(self, head: nn.Module, ids: torch.Tensor):
        super().__init__()
        self.head, self.ids = head, ids

    def __getattr__(self, name: str):
        """Everything else (needs_dense_labels, dense_labels, codebook, ...) is the wrapped head's: the captioner's
        encode asks for it."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("head"), name)

    def forward(self, global_embed, aligned_patches, logit_scale, dense_ids=None, given_ids=None):
        return self.head(global_embed, aligned_patches, logit_scale, dense_ids=dense_ids, given_ids=self.ids)


@torch.no_grad()
def probe_run(run_dir: str | Path, split: str = "test", oracle: bool = True, batch_images: int = 100,
              max_images: Optional[int] = None) -> dict:

    run_dir = Path(run_dir)
    cap = Captioner.from_checkpoint(run_dir / "checkpoints" / "best.pt", device="cpu")
    cfg, model = cap.cfg, cap.model
    root = Path(cfg.data.synthetic.root)
    records = [r for r in read_records(cfg.data) if r.split == split][:max_images]
    objects, backgrounds = load_objects(root)
    grid = cfg.model.clip.image_resolution // cfg.model.clip.vision_patch_size
    labels = PatchLabels(root, grid)
    oracle_labels = PatchLabels(root, grid, textures=True)     # right everywhere: background patches their texture
    semantic = cfg.model.semantic.enabled
    clip = load_clip(resolve_clip(cfg.model.clip.path))
    codebook = load_codebook(resolve_codebook("demo")).embeddings      # the tiny CLIP's own labels, any variant

    # the run's own test captions when it wrote them (fsgr train / fsgr ablate): no second decode
    saved = run_dir / "predictions" / "test_best.json"
    preds = {int(r["image_id"]): r["caption"] for r in json.loads(saved.read_text())} \
        if split == "test" and saved.is_file() else {}
    oracle_preds = {}
    labelled, by_head, topk_hits, topk_total = {}, {}, 0, 0
    e = cfg.eval
    controls = DecodeSettings.from_config(e).controls()          # the run's own decoding, as its evaluation
    for batch in image_batches(records, cfg, batch_images):
        ids = [int(i) for i in batch.image_ids]
        truth = torch.stack([labels(i) for i in ids])                                   # (B, P)
        clip_ids = (csa_patch_embeddings(clip.visual, batch.images) @ codebook.t()).argmax(-1)
        for i, t, c in zip(ids, truth, clip_ids):
            labelled[i] = object_labelled(c, t)
        if not set(ids) <= set(preds):
            preds.update(zip(ids, decode_images(model, batch.images, cap.vocab, e.beam_size, e.max_len, controls)))
        if semantic:
            feats = model.backbone(batch.images, value_patches=model.semantic.needs_dense_labels)
            dense = (model.semantic.dense_labels(feats.value_patches, model.logit_scale)[0]
                     if model.semantic.needs_dense_labels else None)
            sem = model.semantic(feats.global_embed, feats.aligned_patches, model.logit_scale, dense_ids=dense)
            for i, t, h, k in zip(ids, truth, sem.concept_ids, sem.topk_ids):
                by_head[i] = object_labelled(h, t)
                real = set(t.tolist()) - {0}
                topk_hits += len(real & set(k.tolist()))
                topk_total += len(real)
            if oracle:
                head = model.semantic
                model.semantic = OracleGrid(head, torch.stack([oracle_labels(i) for i in ids]))
                try:
                    oracle_preds.update(zip(ids, decode_images(model, batch.images, cap.vocab, e.beam_size,
                                                               e.max_len, controls)))
                finally:
                    model.semantic = head
    refs = {int(r.image_id): list(r.captions) for r in records}
    preds = {i: preds[i] for i in refs}
    metrics = cfg.eval.metrics
    out = {"run": str(run_dir), "split": split, "images": len(records), "semantic": semantic,
           "scores": dict(score(refs, preds, metrics)), "naming": naming_scores(preds, objects, backgrounds),
           "naming_by_clip_label": _naming_by(preds, labelled), "mechanism": mechanism_report(root, preds, refs)}
    if semantic:
        out["naming_by_head_label"] = _naming_by(preds, by_head)
        out["topk_recall"] = topk_hits / topk_total
        if oracle:
            out["oracle_grid"] = {"scores": dict(score(refs, oracle_preds, metrics)),
                                  "naming": naming_scores(oracle_preds, objects, backgrounds),
                                  "mechanism": mechanism_report(root, oracle_preds, refs)}
    return out


@torch.no_grad()
def _frozen_features(backbone, records, cfg, batch_images: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen tiny-CLIP features of records: last-layer patch tokens F (N, P, W) and CSA patches A (N, P, E)."""
    patches, aligned = [], []
    for batch in image_batches(records, cfg, batch_images):
        out = backbone(batch.images)
        patches.append(out.patch_tokens)
        aligned.append(out.aligned_patches)
    return torch.cat(patches), torch.cat(aligned)


def _fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int = 500, seed: int = 0):
    """Multinomial logistic regression on standardised features, class-balanced (object patches are ~15% of all),
    full batch, Adam: a probe of what the features hold. -> predict(x) -> class ids."""
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    probe = nn.Linear(x.shape[1], classes)
    counts = torch.bincount(y, minlength=classes).float()
    weight = counts.sum() / (classes * counts.clamp(min=1))
    opt = torch.optim.Adam(probe.parameters(), lr=0.05)
    z = (x - mean) / std
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(probe(z), y, weight=weight).backward()
        opt.step()
    return lambda feats: probe((feats - mean) / std).argmax(-1)


def linear_probe(run_dir: str | Path, train_images: int = 1000, max_images: Optional[int] = None) -> dict:
    """Is the concept of a patch in the frozen CLIP grid? Linear probes on the plain patch tokens F (what the encoder
    reads without the semantic grid) and on the CSA patches A (what the head quantises), trained on `train_images`
    training images' patch labels, scored on object patches of the test split, next to the MaskCLIP zero-shot labels
    (A against the codebook) that the semantic grid is built from."""

    cfg = Captioner.from_checkpoint(Path(run_dir) / "checkpoints" / "best.pt", device="cpu").cfg
    root = Path(cfg.data.synthetic.root)
    records = read_records(cfg.data)
    train = [r for r in records if r.split == "train"][:train_images]
    test = [r for r in records if r.split == "test"][:max_images]
    clip = load_clip(resolve_clip(cfg.model.clip.path))
    layers = len(clip.visual.transformer.resblocks)
    frozen = FSGRBackbone(clip.visual, BackboneConfig(prompts=PromptConfig(num_tokens=0),
                                                      adapters=AdapterConfig(first_block=layers, last_block=layers - 1),
                                                      aligned_patches="csa")).eval()
    grid = cfg.model.clip.image_resolution // cfg.model.clip.vision_patch_size
    labels = PatchLabels(root, grid)
    y_train = torch.stack([labels(int(r.image_id)) for r in train]).reshape(-1)
    y_test = torch.stack([labels(int(r.image_id)) for r in test])                   # (N, P)
    f_train, a_train = _frozen_features(frozen, train, cfg)
    f_test, a_test = _frozen_features(frozen, test, cfg)
    codebook = load_codebook(resolve_codebook("demo")).embeddings
    classes = codebook.shape[0]
    out = {"run": str(run_dir), "train_images": len(train), "test_images": len(test),
           "zero_shot_codebook": patch_accuracy((a_test @ codebook.t()).argmax(-1), y_test)}
    for name, tr, te in (("linear_on_patch_tokens", f_train, f_test), ("linear_on_csa_patches", a_train, a_test)):
        predict = _fit_linear(tr.reshape(-1, tr.shape[-1]), y_train, classes)
        with torch.no_grad():
            out[name] = patch_accuracy(predict(te), y_test)
    return out


def _naming_by(preds: dict[int, str], labelled: dict[int, dict[int, bool]]) -> dict[str, dict]:
    """Naming rate of objects the labeller got right vs wrong (objects with no patch of their own are left out)."""
    counts = {True: [0, 0], False: [0, 0]}
    for image_id, per_object in labelled.items():
        said = mentioned_objects(preds[image_id])
        for concept, right in per_object.items():
            counts[right][0] += concept in said
            counts[right][1] += 1
    return {("labelled_right" if k else "labelled_wrong"): {"objects": n, "named": (h / n if n else None)}
            for k, (h, n) in counts.items()}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fsgr.demo.grid_probe", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories with checkpoints/best.pt")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--no-oracle", action="store_true", help="skip the oracle-grid decode")
    parser.add_argument("--linear-probe", action="store_true",
                        help="instead: linear probes of the patch concept on the frozen CLIP grid (the run gives data)")
    parser.add_argument("--max-images", type=int, default=None, help="only the first N images of the split")
    parser.add_argument("--json", default=None, help="also write the results (a JSON list) here")
    args = parser.parse_args(argv)
    results = []
    for run in args.runs:
        r = linear_probe(run, max_images=args.max_images) if args.linear_probe else \
            probe_run(run, args.split, oracle=not args.no_oracle, max_images=args.max_images)
        print(json.dumps(r), flush=True)
        results.append(r)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
