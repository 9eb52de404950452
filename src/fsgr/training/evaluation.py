"""Evaluation of a split: beam-search captions scored with `fsgr.metrics` (COCO toolkit definitions), plus the
validation XE(+SupCon) loss in eval mode. Under DDP each process decodes its shard of images; predictions are
gathered and rank 0 scores them; everyone receives the scores (model selection must agree across processes).

Images are decoded in `data.workers` loader processes, as in training. The references of a split are PTB-tokenised
once (`TokenizedReferences`, kept by the trainer across epochs). With `tolerate_metric_failures` (validation during
training) a Java metric that crashes or times out is reported unavailable with its reason instead of raising:
an evaluation fault must not cost the epoch; CIDEr (pure Python, the selection metric) still raises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from fsgr.core.device import autocast
from fsgr.data.datasets import CaptionDataset, EvalDataset, collate_captions, collate_eval, make_loader
from fsgr.errors import FsgrError
from fsgr.files import atomic_write_text
from fsgr.metrics.score import parse_metrics, score_tokenized, tokenize_groups
from fsgr.metrics.signature import signature
from fsgr.metrics.tokenizer import ptb_tokenize
from fsgr.models.decoding import DecodeSettings, decode_images
from fsgr.core.distributed import DistInfo, all_gather_objects, all_reduce_sum, broadcast_object
from fsgr.training.losses import nll_sum, patch_contrastive_loss


class TokenizedReferences:
    """The PTB-tokenised references of a list of records, as `fsgr.metrics.score` tokenises them (one call, in
    image order). Built once per split and reused by every evaluation of that split."""

    def __init__(self, records: Sequence):
        self.image_ids = [int(r.image_id) for r in records]
        self.tokens: list[list[str]] = tokenize_groups([r.captions for r in records])


def score_predictions(refs: TokenizedReferences, preds: dict[int, str], metrics: str,
                      tolerate_failures: bool = False, java_timeout: float | None = None):
    """`fsgr.metrics.Scores` of `preds` (one caption per image of `refs`). tolerate_failures: a Java metric whose
    process fails (crash, time-out, pipe error) goes to `.unavailable` with its reason instead of raising;
    java_timeout: seconds a METEOR/SPICE run may take (see `fsgr.metrics.score.score_tokenized`)."""
    missing = [i for i in refs.image_ids if i not in preds]
    if missing or len(preds) != len(refs.image_ids):
        raise FsgrError(f"evaluation: {len(preds)} predictions for {len(refs.image_ids)} images "
                        f"(missing e.g. {missing[:5]})")
    cands = ptb_tokenize([preds[i] for i in refs.image_ids])
    return score_tokenized(refs.image_ids, refs.tokens, cands, parse_metrics(metrics),
                           tolerate_failures=tolerate_failures, java_timeout=java_timeout)


def eval_loader(dataset, cfg, collate_fn):
    """Images in order, decoded in `data.workers` processes (as training; none on a 0-worker config)."""
    return make_loader(dataset, batch_size=max(1, cfg.eval.batch_images), shuffle=False, workers=cfg.data.workers,
                       pin_memory=cfg.data.pin_memory, prefetch_factor=cfg.data.prefetch_factor,
                       collate_fn=collate_fn, rank=0, world_size=1)


def evaluate_split(model, records: Sequence, vocab, cfg, device: torch.device, dist: DistInfo = DistInfo(),
                   amp_dtype=None, with_loss: bool = True, predictions_path: Optional[Path] = None,
                   beam_size: Optional[int] = None, max_len: Optional[int] = None,
                   patch_labels=None, metrics: Optional[str] = None,
                   references: Optional[TokenizedReferences] = None, tolerate_metric_failures: bool = False,
                   encoded=None, controls: Optional[dict] = None) -> dict[str, Any]:
    """Scores (and loss) of `records` (one split). Writes COCO-results predictions on rank 0 if a path is given.
    `patch_labels`: the per-patch labels training uses (data.patch_labels), so that the validation SupCon term is
    the training one (and an oracle model's grid is built from them); None = the semantic head's concept ids.
    `metrics`: default eval.metrics.
    `references`: the split's tokenised references if already built (else built here). `encoded`: the split's
    encoded captions (`fsgr.data.encoded.EncodedCaptions`) for the validation loss, if already built."""
    records = list(records)
    if cfg.eval.max_images is not None:
        records = records[: cfg.eval.max_images]
    if not records:
        raise ValueError("evaluate_split: no images in the split")
    beam_size = cfg.eval.beam_size if beam_size is None else beam_size
    max_len = cfg.eval.max_len if max_len is None else max_len
    controls = {**DecodeSettings.from_config(cfg.eval).controls(), **(controls or {})}
    shard = records[dist.rank::dist.world_size]
    was_training = model.training
    model.eval()
    preds: dict[int, str] = {}
    # decoding needs the labels only where they build the grid (an oracle); offline SupCon labels may cover train only
    images = EvalDataset(shard, cfg.data.image_size, cfg.data.resize, draft=cfg.data.jpeg_draft,
                         patch_labels=patch_labels if cfg.model.semantic.grid_from_given_labels else None)
    for batch in eval_loader(images, cfg, collate_eval):
        batch = batch.to(device)
        with autocast(device, amp_dtype):
            captions = decode_images(model, batch.images, vocab, beam_size, max_len, controls,
                                     patch_concepts=batch.patch_labels)
        preds.update((int(image_id), caption) for image_id, caption in zip(batch.image_ids, captions))
    result: dict[str, Any] = {}
    if with_loss:
        result.update(validation_loss(model, shard, vocab, cfg, device, dist, amp_dtype, patch_labels,
                                      encoded=None if encoded is None else
                                      encoded.subset(records, rank=dist.rank, world_size=dist.world_size)))
    merged: dict[int, str] = {}
    for part in all_gather_objects(preds, dist):
        merged.update(part)
    scores = None
    if dist.is_main:

        if references is None or references.image_ids != [int(r.image_id) for r in records]:
            references = TokenizedReferences(records)
        scored = score_predictions(references, merged, metrics or cfg.eval.metrics, tolerate_metric_failures,
                                   cfg.eval.java_timeout)
        # metrics that cannot run here (no Java for METEOR/SPICE) are absent, with the reason: never a silent 0
        scores = {"scores": {k: float(v) for k, v in scored.items()},
                  "unavailable": {k: str(v) for k, v in dict(getattr(scored, "unavailable", {}) or {}).items()},
                  "signature": signature({int(r.image_id): r.captions for r in records}, merged,
                                         parse_metrics(metrics or cfg.eval.metrics),
                                         extra={"beam": beam_size, "max-len": max_len})}
        if predictions_path is not None:
            write_predictions(merged, predictions_path)
    scores = broadcast_object(scores, dist)
    model.train(was_training)
    out = {"scores": scores["scores"], **result, "num_images": len(records), "signature": scores["signature"]}
    if scores["unavailable"]:
        out["unavailable"] = scores["unavailable"]
    return out


@torch.no_grad()
def validation_loss(model, records: Sequence, vocab, cfg, device, dist: DistInfo, amp_dtype=None,
                    patch_labels=None, encoded=None) -> dict[str, float]:
    """Teacher-forced NLL per target token (+ contrastive_weight x mean SupCon per batch), eval mode.
    `encoded`: these records' encoded captions if already built (no re-tokenising every epoch)."""
    ds = CaptionDataset(list(records), vocab, image_size=cfg.data.image_size, resize=cfg.data.resize,
                        max_len=cfg.data.max_len, length_policy=cfg.data.length_policy, batching="image",
                        patch_labels=patch_labels, encoded=encoded, draft=cfg.data.jpeg_draft)
    loader = eval_loader(ds, cfg, collate_captions)
    nll_total, targets, con_total, con_batches = 0.0, 0, 0.0, 0
    t = cfg.train
    for batch in loader:
        batch = batch.to(device)
        with autocast(device, amp_dtype):
            out = model(batch.images, batch.tokens, batch.image_index, patch_concepts=batch.patch_labels)
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
    rows = [{"image_id": int(i), "caption": c} for i, c in sorted(preds.items())]
    atomic_write_text(path, json.dumps(rows, indent=0))
