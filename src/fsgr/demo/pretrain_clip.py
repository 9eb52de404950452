"""The tiny-CLIP recipe: a small CLIP trained from scratch, by our own code, on synthetic shapes images and captions.

Why it looks like this:
- The demo needs a CLIP whose *patch* features carry concepts (the semantic head labels patches MaskCLIP-style via
  SCLIP's CSA branch), not only one whose global embedding retrieves captions. Whole-scene captions alone teach the
  global embedding; shape identity then stays at chance in the patches. So each training pair is one of
    scene   the image with one of its 5 captions (the captions the demo trains on),
    object  the image with a text naming ONE of its objects ("a photo of a red circle."),
    crop    a crop around one object, resized back to full size, with that object's text,
  and the loss is CLIP's symmetric InfoNCE with *multi-positive* targets: an object text is a correct match for every
  image in the batch that holds that concept (else the same "red circle" text would be pushed away from the other
  images that show a red circle).
- A second image-text term of the same loss (weight `dense_weight`) scores each image by the mean over its patches of
  the patch-text cosine, with the patches taken exactly as FSGR reads them (CSA last block, plain LayerNorm, proj).
  Still only image-text pairs, no dense labels; but the gradient reaches every patch embedding in the space the
  semantic head quantises, as in GAP-pooled CLIPs whose patch tokens are known to segment far better than CLS-pooled
  ones. Measured on an H100 (docs/demo.md): dense patch accuracy 0.24 without it, 0.85 with it, similar retrieval.
- Everything per step runs on the device: the image pool (uint8), the caption tokens, the object boxes and concept
  sets live there, crops are one `affine_grid`/`grid_sample`, so a GPU is never waiting on Python.
- The images come from `fsgr.data.synthetic.render` with the pool's own seed (default 1; the demo dataset uses seed
  0), are JPEG round-tripped like the demo's files, and are rendered once by a process pool.
- Saved with `save_clip` (OpenAI key layout, fp16 values as OpenAI's archives) so it loads through `load_clip`.

Logged (JSON lines): loss/lr/logit scale every `log_every` steps; every `eval_every` steps and at the end, on held-out
images, image->text top-1 retrieval and the dense MaskCLIP-style patch accuracy (CSA path, 8x8 grid, nearest concept
text "a photo of a {concept}." among all concepts) over object patches, with colour and shape accuracy, and over
background patches (right when labelled with the image's texture concept), on the CSA path (ln_post and plain LN) and
on MaskCLIP's value path (`_value`).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fsgr.core.device import autocast, resolve_amp
from fsgr.data.config import SyntheticConfig
from fsgr.data.images import CLIP_MEAN, CLIP_STD
from fsgr.data.synthetic import (COLOUR_OF, CONCEPTS, SHAPE_OF, background_concept_id, captions_for, concept_id,
                                 object_patch_mask, patch_concepts, render)
from fsgr.models.backbone import csa_attention
from fsgr.models.clip import build_clip, load_clip, save_clip
from fsgr.models.config import ClipConfig
from fsgr.models.tokenizer import tokenize

OBJECT_TEMPLATES = ("a photo of a {}.", "a {}.", "a {} on a background.", "there is a {} in the picture")
CODEBOOK_TEMPLATE = "a photo of a {}."
MAX_OBJECTS = 3


@dataclass
class PretrainConfig:
    clip: ClipConfig = field(default_factory=lambda: ClipConfig(
        embed_dim=128, image_resolution=96, vision_layers=6, vision_width=192, vision_patch_size=12, vision_heads=3,
        context_length=32, transformer_width=128, transformer_heads=2, transformer_layers=4))
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    min_lr_ratio: float = 0.02        # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 200
    weight_decay: float = 0.1         # AdamW on >= 2-d weights only (not gains, biases, embeddings' scale)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    max_logit_scale: float = math.log(100.0)   # CLIP clamps exp(logit_scale) at 100
    pool_size: int = 20000            # training images rendered once
    eval_size: int = 512              # held-out images (ids after the pool) for retrieval and dense accuracy
    data_seed: int = 1                # synthetic seed of the pool (the demo dataset uses 0)
    image_size: int = 96
    frac_scene: float = 0.4           # share of pairs of each kind (scene / object text / crop); the rest are crops
    frac_object: float = 0.35
    jpeg_quality: int = 92
    seed: int = 0
    log_every: int = 50
    eval_every: int = 500
    workers: int = 0                  # render processes (0 = in this process)
    time_budget: Optional[float] = None  # seconds for the whole run: after 100 steps, `steps` is cut to what fits
    dense_weight: float = 0.5         # weight of the patch-pooled image-text term (0 = plain CLIP loss only)
    # background concepts (issue 22): the share of pairs "whole image" + "a photo of a striped background." (taken
    # from the crops' share), and the weight of the patch-text term: every patch of a whole image against every
    # concept text, its target the generator's concept of that patch (background patches: their texture), on the
    # CSA path as FSGR reads it and on MaskCLIP's value path. 0 and 0: the original recipe.
    frac_background: float = 0.0
    patch_weight: float = 0.0
    init: Optional[str] = None        # continue from these CLIP weights (e.g. src/fsgr/assets/tiny_clip.pt)


# ---- the image pool ------------------------------------------------------------------------------------------------


def _render_chunk(args) -> list[tuple]:
    """Render image ids [start, stop): (jpeg-round-tripped RGB uint8, label map, boxes, concept ids, caption tokens)."""
    start, stop, seed, size, quality, context = args
    cfg = SyntheticConfig(seed=seed, image_size=size, max_objects=MAX_OBJECTS)
    out = []
    for image_id in range(start, stop):
        img, label, objects, bg = render(image_id, cfg)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        pixels = np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8)
        caps = captions_for(objects, bg, size, np.random.default_rng([seed, image_id, 1]), 5)
        tokens = tokenize(caps, context_length=context, truncate=True).numpy().astype(np.int32)
        boxes = np.array([[o["cx"], o["cy"], o["r"]] for o in objects], dtype=np.float32).reshape(-1, 3)
        ids = np.array([concept_id(o["colour"], o["shape"]) for o in objects], dtype=np.int64)
        out.append((pixels, label, boxes, ids, tokens, background_concept_id(bg)))
    return out


@dataclass
class Pool:
    images: torch.Tensor      # (N, 3, S, S) uint8
    labels: torch.Tensor      # (N, S, S) uint8 concept maps
    boxes: torch.Tensor       # (N, 3, 3) float (cx, cy, r) per object slot, zeros when absent
    concepts: torch.Tensor    # (N, 3) long concept ids, -1 when absent
    num_objects: torch.Tensor  # (N,) long
    tokens: torch.Tensor      # (N, 5, context) long caption tokens
    background: torch.Tensor  # (N,) long concept id of the image's background texture

    def to(self, device) -> "Pool":
        return Pool(*(getattr(self, f).to(device) for f in ("images", "labels", "boxes", "concepts", "num_objects",
                                                              "tokens", "background")))

    def patch_truth(self, grid: int) -> torch.Tensor:
        """(N, grid*grid) the generator's concept of every patch, background patches labelled with their texture."""
        words = [CONCEPTS[int(b)].split()[0] for b in self.background]
        return torch.stack([patch_concepts(lab.cpu().numpy(), grid, background=w)
                            for lab, w in zip(self.labels, words)]).to(self.labels.device)

    def __len__(self) -> int:
        return self.images.shape[0]


def render_pool(start: int, count: int, seed: int, size: int, context: int, quality: int = 92,
                workers: int = 0) -> Pool:
    """Images start..start+count-1 of the synthetic generator with `seed`, as tensors (CPU)."""
    chunk = 250
    jobs = [(s, min(s + chunk, start + count), seed, size, quality, context) for s in range(start, start + count, chunk)]
    if workers and workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
            parts = list(ex.map(_render_chunk, jobs))
    else:
        parts = [_render_chunk(j) for j in jobs]
    items = [it for part in parts for it in part]
    n = len(items)
    boxes = np.zeros((n, MAX_OBJECTS, 3), dtype=np.float32)
    concepts = np.full((n, MAX_OBJECTS), -1, dtype=np.int64)
    for i, (_, _, b, ids, _, _) in enumerate(items):
        boxes[i, :len(ids)] = b
        concepts[i, :len(ids)] = ids
    return Pool(images=torch.from_numpy(np.stack([it[0] for it in items])).permute(0, 3, 1, 2).contiguous(),
                labels=torch.from_numpy(np.stack([it[1] for it in items])),
                boxes=torch.from_numpy(boxes), concepts=torch.from_numpy(concepts),
                num_objects=torch.from_numpy((concepts >= 0).sum(1)),
                tokens=torch.from_numpy(np.stack([it[4] for it in items])).long(),
                background=torch.tensor([it[5] for it in items], dtype=torch.long))


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) uint8 -> CLIP-normalised float, as fsgr.data.images does for the demo's files."""
    mean = torch.tensor(CLIP_MEAN, device=images_uint8.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(CLIP_STD, device=images_uint8.device).view(1, 3, 1, 1) * 255
    return (images_uint8.float() - mean) / std


def concept_texts(context: int) -> tuple[list[str], torch.Tensor]:
    """All concept names and their tokens per object template: (names, (T, C, context) long)."""
    toks = torch.stack([tokenize([t.format(c) for c in CONCEPTS], context_length=context) for t in OBJECT_TEMPLATES])
    return list(CONCEPTS), toks


# ---- one training batch --------------------------------------------------------------------------------------------


def make_batch(pool: Pool, concept_tokens: torch.Tensor, cfg: PretrainConfig, gen: torch.Generator,
               with_index: bool = False):
    """-> images (B, 3, S, S) normalised, tokens (B, ctx), positives (B images x B texts) bool. All on pool's device.
    with_index: also (pool index (B,), whole-image mask (B,)) for the patch-text term."""
    dev = pool.images.device
    B, S = cfg.batch_size, pool.images.shape[-1]
    num_concepts = concept_tokens.shape[1]
    idx = torch.randint(len(pool), (B,), generator=gen, device=dev)
    u = torch.rand(B, generator=gen, device=dev)
    # 0 scene, 1 object, 2 crop, 3 background (the last frac_background of the draws, taken from the crops)
    kind = (u >= cfg.frac_scene).long() + (u >= cfg.frac_scene + cfg.frac_object).long() + \
        (u >= 1 - cfg.frac_background).long()
    nobj = pool.num_objects[idx]
    slot = (torch.rand(B, generator=gen, device=dev) * nobj).long().clamp(max=MAX_OBJECTS - 1)
    obj_concept = torch.where(kind == 3, pool.background[idx], pool.concepts[idx, slot])    # (B,) the text's concept
    cap = torch.randint(pool.tokens.shape[1], (B,), generator=gen, device=dev)
    tmpl = torch.randint(concept_tokens.shape[0], (B,), generator=gen, device=dev)
    tokens = torch.where((kind == 0)[:, None], pool.tokens[idx, cap], concept_tokens[tmpl, obj_concept])

    # crops: a square around the chosen object, at least 40% of the image side, resampled to full size
    box = pool.boxes[idx, slot]                                                                # (B, 3) cx, cy, r
    zoom = torch.rand(B, generator=gen, device=dev) * 0.7 + 1.3
    half = torch.maximum(box[:, 2] * zoom, torch.full_like(box[:, 2], 0.2 * S)).clamp(max=S / 2)
    cx = box[:, 0].clamp(min=half, max=S - half)
    cy = box[:, 1].clamp(min=half, max=S - half)
    crop = kind == 2
    scale = torch.where(crop, half / (S / 2), torch.ones_like(half))
    theta = torch.zeros(B, 2, 3, device=dev)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, 0, 2] = torch.where(crop, (cx - S / 2) / (S / 2), torch.zeros_like(cx))
    theta[:, 1, 2] = torch.where(crop, (cy - S / 2) / (S / 2), torch.zeros_like(cy))
    images = normalise(pool.images[idx])
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # which concepts each image holds (a crop: only its object), and which texts are correct for which image
    holds = torch.zeros(B, num_concepts, dtype=torch.bool, device=dev)
    present = pool.concepts[idx]
    holds.scatter_(1, present.clamp(min=0), present >= 0)
    holds[:, 0] = False   # concept 0 is "background": slot -1 was clamped onto it
    if cfg.frac_background > 0:   # a whole image also holds its background texture
        holds[torch.arange(B, device=dev), pool.background[idx]] = True
    holds = torch.where(crop[:, None], F.one_hot(obj_concept, num_concepts).bool(), holds)
    positives = torch.eye(B, dtype=torch.bool, device=dev)
    object_text = kind >= 1
    positives |= object_text[None, :] & holds.gather(1, obj_concept[None, :].expand(B, B))
    if with_index:
        return images, tokens, positives, idx, ~crop
    return images, tokens, positives


def multi_positive_clip_loss(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where row i may have several correct columns: -log sum_{j in pos} softmax_j, both ways."""
    logits = logits.float()
    neg_inf = torch.finfo(logits.dtype).min
    i2t = torch.logsumexp(logits.masked_fill(~positives, neg_inf), 1) - torch.logsumexp(logits, 1)
    t2i = torch.logsumexp(logits.t().masked_fill(~positives.t(), neg_inf), 1) - torch.logsumexp(logits.t(), 1)
    return -(i2t.mean() + t2i.mean()) / 2


# ---- evaluation ----------------------------------------------------------------------------------------------------


def _last_block_input(visual, images: torch.Tensor) -> torch.Tensor:
    """The tokens entering the image tower's last block, (B, 1 + P, W): shared by the CLS and the CSA paths."""
    x = visual.embed(images)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    return x


def _cls_embedding(visual, x: torch.Tensor) -> torch.Tensor:
    """(B, E), as `visual(images)` gives it (not normalised)."""
    return visual.ln_post(visual.transformer.resblocks[-1](x)[:, 0]) @ visual.proj


def _csa_patches(visual, x: torch.Tensor, norm: str) -> torch.Tensor:
    """MaskCLIP/SCLIP dense features (B, P, E), L2-normalised: the last block with CSA attention on the patches
    entering it, then a plain LayerNorm (as FSGR's prompt_norm starts) or ln_post, and proj."""
    last = visual.transformer.resblocks[-1]
    z = x[:, 1:]
    z = z + csa_attention(last, z)
    z = z + last.mlp(last.ln_2(z))
    z = visual.ln_post(z) if norm == "ln_post" else F.layer_norm(z, z.shape[-1:], eps=1e-6)
    return F.normalize(z @ visual.proj, dim=-1)


def _value_patches(visual, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's value path (B, P, E), L2-normalised: ln_post(out_proj(v)) @ proj of the patches entering the last
    block, as `FSGRBackbone(value_patches=True)` reads it."""
    last = visual.transformer.resblocks[-1]
    _, _, v = last.attn.qkv(last.ln_1(x[:, 1:]))
    return F.normalize(visual.ln_post(last.attn.merge_heads(v)) @ visual.proj, dim=-1)


@torch.no_grad()
def csa_patch_embeddings(visual, images: torch.Tensor, norm: str = "ln_post") -> torch.Tensor:
    """The dense CSA features alone, without gradients. (B, P, E), L2-normalised."""
    return _csa_patches(visual, _last_block_input(visual, images), norm)


@torch.no_grad()
def evaluate_clip(model, pool: Pool, batch: int = 128, autocast_dtype=None) -> dict:
    """Retrieval (image -> its first caption among all held-out first captions, top-1) and dense patch accuracy."""
    was_training = model.training
    model.eval()
    dev = pool.images.device
    ctx = model.context_length
    _, ctoks = concept_texts(ctx)
    with autocast(dev, autocast_dtype):
        concept_emb = F.normalize(model.encode_text(ctoks[0].to(dev)).float(), dim=-1)           # (C, E)
        img_emb, txt_emb, dense = [], [], {"ln_post": [], "plain_ln": [], "value": []}
        for s in range(0, len(pool), batch):
            images = normalise(pool.images[s:s + batch])
            x = _last_block_input(model.visual, images)          # one tower pass for the CLS and both dense reads
            img_emb.append(F.normalize(_cls_embedding(model.visual, x).float(), dim=-1))
            txt_emb.append(F.normalize(model.encode_text(pool.tokens[s:s + batch, 0]).float(), dim=-1))
            for norm in ("ln_post", "plain_ln"):
                dense[norm].append(_csa_patches(model.visual, x, norm).float())
            dense["value"].append(_value_patches(model.visual, x).float())
    img, txt = torch.cat(img_emb), torch.cat(txt_emb)
    retrieval = (img @ txt.t()).argmax(1).eq(torch.arange(len(img), device=dev)).float().mean().item()
    grid = model.visual.grid_size
    truth = pool.patch_truth(grid)                                                           # (N, P)
    obj = object_patch_mask(truth)
    colour_of = torch.tensor(COLOUR_OF, device=dev)
    shape_of = torch.tensor(SHAPE_OF, device=dev)
    out = {"retrieval_top1": retrieval, "object_patches": int(obj.sum())}
    for norm, chunks in dense.items():
        pred = (torch.cat(chunks) @ concept_emb.t()).argmax(-1)                                    # (N, P)
        sfx = {"ln_post": "", "plain_ln": "_plain_ln", "value": "_value"}[norm]
        out[f"dense_acc{sfx}"] = pred[obj].eq(truth[obj]).float().mean().item()
        out[f"dense_colour_acc{sfx}"] = (colour_of[pred[obj]] == colour_of[truth[obj]]).float().mean().item()
        out[f"dense_shape_acc{sfx}"] = (shape_of[pred[obj]] == shape_of[truth[obj]]).float().mean().item()
        # background patches: labelled with their own texture concept
        out[f"dense_background_acc{sfx}"] = pred[~obj].eq(truth[~obj]).float().mean().item()
    model.train(was_training)
    return out


# ---- the loop ------------------------------------------------------------------------------------------------------


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to cfg.lr over warmup_steps, then cosine to lr * min_lr_ratio at cfg.steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def param_groups(model, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def pretrain(cfg: PretrainConfig, out: Optional[str | os.PathLike], device: str = "cpu",
             log: Callable[[dict], None] = print, pool: Optional[Pool] = None,
             eval_pool: Optional[Pool] = None) -> tuple[torch.nn.Module, list[dict]]:
    """Train a tiny CLIP; save it to `out` (fp16 values, OpenAI keys) unless out is None. -> (model fp32, log rows)."""
    dev = torch.device(device)
    t0 = time.time()
    ccfg = cfg.clip
    if pool is None:
        pool = render_pool(0, cfg.pool_size, cfg.data_seed, cfg.image_size, ccfg.context_length, cfg.jpeg_quality,
                           cfg.workers)
    if eval_pool is None:
        eval_pool = render_pool(cfg.pool_size, cfg.eval_size, cfg.data_seed, cfg.image_size, ccfg.context_length,
                                cfg.jpeg_quality, cfg.workers)
    pool, eval_pool = pool.to(dev), eval_pool.to(dev)
    rows: list[dict] = []

    def emit(row: dict) -> None:
        rows.append(row)
        log(row)

    emit({"event": "data", "pool": len(pool), "eval": len(eval_pool), "seconds": round(time.time() - t0, 2)})

    torch.manual_seed(cfg.seed)
    if cfg.init:    # continue-pretraining: the architecture is the file's
        model = load_clip(cfg.init).to(dev)
        ccfg = dataclasses.replace(model.cfg, path=None)
    else:
        model = build_clip(copy.deepcopy(ccfg)).to(dev)
    model.train()
    patch_truth = pool.patch_truth(model.visual.grid_size) if cfg.patch_weight > 0 else None
    _, ctoks = concept_texts(ccfg.context_length)
    ctoks = ctoks.to(dev)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    gen = torch.Generator(device=dev)
    gen.manual_seed(cfg.seed)
    amp_dtype = resolve_amp("auto", dev)     # the trainer's choice: bf16 where the GPU has it, else fp16; CPU fp32
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)   # fp16 needs loss scaling
    t_train = time.time()
    cfg = copy.deepcopy(cfg)
    step = 0
    while step < cfg.steps:
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        images, tokens, positives, idx, whole = make_batch(pool, ctoks, cfg, gen, with_index=True)
        with autocast(dev, amp_dtype):
            text = F.normalize(model.encode_text(tokens).float(), dim=-1)                          # (B, E)
            if cfg.dense_weight > 0 or patch_truth is not None:
                x = _last_block_input(model.visual, images)
                image, patches = _cls_embedding(model.visual, x), _csa_patches(model.visual, x, "plain_ln")
            else:
                image, patches = model.encode_image(images), None
            if patch_truth is not None:    # every concept under one template drawn for this step
                template = int(torch.randint(ctoks.shape[0], (), generator=gen, device=dev))
                concepts = F.normalize(model.encode_text(ctoks[template]).float(), dim=-1)        # (C, E)
                values = _value_patches(model.visual, x)
        scale = model.logit_scale.exp()
        image = F.normalize(image.float(), dim=-1)
        loss = multi_positive_clip_loss(scale * image @ text.t(), positives)
        if patches is not None and cfg.dense_weight > 0:   # mean over patches of the patch-text cosine
            loss = loss + cfg.dense_weight * multi_positive_clip_loss(scale * patches.float().mean(1) @ text.t(),
                                                                      positives)
        if patch_truth is not None and whole.any():   # whole images only: a crop's patches moved
            target = patch_truth[idx[whole]].reshape(-1)
            for feats in (patches, values):
                logits = scale * feats[whole].float().reshape(-1, feats.shape[-1]) @ concepts.t()
                loss = loss + cfg.patch_weight / 2 * F.cross_entropy(logits, target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretrain-clip: non-finite loss {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        with torch.no_grad():
            model.logit_scale.clamp_(0, cfg.max_logit_scale)
        if cfg.time_budget and step + 1 == 100:
            # fit the schedule into the budget (the cosine is then defined on the new total), leaving 10% spare
            rate = 100 / (time.time() - t_train)
            fit = int(100 + (cfg.time_budget * 0.9 - (time.time() - t0)) * rate)
            if fit < cfg.steps:
                emit({"event": "time_budget", "steps_per_s": round(rate, 2), "steps": max(fit, 101),
                      "was": cfg.steps})
                cfg.steps = max(fit, 101)
        last = step + 1 == cfg.steps
        if (step + 1) % cfg.log_every == 0 or step == 0 or last:
            emit({"step": step + 1, "loss": round(loss.item(), 5), "lr": lr,
                  "logit_scale": round(model.logit_scale.exp().item(), 3),
                  "seconds": round(time.time() - t0, 1),
                  "steps_per_s": round((step + 1) / (time.time() - t_train), 2)})
        if (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or last:
            emit({"eval_step": step + 1, **{k: (round(v, 4) if isinstance(v, float) else v)
                                            for k, v in evaluate_clip(model, eval_pool, autocast_dtype=amp_dtype).items()},
                  "seconds": round(time.time() - t0, 1)})
            if out is not None:   # a run stopped from outside still leaves its latest evaluated weights
                _save(model, out)
                emit({"event": "saved", "step": step + 1, "out": str(out), "bytes": Path(out).stat().st_size,
                      "seconds": round(time.time() - t0, 1)})
        step += 1
    emit({"event": "done", "steps": cfg.steps, "config": {k: v for k, v in asdict(cfg).items() if k != "clip"},
          "clip": asdict(ccfg), "seconds": round(time.time() - t0, 1)})
    return model.float().cpu().eval(), rows


def _save(model, out) -> None:
    half = copy.deepcopy(model).cpu().half()     # fp16 values, as OpenAI's archives; load_clip reads them as fp32
    half.cfg = copy.deepcopy(model.cfg)
    save_clip(half, out)                         # atomic


def json_logger(path: Optional[str | os.PathLike]) -> Callable[[dict], None]:
    fh = open(path, "a", buffering=1) if path else None

    def log(row: dict) -> None:
        line = json.dumps(row)
        print(line, flush=True)
        if fh is not None:
            fh.write(line + "\n")
    return log
