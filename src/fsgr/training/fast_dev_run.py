"""`fsgr train CONFIG [key=value ...] --fast-dev-run [N]`: the five-minute check before a five-day run.

Builds data, vocabulary, model and optimiser exactly as the real run would (the same `Trainer`), then runs N optimiser
steps of XE, N of SCST (its own optimiser, backbone frozen as in the real switch) and N evaluation batches of val and
test, writes no checkpoint, and writes RUN_DIR/fast_dev_run.json:

    data_setup_seconds, model_setup_seconds   reading + tokenising + vocabulary; building the model
    xe_step_seconds, scst_step_seconds        median wall time of a step after the first (loader wait included)
    eval_images_per_second                    test images decoded and scored per second (beam, eval.metrics)
    val_seconds_per_image                     the same for val with eval.val_metrics and the val loss if configured
    peak_memory_bytes                         device memory on a GPU (max allocated), peak RSS on the CPU
    projected                                 {xe_epoch_seconds, scst_epoch_seconds, val_seconds, run_seconds_at_most}
                                              for the configured dataset, batch sizes and number of processes

The first step of each phase pays for warm-up (workers starting, kernels selected) and is left out of the median
when N >= 2. Projections scale the measured step by the epoch's steps; the val projection scales by the split's size.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import torch

from fsgr.core.device import precision_name
from fsgr.errors import ConfigError
from fsgr.training import setup
from fsgr.training.engine import Trainer
from fsgr.training.evaluation import evaluate_split


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024   # Linux reports KiB


def _typical(seconds: list[float]) -> float:
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


def _timed_steps(trainer, scst: bool, steps: int) -> tuple[list[float], int]:
    """Begin a phase and run `steps` optimiser steps of it; (wall seconds per step, optimiser steps in a whole
    epoch)."""
    cfg = trainer.cfg
    trainer.begin_phase("scst" if scst else "xe")
    loader = setup.train_loader(cfg, trainer.data, trainer.dist, epoch=0, start_step=0, scst=scst,
                                generator=trainer.loader_generator)
    per_epoch = setup.steps_per_epoch(loader)
    micro = 1 if scst else cfg.train.grad_accum
    trainer.model.train()
    it = iter(loader)
    times = []
    for _ in range(min(steps, per_epoch)):
        started = time.perf_counter()
        batches = [next(it) for _ in range(micro)]
        trainer.step(batches, per_epoch)    # the real step: losses, backward, optimiser, memory update
        _sync(trainer.device)
        times.append(time.perf_counter() - started)
    return times, per_epoch


def _timed_eval(trainer, split: str, batches: int, val: bool) -> tuple[int, float]:
    """Decode (and score) the first `batches` eval batches of a split: (images, seconds)."""
    cfg = trainer.cfg
    records = trainer.data.split(split)
    if not records:
        return 0, 0.0
    n = min(len(records), batches * cfg.eval.batch_images)
    short = replace(cfg, eval=replace(cfg.eval, max_images=n))
    started = time.perf_counter()
    evaluate_split(trainer.model, records, trainer.vocab, short, trainer.device, trainer.dist,
                   amp_dtype=trainer.amp_dtype, with_loss=val and cfg.eval.val_loss,
                   metrics=(cfg.eval.val_metrics or cfg.eval.metrics) if val else cfg.eval.metrics,
                   patch_labels=trainer.data.patch_labels, tolerate_metric_failures=True,
                   encoded=trainer.data.encoded(split) if val and cfg.eval.val_loss else None)
    _sync(trainer.device)
    return n, time.perf_counter() - started


def fast_dev_run(cfg, steps: int = 3, device: Optional[str] = None, progress: bool = True) -> dict[str, Any]:
    if steps < 1:
        raise ConfigError(f"--fast-dev-run {steps}: needs at least 1 step")
    trainer = Trainer(cfg, device=device, progress=False)
    try:
        started = time.perf_counter()
        trainer.setup_model()                  # as the real run builds it, without its run directory
        model_setup = time.perf_counter() - started - trainer.data_setup_seconds
        xe_times, xe_steps = _timed_steps(trainer, scst=False, steps=steps)
        scst_times, scst_steps = [], 0
        if cfg.scst.enabled:
            scst_times, scst_steps = _timed_steps(trainer, scst=True, steps=steps)
        val_images, val_time = _timed_eval(trainer, "val", steps, val=True)
        test_images, test_time = _timed_eval(trainer, "test", steps, val=False)
        report = _report(trainer, model_setup, xe_times, xe_steps, scst_times, scst_steps,
                         val_images, val_time, test_images, test_time)
    finally:
        trainer.cleanup()
    if trainer.dist.is_main:
        run_dir = Path(cfg.run.dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "fast_dev_run.json").write_text(json.dumps(report, indent=2))
        if progress:
            print(projection_table(report), file=sys.stderr)
    return report


def _report(trainer, model_setup, xe_times, xe_steps, scst_times, scst_steps, val_images, val_time,
            test_images, test_time) -> dict[str, Any]:
    cfg = trainer.cfg
    xe_step = _typical(xe_times)
    scst_step = _typical(scst_times) if scst_times else None
    val_per_image = val_time / val_images if val_images else None
    n_val = len(trainer.data.split("val"))
    if cfg.eval.max_images is not None:
        n_val = min(n_val, cfg.eval.max_images)
    projected = {
        "xe_epoch_seconds": xe_step * xe_steps,
        "scst_epoch_seconds": scst_step * scst_steps if scst_step is not None else None,
        "val_seconds": val_per_image * n_val if val_per_image is not None else None,
    }
    val = projected["val_seconds"] or 0.0
    xe_epochs = min(cfg.train.xe_most, cfg.train.max_epochs)
    scst_part = (cfg.scst.max_epochs * (projected["scst_epoch_seconds"] + val)
                 if projected["scst_epoch_seconds"] is not None else 0.0)
    projected["run_seconds_at_most"] = xe_epochs * (projected["xe_epoch_seconds"] + val) + scst_part
    return {
        "steps": len(xe_times), "world_size": trainer.dist.world_size, "device": str(trainer.device),
        "amp": precision_name(trainer.amp_dtype),
        "data_setup_seconds": trainer.data_setup_seconds,
        "captions_from_cache": all(w.from_cache for w in trainer.data.words.values()),
        "model_setup_seconds": model_setup,
        "xe_step_seconds": xe_step, "xe_steps_per_epoch": xe_steps, "xe_step_times": xe_times,
        "scst_step_seconds": scst_step, "scst_steps_per_epoch": scst_steps, "scst_step_times": scst_times,
        "eval_images_per_second": test_images / test_time if test_images else None,
        "val_seconds_per_image": val_per_image, "val_images": n_val,
        "peak_memory_bytes": peak_memory_bytes(trainer.device),
        "projected": projected,
    }


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def projection_table(report: dict[str, Any]) -> str:
    p = report["projected"]
    rows = [
        ("data set-up", _duration(report["data_setup_seconds"]),
         "from the caption cache" if report["captions_from_cache"] else "captions tokenised (cached for next time)"),
        ("XE step", _duration(report["xe_step_seconds"]), f"x {report['xe_steps_per_epoch']} steps/epoch"),
        ("XE epoch", _duration(p["xe_epoch_seconds"]), ""),
        ("SCST step", _duration(report["scst_step_seconds"]), f"x {report['scst_steps_per_epoch']} steps/epoch"),
        ("SCST epoch", _duration(p["scst_epoch_seconds"]), ""),
        ("validation", _duration(p["val_seconds"]), f"{report['val_images']} images"),
        ("whole run", _duration(p["run_seconds_at_most"]), "at most (every epoch, no early stop)"),
        ("peak memory", f"{report['peak_memory_bytes'] / 2**30:.2f} GiB", report["device"]),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"fast dev run ({report['steps']} steps, {report['world_size']} process(es), {report['amp']}):"]
    lines += [f"  {name:<{width}}  {value:>10}  {note}".rstrip() for name, value, note in rows]
    return "\n".join(lines)
