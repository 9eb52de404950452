"""Bulk captioning under torchrun: `torchrun --nproc_per_node N -m fsgr caption --checkpoint CKPT --out FILE ...`.

    outcome = caption_under_torchrun(load, keys, Path("captions.jsonl"), meta)   # on every rank

Rank R of N captions keys[R::N] into `FILE.parts/part-R-of-N.jsonl` (fsgr's caption file, resumable as any --out) with
fsgr.serving.bulk's plain path; once every rank is done, rank 0 merges the parts into FILE. Every check (FILE and each
part: written by fsgr, by this checkpoint) runs on every rank before any rank loads a model, and a refusal or an I/O
error on any rank stops them all, named ("rank R: ..."). The ranks exchange only counts (gloo, whatever the device).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import torch

from fsgr.core.distributed import DistInfo, all_gather_objects, init_distributed, shutdown
from fsgr.errors import FsgrError, WorkFailed
from fsgr.logs import get_logger
from fsgr.serving import bulk

log = get_logger(__name__)


class RankOutcome(NamedTuple):
    is_main: bool       # rank 0: it merged the parts into the output file
    failed: int         # images that failed, on every rank together


def part_path(out: Path, rank: int, world_size: int) -> Path:
    return out.with_name(f"{out.name}.parts") / f"part-{rank:05d}-of-{world_size:05d}.jsonl"


def caption_under_torchrun(load: Callable[[Optional[str]], tuple], keys: Sequence[str], out: Path, meta: dict, *,
                           device: Optional[str] = None, workers: int = 2, resume: bool = False,
                           other_checkpoint: bool = False, progress: bool = True) -> RankOutcome:
    """Run on every rank of a torchrun job. `load(device)` -> (captioner, decoding settings, batch size) is called
    once the checks passed, with `device` or, on a machine with CUDA, this rank's GPU; `meta` is the header's
    `checkpoint_sha256` and `sources_sha256`. A refusal or a failure on any rank raises on every rank."""
    info = init_distributed(torch.device("cpu"))       # gloo: the ranks only exchange counts
    if device is None and torch.cuda.is_available():
        device = f"cuda:{info.local_rank}"
    part = part_path(out, info.rank, info.world_size)
    mine = list(keys[info.rank::info.world_size])
    try:
        def check() -> None:
            if info.is_main and os.path.lexists(out):
                bulk.check_output(out, resume, meta["checkpoint_sha256"], other_checkpoint)
            bulk.check_output(part, resume, meta["checkpoint_sha256"], other_checkpoint)

        def work() -> int:
            captioner, settings, batch_size = load(device)
            part.parent.mkdir(parents=True, exist_ok=True)
            counts = bulk.caption_to_jsonl(
                captioner, mine, part, settings, batch_size, workers, resume, info.is_main and progress,
                bulk.header(settings=settings, part=(info.rank, info.world_size), inputs=len(mine),
                            precision=captioner.precision, **meta),
                other_checkpoint)
            log.info(counts.describe(part))
            return counts.failed

        on_every_rank(info, check)           # every refusal before any rank starts work
        failed = sum(on_every_rank(info, work))
        if info.is_main:
            merged = bulk.merge_parts(sorted(part.parent.glob(f"part-*-of-{info.world_size:05d}.jsonl")), out,
                                      replace=resume)
            log.info(f"merged {info.world_size} rank part(s), {len(merged.rows)} image(s), into {out}")
        return RankOutcome(info.is_main, failed)
    finally:
        shutdown(info)


def on_every_rank(info: DistInfo, step: Callable[[], object]) -> list:
    """Run `step()` on every rank and gather what each returned; when one raised a refusal or an I/O error, every rank
    raises: the failing rank its own error, the others one naming it (with its exit status)."""
    failure = None
    try:
        outcome = step()
    except (FsgrError, OSError) as exc:
        failure = exc
        outcome = (getattr(exc, "exit_code", 1), f"rank {info.rank}: {exc}")
    outcomes = all_gather_objects(outcome, info)
    if failure is not None:
        raise failure
    failed = [o for o in outcomes if isinstance(o, tuple)]
    if failed:
        raise (WorkFailed if failed[0][0] == 1 else FsgrError)(f"fsgr caption under torchrun: {failed[0][1]}")
    return outcomes
