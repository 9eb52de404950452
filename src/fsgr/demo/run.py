"""`fsgr demo`: FSGR end to end on the embedded synthetic shapes dataset with the shipped tiny CLIP.

Steps: generate the dataset (DIR/shapes), measure the tiny CLIP alone (MaskCLIP-style patch labels), train with the
normal engine (`fsgr.training.engine.train`, run directory = DIR), then on the test split with the best-val checkpoint:
beam-search captions, scores against reduced references, the human-agreement ceiling on the same references, an
image-blind baseline, the semantic head's patch accuracy against the ground-truth concept maps, a few example captions
and explain.png. Everything lands in DIR/metrics.json; a short table is printed at the end.

Ceiling: for each test image one reference (index image_id % n) is held out and scored as if it were a prediction
against the remaining references; the model's captions are scored against those same remaining references.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader

from fsgr.config import Config, load_config, resolve_config
from fsgr.core.assets import resolve_clip, resolve_codebook
from fsgr.core.build import build_model
from fsgr.data.datasets import EvalDataset, collate_eval
from fsgr.data.synthetic import COLOUR_OF, CONCEPTS, SHAPE_OF, load_concept_map, patch_concepts
from fsgr.demo.mechanism import mechanism_report
from fsgr.demo.pretrain_clip import csa_patch_embeddings
from fsgr.errors import ConfigError, DataError
from fsgr.files import atomic_write_text
from fsgr.logs import get_logger
from fsgr.inference import Captioner, draw_explanation
from fsgr.metrics import score
from fsgr.models.clip import load_clip
from fsgr.models.codebook import load_codebook
from fsgr.training.engine import train
from fsgr.training.evaluation import write_predictions
from fsgr.training.setup import DataBundle, build_data

log = get_logger(__name__)


def held_out_index(image_id: int, n: int) -> int:
    return int(image_id) % n


def split_references(records) -> tuple[dict[int, list[str]], dict[int, str]]:
    """-> (reduced references per image, the held-out caption per image)."""
    refs, held = {}, {}
    for r in records:
        caps = list(r.captions)
        if len(caps) < 2:
            raise DataError(f"image {r.image_id}: needs >= 2 captions for the ceiling, has {len(caps)}")
        k = held_out_index(r.image_id, len(caps))
        held[int(r.image_id)] = caps[k]
        refs[int(r.image_id)] = caps[:k] + caps[k + 1:]
    return refs, held


def blind_caption(train_records) -> str:
    """The most frequent training caption: what a model that ignores the image does best on average."""
    counts = Counter(c for r in train_records for c in r.captions)
    return counts.most_common(1)[0][0]


def image_batches(records, cfg, batch_images: Optional[int] = None):
    """The records' preprocessed images (as training decodes them), eval.batch_images at a time, in order."""
    images = EvalDataset(list(records), cfg.data.image_size, cfg.data.resize, draft=cfg.data.jpeg_draft)
    return DataLoader(images, batch_size=batch_images or cfg.eval.batch_images, shuffle=False, num_workers=0,
                      collate_fn=collate_eval)


def _truth(root: Path, image_ids: Sequence[int], grid: int) -> torch.Tensor:
    return torch.stack([patch_concepts(load_concept_map(root, int(i)), grid) for i in image_ids])


def patch_accuracy(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Accuracy over object patches (truth != background) of concept ids, and of their colour / shape."""
    obj = truth != 0
    if not obj.any():
        raise DataError("no object patches in the evaluated images")
    colour_of, shape_of = torch.tensor(COLOUR_OF), torch.tensor(SHAPE_OF)
    p, t = pred[obj].cpu(), truth[obj].cpu()
    return {"accuracy": p.eq(t).float().mean().item(),
            "colour_accuracy": (colour_of[p] == colour_of[t]).float().mean().item(),
            "shape_accuracy": (shape_of[p] == shape_of[t]).float().mean().item(),
            "object_patches": int(obj.sum())}


@torch.no_grad()
def semantic_head_ids(model, records, cfg, device) -> tuple[list[int], torch.Tensor]:
    """Concept id per patch from the model's semantic head in eval mode (hard argmax): (ids, (N, P))."""
    model.eval()
    ids, out = [], []
    for batch in image_batches(records, cfg):
        x = batch.images.to(device)
        enc = model.encode(x)
        out.append(enc.concept_ids.cpu())
        ids.extend(int(i) for i in batch.image_ids)
    return ids, torch.cat(out)


@torch.no_grad()
def clip_alone_ids(clip, codebook: torch.Tensor, records, cfg) -> tuple[list[int], torch.Tensor]:
    """MaskCLIP/SCLIP patch labels of the tiny CLIP alone: CSA patch features vs the whole codebook."""
    ids, out = [], []
    for batch in image_batches(records, cfg):
        feats = csa_patch_embeddings(clip.visual, batch.images)                 # (B, P, E)
        out.append((feats @ codebook.t()).argmax(-1))
        ids.extend(int(i) for i in batch.image_ids)
    return ids, torch.cat(out)


def _check_codebook_names(names) -> None:
    if list(names or []) != list(CONCEPTS):
        raise ConfigError(f"the demo needs a codebook of the shapes concepts in order ({len(CONCEPTS)}: "
                          f"{CONCEPTS[:3]}...), got {len(names or [])} names {list(names or [])[:3]}...")


def _say(text: str) -> None:
    log.info(text)


@dataclass
class DemoData:
    data: DataBundle
    test: list                    # the test records
    truth: torch.Tensor           # (N, P) ground-truth concept of every test patch (0 = background)


def demo_config(out: Path, config: Optional[str | os.PathLike], overrides: Sequence[str]) -> tuple[Config, Path]:
    """The demo config (packaged `demo` unless given) with its run and data directories under `out`."""
    path = resolve_config(config or "demo")
    cfg = load_config(path, [f"run.dir={out}", f"data.synthetic.root={out / 'shapes'}", *overrides])
    if cfg.data.format != "synthetic":
        raise ConfigError(f"{path}: the demo runs on data.format=synthetic, not {cfg.data.format!r}")
    if (out / "checkpoints" / "last.pt").exists():
        raise ConfigError(f"{out}: holds a demo run already; remove it or choose another --out")
    for name in ("metrics.json", "explain.png"):   # the demo's own files come with its checkpoints: these are not
        if (out / name).is_file() and (out / name).stat().st_size > 0:
            raise ConfigError(f"{out / name}: exists and was not written by fsgr demo: remove it or choose another "
                              f"--out")
    return cfg, path


def prepare_data(cfg: Config) -> DemoData:
    """Generate the shapes dataset (once) and read it; the test images' concept maps at the model's patch grid."""
    _say(f"[demo] generating the shapes dataset under {cfg.data.synthetic.root} ...")
    data = build_data(cfg)
    test = data.split("test")
    grid = cfg.model.clip.image_resolution // cfg.model.clip.vision_patch_size
    return DemoData(data, test, _truth(Path(cfg.data.synthetic.root), [r.image_id for r in test], grid))


def patch_baselines(cfg: Config, demo: DemoData) -> dict:
    """Patch accuracy of the tiny CLIP alone and of the FSGR model before training (identity adapters, fresh
    prompts): what training has to beat."""
    clip = load_clip(resolve_clip(cfg.model.clip.path))
    codebook = load_codebook(resolve_codebook(cfg.model.semantic.codebook))
    _check_codebook_names(codebook.names)
    _, clip_pred = clip_alone_ids(clip, codebook.embeddings, demo.test, cfg)
    untrained_acc = None                          # no semantic head (model.semantic.enabled=false): not applicable
    if cfg.model.semantic.enabled:
        torch.manual_seed(cfg.train.seed)
        untrained, _, _ = build_model(cfg, demo.data.vocab)
        _, untrained_pred = semantic_head_ids(untrained, demo.test, cfg, torch.device("cpu"))
        untrained_acc = patch_accuracy(untrained_pred, demo.truth)
    return {"tiny_clip_alone": patch_accuracy(clip_pred, demo.truth), "untrained_fsgr_head": untrained_acc}


def train_demo(cfg: Config, out: Path, device: Optional[str], progress: bool) -> tuple[dict, Path]:
    """The normal trainer on the demo config -> (its summary, the best-val checkpoint)."""
    _say(f"[demo] training (run directory {out}) ...")
    summary = train(cfg, device=device, progress=progress)
    best = out / "checkpoints" / "best.pt"
    if not best.is_file():
        raise DataError(f"{best}: training wrote no best checkpoint (status {summary.get('status')})")
    return summary, best


def score_test(cfg: Config, captioner: Captioner, demo: DemoData) -> dict:
    """Beam-search captions of the test split scored against reduced references, beside the human ceiling on the
    same references, an image-blind captioner, and the semantic head's patch accuracy."""
    _say("[demo] scoring the test split with the best-val checkpoint ...")
    semantic = cfg.model.semantic.enabled      # off: no head, so patch accuracy does not apply
    if semantic:
        _check_codebook_names(captioner.codebook_names)
    preds: dict[int, str] = {}
    for batch in image_batches(demo.test, cfg):
        preds.update(zip((int(i) for i in batch.image_ids), captioner.caption_tensors(batch.images)))
    refs, held = split_references(demo.test)
    blind_text = blind_caption(demo.data.split("train"))
    head = dict.fromkeys(("accuracy", "colour_accuracy", "shape_accuracy", "object_patches"))
    if semantic:
        ids, head_pred = semantic_head_ids(captioner.model, demo.test, cfg, captioner.device)
        assert ids == [int(r.image_id) for r in demo.test]
        head = patch_accuracy(head_pred, demo.truth)
    metrics = cfg.eval.metrics
    return {"predictions": preds, "test": dict(score(refs, preds, metrics)),
            "ceiling": dict(score(refs, held, metrics)),
            "image_blind": dict(score(refs, {i: blind_text for i in refs}, metrics)),
            "image_blind_caption": blind_text, "head": head}


def write_outputs(out: Path, captioner: Captioner, demo: DemoData, preds: dict[int, str],
                  examples: int) -> tuple[list, Optional[Path]]:
    """predictions/test_demo.json, explain.png (with a semantic head), and a few example captions beside their
    references. -> (example rows, explain.png or None)."""
    write_predictions(preds, out / "predictions" / "test_demo.json")
    records = demo.test[:examples]
    rows = [{"image": str(r.path), "caption": c, "references": list(r.captions)}
            for r, c in zip(records, captioner.caption([r.path for r in records]))]
    if not captioner.cfg.model.semantic.enabled:
        return rows, None
    # explain the first test image with the most objects: one object says little about patch-to-concept labelling
    objects_per_image = torch.tensor([len(set(row.tolist()) - {0}) for row in demo.truth])
    exp = captioner.explain(demo.test[int(objects_per_image.argmax())].path)
    draw_explanation(exp).save(out / "explain.png", format="PNG")
    return rows, out / "explain.png"


def run_demo(out: str | os.PathLike, config: Optional[str | os.PathLike] = None, overrides: Sequence[str] = (),
             device: Optional[str] = None, progress: bool = True, examples: int = 5) -> dict:
    t0 = time.time()
    out = Path(out)
    cfg, config = demo_config(out, config, overrides)
    demo = prepare_data(cfg)
    seconds = {"data": time.time() - t0}
    baselines = patch_baselines(cfg, demo)
    t = time.time()
    summary, best = train_demo(cfg, out, device, progress)
    seconds["train"] = time.time() - t
    t = time.time()
    captioner = Captioner.from_checkpoint(best, device=device)   # None: the GPU if present, as training chose
    scored = score_test(cfg, captioner, demo)
    seconds["test"] = time.time() - t
    example_rows, explain_png = write_outputs(out, captioner, demo, scored["predictions"], examples)
    head, test_scores, ceiling = scored["head"], scored["test"], scored["ceiling"]
    refs, _ = split_references(demo.test)
    mechanism = mechanism_report(cfg.data.synthetic.root, scored["predictions"], refs)
    result = {
        "test": test_scores, "ceiling": ceiling, "image_blind": scored["image_blind"],
        "image_blind_caption": scored["image_blind_caption"],
        "semantic_patch_accuracy": head["accuracy"],
        "semantic_colour_accuracy": head["colour_accuracy"],
        "semantic_shape_accuracy": head["shape_accuracy"],
        "object_patches": head["object_patches"],
        **baselines,
        "cider_vs_ceiling": test_scores["CIDEr"] / ceiling["CIDEr"] if ceiling.get("CIDEr") else None,
        "mechanism": mechanism,
        "num_test_images": len(demo.test), "references_per_image": "all but one (index image_id % n, the ceiling's)",
        "beam_size": cfg.eval.beam_size, "scst_mode": cfg.scst.mode,
        "train_summary": {k: summary.get(k) for k in ("status", "phase", "epoch", "global_step", "best_val_cider",
                                                      "best_phase", "best_epoch")},
        "examples": example_rows,
        "seconds": time.time() - t0,
        "seconds_by_stage": seconds,
        "files": {"metrics": str(out / "metrics.json"), "best": str(best),
                  "explain": str(explain_png) if explain_png else None, "predictions": str(out / "predictions" / "test_demo.json"), "run_dir": str(out)},
        "config": str(config),
    }
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
    print(table(result))
    return result


def table(r: dict) -> str:
    keys = [k for k in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr") if k in r["test"]]
    lines = [f"{'metric':<10}{'test':>9}{'ceiling':>9}{'blind':>9}"]
    for k in keys:
        lines.append(f"{k:<10}{r['test'][k]:>9.3f}{r['ceiling'][k]:>9.3f}{r['image_blind'][k]:>9.3f}")
    c, u, h = r["tiny_clip_alone"], r["untrained_fsgr_head"], r
    clip_alone = (f"tiny CLIP alone {c['accuracy']:.3f} (colour {c['colour_accuracy']:.3f}, shape "
                  f"{c['shape_accuracy']:.3f})")
    if h["semantic_patch_accuracy"] is None:
        patches = f"patch accuracy: not applicable (model.semantic.enabled=false: no semantic head); {clip_alone}"
    else:
        patches = (f"patch accuracy (object patches): FSGR head {h['semantic_patch_accuracy']:.3f} "
                   f"(colour {h['semantic_colour_accuracy']:.3f}, shape {h['semantic_shape_accuracy']:.3f}); "
                   f"{clip_alone}; untrained head {u['accuracy']:.3f}")
    for subset, m in r["mechanism"].items():
        recall = ", ".join(f"{k} {v:.2f}" for k, v in m["recall"].items() if v is not None)
        lines.append(f"{subset}: {m['images']} images, CIDEr {m['CIDEr']:.3f}; concept recall {recall}; CHAIR-i "
                     f"{m['hallucination']['chair_i']:.3f}; binding swaps {m['binding_swaps']['rate']:.3f}")
    lines += [
        f"CIDEr / ceiling: {r['cider_vs_ceiling']:.2f}   ({r['num_test_images']} test images, beam {r['beam_size']})",
        patches,
        f"time: {r['seconds']:.0f} s (data {r['seconds_by_stage']['data']:.0f}, train "
        f"{r['seconds_by_stage']['train']:.0f}, test {r['seconds_by_stage']['test']:.0f})",
        f"files: {r['files']['metrics']}  {r['files']['best']}  {r['files']['explain'] or '(no explain.png)'}",
    ]
    return "\n".join(lines)
