"""Evaluation of a split: beam-search captions scored with `fsgr.metrics` (COCO toolkit definitions), plus the
validation XE(+SupCon) loss in eval mode. Under DDP each process decodes its shard of images; predictions are
gathered and rank 0 scores them; everyone receives the scores (model selection must agree across processes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch.utils.data import DataLoader

from fsgr.core.device import autocast
from fsgr.data.datasets import CaptionDataset, EvalDataset, collate_captions, collate_eval
from fsgr.metrics import score
from fsgr.models.decoding import decode_images
from fsgr.training.distributed import DistInfo, all_gather_objects, all_reduce_sum, broadcast_object
from fsgr.training.losses import nll_sum, patch_contrastive_loss


def evaluate_split(model, records: Sequence, vocab, cfg, device: torch.device, dist: DistInfo = DistInfo(),
                   amp_dtype=None, with_loss: bool = True, predictions_path: Optional[Path] = None,
                   beam_size: Optional[int] = None, max_len: Optional[int] = None,
                   patch_labels=None) -> dict[str, Any]:
    """Scores (and loss) of `records` (one split). Writes COCO-results predictions on rank 0 if a path is given.
    `patch_labels`: the offline per-patch labels training uses (data.patch_labels), so that the validation SupCon
    term is the training one; None = the semantic head's concept ids."""
    records = list(records)
    if cfg.eval.max_images is not None:
        records = records[: cfg.eval.max_images]
    if not records:
        raise ValueError("evaluate_split: no images in the split")
    beam_size = cfg.eval.beam_size if beam_size is None else beam_size
    max_len = cfg.eval.max_len if max_len is None else max_len
    shard = records[dist.rank::dist.world_size]
    was_training = model.training
    model.eval()
    preds: dict[int, str] = {}
    images = EvalDataset(shard, cfg.data.image_size, cfg.data.resize, draft=cfg.data.jpeg_draft)
    loader = DataLoader(images, batch_size=cfg.eval.batch_images, shuffle=False, num_workers=0,
                        collate_fn=collate_eval)
    for batch in loader:
        batch = batch.to(device)
        with autocast(device, amp_dtype):
            captions = decode_images(model, batch.images, vocab, beam_size, max_len)
        preds.update((int(image_id), caption) for image_id, caption in zip(batch.image_ids, captions))
    result: dict[str, Any] = {}
    if with_loss:
        result.update(validation_loss(model, shard, vocab, cfg, device, dist, amp_dtype, patch_labels))
    merged: dict[int, str] = {}
    for part in all_gather_objects(preds, dist):
        merged.update(part)
    scores = None
    if dist.is_main:
        refs = {int(r.image_id): list(r.captions) for r in records}
        scored = score(refs, merged, metrics=cfg.eval.metrics)
        # metrics that cannot run here (no Java for METEOR/SPICE) are absent, with the reason: never a silent 0
        scores = {"scores": {k: float(v) for k, v in scored.items()},
                  "unavailable": {k: str(v) for k, v in dict(getattr(scored, "unavailable", {}) or {}).items()}}
        if predictions_path is not None:
            write_predictions(merged, predictions_path)
    scores = broadcast_object(scores, dist)
    model.train(was_training)
    out = {"scores": scores["scores"], **result, "num_images": len(records)}
    if scores["unavailable"]:
        out["unavailable"] = scores["unavailable"]
    return out


@torch.no_grad()
def validation_loss(model, records: Sequence, vocab, cfg, device, dist: DistInfo, amp_dtype=None,
                    patch_labels=None) -> dict[str, float]:
    """Teacher-forced NLL per target token (+ contrastive_weight x mean SupCon per batch), eval mode."""
    ds = CaptionDataset(list(records), vocab, image_size=cfg.data.image_size, resize=cfg.data.resize,
                        max_len=cfg.data.max_len, length_policy=cfg.data.length_policy, batching="image",
                        patch_labels=patch_labels, draft=cfg.data.jpeg_draft)
    images_per_batch = max(1, cfg.eval.batch_images)
    loader = DataLoader(ds, batch_size=images_per_batch, shuffle=False, num_workers=0, collate_fn=collate_captions)
    nll_total, targets, con_total, con_batches = 0.0, 0, 0.0, 0
    t = cfg.train
    for batch in loader:
        batch = batch.to(device)
        with autocast(device, amp_dtype):
            out = model(batch.images, batch.tokens, batch.image_index)
        s, n = nll_sum(out.logprobs, batch.tokens, vocab.pad_id)
        nll_total += float(s)
        targets += n
        if t.contrastive_weight > 0:
            con_total += float(patch_contrastive_loss(out, batch.patch_labels, t))
            con_batches += 1
    nll_total, targets, con_total, con_batches = all_reduce_sum([nll_total, targets, con_total, con_batches],
                                                                device, dist)
    nll = nll_total / max(targets, 1)
    con = con_total / con_batches if con_batches else 0.0
    return {"loss": nll + t.contrastive_weight * con, "nll": nll, "contrastive": con}


def write_predictions(preds: dict[int, str], path: Path) -> None:
    """COCO results format: [{"image_id": int, "caption": str}, ...], sorted by image id."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"image_id": int(i), "caption": c} for i, c in sorted(preds.items())]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rows, indent=0))
    tmp.replace(path)
