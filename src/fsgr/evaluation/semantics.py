"""Zero-shot patch labelling measured against ground-truth masks: the pre-flight check of a CLIP and a codebook
(`fsgr check-semantics`), before a run spends days on labels that do not see what the images show.

Every labelling path reads the frozen CLIP of the config (no prompts, no adapters: what training starts from) and
labels each patch of the grid with one codebook row:

    head              the semantic head as configured (its preselection, top-k, clean argmax) on the aligned path
                      with REF's norm (prompt_norm, a plain LayerNorm at initialisation; none without prompts)
    head_ln_post      the same head on the aligned path with CLIP's ln_post instead
    aligned           the aligned path (CSA, or REF's last-layer tokens: model.backbone.aligned_patches) against the
                      WHOLE codebook, REF's norm
    aligned_ln_post   the same with ln_post
    value             MaskCLIP's value path (ln_post(out_proj(v)) @ proj of the last block's input) against the whole
                      codebook: what `fsgr explain` draws and, with model.semantic.labels_from=dense, SupCon's labels

`used` names the path the config trains SupCon with: `value` when labels_from=dense, else the head with the
config's aligned_norm.

Ground truth: one codebook row per patch, from the synthetic generator's exact concept maps (objects, and each
image's background texture) or from COCO masks (pycocotools). A patch is an object patch when at least 25% of its
pixels belong to objects (its label: the object with most pixels, as `fsgr.data.synthetic.patch_concepts`); else a
background patch, labelled with its stuff/texture concept, or "background" where nothing names it. A patch whose
true concept has no codebook row is not scored (`unscored_patches`).

`object_accuracy`: object patches labelled with their exact concept. `background_accuracy`: background patches
labelled with a background row (the generic "background", a texture or a stuff concept): the label sees background,
which is what the head's image-level tags did not (issue 22). `background_exact_accuracy`: labelled with their own
texture/stuff row. `per_concept`: exact accuracy per true concept.
"""

from __future__ import annotations

# Deferred imports: pycocotools, only for COCO masks (`--instances`; the optional extra fsgr[coco]).

import contextlib
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fsgr import __version__
from fsgr.core.assets import resolve_clip, resolve_codebook
from fsgr.data.decode import target_size
from fsgr.data.images import load_image, preprocess
from fsgr.data.synthetic import CONCEPTS, is_background_concept, object_patch_mask, patch_concepts, render
from fsgr.errors import ConfigError, DataError
from fsgr.models.backbone import csa_attention
from fsgr.models.clip import load_clip, weights_fingerprint
from fsgr.models.codebook import load_codebook
from fsgr.models.semantic import SemanticHead

PATHS = ("head", "head_ln_post", "aligned", "aligned_ln_post", "value")
MIN_OBJECT_FRACTION = 0.25
COCO_THING_MAX_ID = 91          # COCO: thing categories 1..90, stuff 92..182 (183 "other": unlabelled)


@dataclass
class Truth:
    """Ground truth of a set of images: codebook row per patch (-1: not scored) and which patches are objects."""
    images: torch.Tensor          # (N, 3, S, S) preprocessed as training reads them
    labels: torch.Tensor          # (N, P) long codebook index, -1 where the true concept has no row
    is_object: torch.Tensor       # (N, P) bool
    background_rows: torch.Tensor  # (C,) bool: codebook rows that name background (generic, textures, stuff)
    source: str                   # for the signature: which images


def used_path(cfg) -> str:
    """The labelling path that labels SupCon in training with this config."""
    if cfg.model.semantic.labels_from == "dense":
        return "value"
    return "head_ln_post" if cfg.model.backbone.aligned_norm == "ln_post" else "head"


def _normalised_name(name: str) -> str:
    """COCO stuff names ('sky-other', 'wall-brick') and codebook names compared alike."""
    name = name.strip().lower()
    for suffix in ("-other", "-merged", "-stuff"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.replace("-", " ").replace("_", " ")


def codebook_index(names: Sequence[str]) -> dict[str, int]:
    return {_normalised_name(n): i for i, n in enumerate(names)}


# ---- features -------------------------------------------------------------------------------------------------------


@torch.no_grad()
def patch_features(clip, images: torch.Tensor, aligned_patches: str = "csa", prompt_norm: bool = True
                   ) -> dict[str, torch.Tensor]:
    """The frozen CLIP's features, L2-normalised: 'global' (B, E) and per patch (B, P, E) 'aligned' (REF's norm:
    prompt_norm as it starts, a plain LayerNorm; nothing when the config has no prompts), 'aligned_ln_post' and
    'value'."""
    visual = clip.visual
    x = visual.embed(images)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x)
    last = blocks[-1]
    out = last(x)
    if aligned_patches == "csa":
        z = x[:, 1:] + csa_attention(last, x[:, 1:])
        z = z + last.mlp(last.ln_2(z))
    else:                                   # REF: the last layer's patch tokens
        z = out[:, 1:]
    _, _, v = last.attn.qkv(last.ln_1(x[:, 1:]))
    proj = visual.proj
    return {"global": F.normalize(visual.ln_post(out[:, 0]) @ proj, dim=-1),
            "aligned": F.normalize((F.layer_norm(z, z.shape[-1:], eps=1e-6) if prompt_norm else z) @ proj, dim=-1),
            "aligned_ln_post": F.normalize(visual.ln_post(z) @ proj, dim=-1),
            "value": F.normalize(visual.ln_post(last.attn.merge_heads(v)) @ proj, dim=-1)}


@torch.no_grad()
def label_paths(feats: dict[str, torch.Tensor], head: SemanticHead, logit_scale: torch.Tensor
                ) -> dict[str, torch.Tensor]:
    """path -> (B, P) codebook index of every patch."""
    codebook = head.codebook
    labels = {name: (feats[name] @ codebook.t()).argmax(-1) for name in ("aligned", "aligned_ln_post", "value")}
    for name, aligned in (("head", "aligned"), ("head_ln_post", "aligned_ln_post")):
        labels[name] = head(feats["global"], feats[aligned], logit_scale, dense_ids=labels["value"]).concept_ids
    return labels


def _head(cfg, codebook: torch.Tensor) -> SemanticHead:
    """The configured head in eval mode, labelling with its own assignment (not labels_from's dense labels)."""
    return SemanticHead(replace(cfg.model.semantic, labels_from="head", ids_from="clean"), codebook).eval()


# ---- ground truth ---------------------------------------------------------------------------------------------------


def _to_rows(concept_names: list[str], index: dict[str, int]) -> torch.Tensor:
    """Concept name per id -> codebook row per id (-1 where the codebook has no such row; a background texture
    without a row falls back to the generic 'background' row when there is one)."""
    rows = []
    for name in concept_names:
        row = index.get(_normalised_name(name), -1)
        if row < 0 and name != "background" and name.endswith(" background"):
            row = index.get("background", -1)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long)


def synthetic_truth(cfg, split: str, n: int, names: Sequence[str]) -> Truth:
    """The first n images of a split of the config's synthetic world, rendered by its generator (JPEG round trip as
    the files on disk), and their exact concept maps."""
    syn = cfg.data.synthetic
    first = {"train": 0, "val": syn.num_train, "test": syn.num_train + syn.num_val}
    count = {"train": syn.num_train, "val": syn.num_val, "test": syn.num_test}
    if split not in first:
        raise ConfigError(f"--split {split!r}: use train, val or test")
    n = min(n, count[split])
    if n < 1:
        raise DataError(f"the synthetic world of this config has no {split} images")
    rows = _to_rows(list(CONCEPTS), codebook_index(names))
    grid = cfg.model.clip.image_resolution // cfg.model.clip.vision_patch_size
    images, labels, objects = [], [], []
    for image_id in range(first[split], first[split] + n):
        img, label_map, _, background = render(image_id, syn)
        if syn.image_format == "jpg":
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=syn.jpeg_quality)
            buf.seek(0)
            img = Image.open(buf).convert("RGB")
        images.append(preprocess(img, cfg.data.image_size, cfg.data.resize))
        concepts = patch_concepts(label_map, grid, MIN_OBJECT_FRACTION, background=background)
        labels.append(rows[concepts])
        objects.append(object_patch_mask(concepts))
    background_rows = torch.zeros(len(names), dtype=torch.bool)
    background_rows[[r for c, r in enumerate(rows.tolist()) if r >= 0 and is_background_concept(c)]] = True
    return Truth(torch.stack(images), torch.stack(labels), torch.stack(objects), background_rows,
                 f"synthetic:seed={syn.seed}:{split}:{n}")


def _geometry(mask: np.ndarray, size: int, resize: str) -> np.ndarray:
    """A (H, W) label map resized (nearest) and cropped exactly as `preprocess` treats the image."""
    h, w = mask.shape
    tw, th = target_size(w, h, size, resize)
    out = np.asarray(Image.fromarray(mask).resize((tw, th), Image.NEAREST))
    if resize == "clip" and (tw, th) != (size, size):
        left, top = int(round((tw - size) / 2.0)), int(round((th - size) / 2.0))
        out = out[top:top + size, left:left + size]
    return out


def patch_truth_from_masks(label_map: np.ndarray, grid: int, is_thing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) map of category slots (0 = nothing annotated), is_thing per slot -> (slot per patch, object mask):
    an object patch has >= 25% thing pixels (label: the thing with most pixels); else the stuff with most pixels
    when stuff covers at least half the patch, else slot 0 (unannotated: 'background')."""
    k = len(is_thing)
    h, w = label_map.shape
    onehot = np.zeros((h, w, k), dtype=np.int32)
    np.put_along_axis(onehot, label_map[..., None].astype(np.int64), 1, axis=2)
    rows = np.linspace(0, h, grid + 1).round().astype(int)[:-1]
    cols = np.linspace(0, w, grid + 1).round().astype(int)[:-1]
    counts = np.add.reduceat(np.add.reduceat(onehot, rows, axis=0), cols, axis=1).reshape(grid * grid, k)
    total = counts.sum(-1)
    things = np.where(is_thing[None], counts, 0)
    stuff = np.where(~is_thing[None] & (np.arange(k) > 0)[None], counts, 0)
    is_object = things.sum(-1) >= MIN_OBJECT_FRACTION * total
    stuff_slot = np.where(stuff.sum(-1) >= 0.5 * total, stuff.argmax(-1), 0)
    return np.where(is_object, things.argmax(-1), stuff_slot), is_object


def coco_truth(cfg, instances: str | Path, images_dir: str | Path, n: int, names: Sequence[str]) -> Truth:
    """The first n images (by id) of a COCO instances (or stuff) file found in images_dir, masks decoded by
    pycocotools. Categories 1..90 are things, 92.. stuff; what nothing covers is 'background'."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ConfigError("--instances needs pycocotools: pip install 'fsgr[coco]'") from None
    with contextlib.redirect_stdout(io.StringIO()):       # pycocotools prints its progress
        coco = COCO(str(instances))
    index = codebook_index(names)
    cats = sorted(coco.cats)
    slot_of = {c: i + 1 for i, c in enumerate(cats)}                         # slot 0: nothing annotated
    slot_rows = torch.tensor([index.get("background", -1)] +
                             [index.get(_normalised_name(coco.cats[c]["name"]), -1) for c in cats])
    is_thing = np.array([False] + [c <= COCO_THING_MAX_ID for c in cats])
    grid = cfg.model.clip.image_resolution // cfg.model.clip.vision_patch_size
    size, resize = cfg.data.image_size, cfg.data.resize
    images, labels, objects = [], [], []
    for image_id in sorted(coco.imgs):
        if len(images) == n:
            break
        info = coco.imgs[image_id]
        path = Path(images_dir) / info["file_name"]
        if not path.is_file():
            continue
        label_map = np.zeros((info["height"], info["width"]), dtype=np.uint8)
        # large first, so a small object on top of a large one keeps its pixels
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None)), key=lambda a: -a["area"])
        for ann in anns:
            label_map[coco.annToMask(ann) > 0] = slot_of[ann["category_id"]]
        slots, is_object = patch_truth_from_masks(_geometry(label_map, size, resize), grid, is_thing)
        images.append(load_image(path, size, resize, draft=cfg.data.jpeg_draft))
        labels.append(slot_rows[torch.from_numpy(slots)])
        objects.append(torch.from_numpy(is_object))
    if not images:
        raise DataError(f"{instances}: none of its images is in {images_dir}")
    background_rows = torch.zeros(len(names), dtype=torch.bool)
    background_rows[[int(r) for r, thing in zip(slot_rows, is_thing) if r >= 0 and not thing]] = True
    return Truth(torch.stack(images), torch.stack(labels), torch.stack(objects), background_rows,
                 f"coco:{Path(instances).name}:{len(images)}")


# ---- the check ------------------------------------------------------------------------------------------------------


def _accuracy(right: torch.Tensor) -> Optional[float]:
    return float(right.float().mean()) if right.numel() else None


def check_semantics(cfg, truth: Truth, names: Sequence[str], clip, codebook: torch.Tensor,
                    batch_images: int = 100) -> dict:
    """Every labelling path against the truth -> the JSON of `fsgr check-semantics` (docs/design: "used", "paths",
    "signature")."""
    head = _head(cfg, codebook)
    clip.eval()
    predicted: dict[str, list[torch.Tensor]] = {p: [] for p in PATHS}
    for start in range(0, len(truth.images), batch_images):
        feats = patch_features(clip, truth.images[start:start + batch_images], cfg.model.backbone.aligned_patches,
                               prompt_norm=cfg.model.backbone.prompts.num_tokens > 0)
        for name, ids in label_paths(feats, head, clip.logit_scale.detach().float()).items():
            predicted[name].append(ids)
    scored = truth.labels >= 0
    paths = {}
    for name in PATHS:
        pred = torch.cat(predicted[name])
        right = pred.eq(truth.labels)
        per_concept = {}
        for row in truth.labels[scored].unique().tolist():
            where = truth.labels == row
            per_concept[names[row]] = {"accuracy": _accuracy(right[where]), "patches": int(where.sum()),
                                       "predicted": int((pred == row).sum())}
        background = scored & ~truth.is_object
        paths[name] = {"background_accuracy": _accuracy(truth.background_rows[pred[background]]),
                       "background_exact_accuracy": _accuracy(right[background]),
                       "object_accuracy": _accuracy(right[scored & truth.is_object]),
                       "patches": int(scored.sum()), "background_patches": int((scored & ~truth.is_object).sum()),
                       "object_patches": int((scored & truth.is_object).sum()),
                       "unscored_patches": int((~scored).sum()), "per_concept": per_concept}
    sem = cfg.model.semantic
    signature = (f"check-semantics|clip:{weights_fingerprint(clip)}|codebook:{len(names)}|images:{truth.source}|"
                 f"grid:{truth.labels.shape[1]}|object>={MIN_OBJECT_FRACTION}|topk:{sem.topk}|"
                 f"preselect:{sem.preselect}|aligned:{cfg.model.backbone.aligned_patches}|fsgr:{__version__}")
    return {"used": used_path(cfg), "images": len(truth.images), "paths": paths, "signature": signature}


def load_clip_and_codebook(cfg):
    """The config's CLIP and codebook (names, (C, E) embeddings), the codebook checked against that CLIP."""
    if not cfg.model.clip.path:
        raise ConfigError("model.clip.path is empty: check-semantics needs the CLIP the run will use")
    if not cfg.model.semantic.codebook:
        raise ConfigError("model.semantic.codebook is empty: check-semantics needs the codebook the run will use")
    clip = load_clip(resolve_clip(cfg.model.clip.path))
    codebook = load_codebook(resolve_codebook(cfg.model.semantic.codebook),
                             expected_size=cfg.model.semantic.codebook_size,
                             expected_fingerprint=weights_fingerprint(clip))
    if codebook.names is None:
        raise ConfigError(f"{cfg.model.semantic.codebook}: a bare tensor codebook has no class names to match the "
                          f"ground truth against; rebuild it with `fsgr codebook`")
    return clip, codebook.names, codebook.embeddings.float()


def table(result: dict) -> str:
    """The paths as a text table, the used one marked."""
    def cell(x):
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
    lines = [f"{'path':<18} {'background':>10} {'(exact)':>8} {'objects':>8} {'patches':>8}"]
    for name, p in result["paths"].items():
        mark = " <- used in training" if name == result["used"] else ""
        lines.append(f"{name:<18} {cell(p['background_accuracy']):>10} {cell(p['background_exact_accuracy']):>8} "
                     f"{cell(p['object_accuracy']):>8} {p['patches']:>8}{mark}")
    return "\n".join(lines) + "\n"
