"""Bulk captioning on a Ray cluster (`pip install fsgr[ray]`): `fsgr caption --engine ray --checkpoint CKPT --out DIR`.

    counts = caption_with_ray("last.pt", list_images(["photos/"]), Path("captions/"), resume=True)

The listing is cut into parts of `part_size` images (in listing order, so a part is the same images on every run of
the same sources). Ray Data streams the parts not yet finished through a pool of actors, each holding one `Captioner`
(one GPU each on a cluster with GPUs, one CPU otherwise); Ray restarts a failed actor and retries its part. Each actor
reads and decodes its images with fsgr's own loader (`caption_rows`, the plain path's code: Ray's `read_images`
decodes and resizes with PIL, which would change the pixels and so the captions). The driver writes each part as it
arrives, atomically, as `DIR/part-K-of-N.jsonl` (fsgr's caption file: header row, one row per image), so a run cut
off anywhere leaves only whole parts. A part is finished when it holds every one of its images without an error;
`resume` skips finished parts and redoes the others. `fsgr caption --merge DIR --out FILE` joins the parts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import ray

from fsgr.config import Config, from_dict
from fsgr.core.checkpoint import checkpoint_sha256, load_checkpoint
from fsgr.errors import ConfigError
from fsgr.files import atomic_write_text
from fsgr.models.decoding import DecodeSettings
from fsgr.serving.bulk import (BulkCounts, caption_rows, header, path_key, read_caption_file, sources_sha256)


def part_name(index: int, total: int) -> str:
    return f"part-{index:05d}-of-{total:05d}.jsonl"


class _PartCaptioner:
    """A Ray actor: one Captioner; a batch of parts (their index and JSON list of paths) -> their rows as JSONL."""

    def __init__(self, checkpoint: str, decoding: dict, batch_size: Optional[int], device: Optional[str],
                 workers: int, precision: Optional[str] = None):
        import torch

        from fsgr.inference import Captioner

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.captioner = Captioner.from_checkpoint(checkpoint, device=device, precision=precision)
        self.settings = self.captioner.settings(**decoding)
        self.batch_size = batch_size or self.captioner.cfg.eval.batch_images
        self.workers = workers

    def __call__(self, batch: dict) -> dict:
        texts = []
        for paths in batch["paths"]:
            rows = caption_rows(self.captioner, json.loads(paths), self.settings, self.batch_size, self.workers,
                                progress=False)
            texts.append("".join(json.dumps(row) + "\n" for row in rows))
        decoding = json.dumps(header(None, self.settings)["decoding"])
        return {"part": batch["part"], "rows": np.array(texts, dtype=object),
                "decoding": np.array([decoding] * len(texts), dtype=object),
                "precision": np.array([self.captioner.precision] * len(texts), dtype=object)}


def check_decoding(checkpoint: str | os.PathLike, decoding: dict) -> None:
    """Refuse `decoding` (DecodeSettings overrides) for this checkpoint's model before the job starts, as each actor's
    `Captioner.settings` would once Ray had started (DecodingValueError)."""
    ckpt = load_checkpoint(checkpoint)
    cfg = from_dict(Config, ckpt["config"])
    DecodeSettings.from_config(cfg.eval, **decoding).check_model(len(ckpt["vocab_itos"]), cfg.model.decoder.max_len)


def finished_parts(out_dir: Path, total: int, model_sha: str, sources_digest: str, resume: bool,
                   other_checkpoint: bool = False) -> set[int]:
    """Before any work: the indices of the finished parts in `out_dir`. Refused in one line: a non-empty folder
    without `resume`, a part file that is not fsgr's, parts of another job, or of another checkpoint (unless
    `other_checkpoint`)."""
    if not out_dir.exists():
        return set()
    if not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: is a file; --engine ray writes part files into a folder")
    if not resume and any(out_dir.iterdir()):
        raise ConfigError(f"--out {out_dir}: not empty; pass --resume to complete its parts, or choose another folder")
    finished = set()
    for path in sorted(out_dir.glob("part-*.jsonl")):
        file = read_caption_file(path)                    # refuses a file that is not ours
        h = file.header
        if h.get("sources_sha256") != sources_digest or not h.get("part") or h["part"][1] != total:
            raise ConfigError(f"{path}: a part of another job (other sources or part size); choose another --out")
        if path.name != part_name(*h["part"]):
            raise ConfigError(f"{path}: its header says part {h['part'][0]} of {total}; the file was renamed")
        if not other_checkpoint and h.get("checkpoint_sha256") != model_sha:
            raise ConfigError(f"{path}: written by another checkpoint (SHA-256 {str(h.get('checkpoint_sha256'))[:12]}"
                              f"..., this one {model_sha[:12]}...); pass --other-checkpoint to redo only unfinished "
                              f"parts with this one")
        if len(file.rows) == h["inputs"] and not file.errors:
            finished.add(h["part"][0])
    return finished


def caption_with_ray(checkpoint: str | os.PathLike, paths: Sequence[str], out_dir: Path, *,
                     decoding: Optional[dict] = None, batch_size: Optional[int] = None, part_size: int = 1000,
                     actors: Optional[int] = None, resume: bool = False, other_checkpoint: bool = False,
                     sources: Optional[Sequence[str]] = None, device: Optional[str] = None, workers: int = 0,
                     progress: bool = True, precision: Optional[str] = None) -> BulkCounts:
    """Caption `paths` (image files) into part files under `out_dir` on the Ray cluster of `ray.init()` (RAY_ADDRESS,
    or a local one started here and shut down at the end). `decoding`: DecodeSettings overrides (None = the
    checkpoint's); `actors`: Captioners (default one per GPU, else 2), each with `workers` image-decoding processes;
    `sources`: what the listing came from (default `paths`), recorded so that a resume with other sources is refused;
    `progress`: Ray Data's progress bars (off: off for this job). -> (rows written, failed, skipped as finished,
    0)."""
    keys = [path_key(p) for p in paths]
    if not keys:
        raise ConfigError("--engine ray: no images to caption")
    check_decoding(checkpoint, decoding or {})
    model_sha = checkpoint_sha256(checkpoint)
    digest = sources_sha256(list(sources or paths))
    total = -(-len(keys) // part_size)
    chunks = [keys[k * part_size:(k + 1) * part_size] for k in range(total)]
    finished = finished_parts(out_dir, total, model_sha, digest, resume, other_checkpoint)
    todo = [k for k in range(total) if k not in finished]
    skipped = sum(len(chunks[k]) for k in finished)
    if not todo:
        return BulkCounts(0, 0, skipped, 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init()
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    context.enable_progress_bars = progress and bars
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        actors = actors or gpus or 2
        items = [{"part": k, "paths": json.dumps(chunks[k])} for k in todo]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _PartCaptioner, batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(actors, len(items))),
            fn_constructor_kwargs={"checkpoint": str(Path(checkpoint).resolve()), "decoding": decoding or {},
                                   "batch_size": batch_size, "device": device, "workers": workers,
                                   "precision": precision},
            num_gpus=1 if gpus else 0, num_cpus=1)
        written = failed = 0
        for result in dataset.iter_rows():
            k, text = int(result["part"]), result["rows"]
            meta = header(model_sha, json.loads(result["decoding"]), part=(k, total), inputs=len(chunks[k]),
                          precision=result["precision"], sources_sha256=digest, engine="ray")
            atomic_write_text(out_dir / part_name(k, total), json.dumps(meta) + "\n" + text)
            rows = [json.loads(line) for line in text.splitlines()]
            written += len(rows)
            failed += sum("error" in row for row in rows)
    finally:
        context.enable_progress_bars = bars
        if started_here:
            ray.shutdown()
    return BulkCounts(written, failed, skipped, 0)
