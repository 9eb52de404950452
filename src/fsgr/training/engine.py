"""The training recipe: XE (+ patch SupCon), then SCST, as named steps (torchtune's recipe shape).

    train(cfg, resume=False) -> summary dict
    Trainer(cfg).setup() -> .train() -> .save(name) ... -> .cleanup()

Everything that decides what the next step computes lives in `TrainState` (phase, epoch, step within the epoch, global
step, best score, patience) plus the model/optimiser/scaler/RNG states; all of it goes into every checkpoint, so
`--resume` continues bit-for-bit on the same number of processes, and exactly in data order on another number (the
global batches do not depend on it). What an epoch's validation score does to that state (keep XE, switch to SCST, stop)
is the pure function `fsgr.training.state.end_of_epoch`. Data parallelism: torchrun env -> DDP for XE (gradients
averaged in backward), explicit gradient all-reduce for SCST (decoding does not go through DDP's forward). Rank 0
alone writes files.

Loss normalisation: a step's NLL is sum(token NLL) / (number of target tokens in the whole global batch), so one
process and N processes (and any gradient accumulation) optimise and log the same number.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils import _foreach_utils
from tqdm import tqdm

from fsgr.config import Config, save_config, to_dict
from fsgr.core import checkpoint as ckpt_io
from fsgr.core.build import build_model
from fsgr.core.device import autocast, pick_device, precision_name, resolve_amp
from fsgr.errors import CheckpointError, ConfigError, FsgrError, WorkFailed
from fsgr.files import atomic_write_text, why_not_writable
from fsgr.logs import get_logger
from fsgr.metrics.reward import CiderDReward
from fsgr.metrics.signature import run_signature
from fsgr.metrics.score import parse_metrics
from fsgr.models import decoding
from fsgr.training import setup
from fsgr.core.distributed import (all_gather_objects, all_reduce_sum, barrier, broadcast_object, init_distributed,
                                       shutdown)
from fsgr.training.evaluation import TokenizedReferences, evaluate_split
from fsgr.training.logging import NullLogger, RunLogger, tracker_names
from fsgr.training.losses import (num_targets, patch_contrastive_loss, scst_baseline, scst_beam_loss, scst_sample_loss,
                                  through_eos_mask, token_nll)
from fsgr.training.memory_hook import MemoryHook
from fsgr.training.schedules import LrSchedule, scst_schedule, xe_schedule
from fsgr.training.state import PhaseRules, TrainState, end_of_epoch

log = get_logger(__name__)

# save last.pt and stop, on every rank at the same step: SIGUSR1 is what SLURM sends before a time limit or a
# preemption (`#SBATCH --signal=USR1@120`); `fsgr train` then exits 128 + the signal's number (130, 143, 138)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
# what a run writes into run.dir: a new run refuses a run.dir holding any of them (a non-empty folder, or a file)
RUN_ARTEFACTS = ("checkpoints", "config.yaml", "metrics.jsonl", "summary.json", "predictions", "tensorboard",
                 "trackers.json", "wandb", "batches")
EOS_WORD = "eos"   # the word that stands for <eos> in SacreEOS-standard rewards (PTB-safe, no angle brackets)
SCST_RECIPES = {
    "sample": "SCST standard (SacreEOS): 5 multinomial samples/image, mean-of-others baseline, <eos> in the reward, "
              "CIDEr-D with training-set document frequencies",
    "beam": "SCST M2/FSGR: beam 5 as samples, mean-of-beams baseline, <eos> dropped from the reward, CIDEr-D with "
            "training-set document frequencies",
}


class NonFiniteLossError(WorkFailed):
    """The loss became NaN/inf: training stops (the reference kept going, averaging NaN into its running loss).
    Steps were trained: exit status 1, not 2 (which says "refused before any work")."""


def fused_adam_supported(device: torch.device) -> bool:
    """Fused Adam (all parameters in one kernel; with GradScaler, no host sync for the inf check) where the device
    type has it in this torch build (CUDA; CPU from torch 2.4; MPS, XPU)."""
    supported = getattr(_foreach_utils, "_get_fused_kernels_supported_devices", lambda: ["cuda"])()
    return device.type in supported


def compile_backbone_and_encoder(model) -> None:
    """train.compile: torch.compile the backbone and the grid encoder in place (`nn.Module.compile`: parameter names
    and checkpoints stay those of the eager model). The decoder stays eager: its key/value cache grows by one step
    at a time while decoding, which would recompile for every length."""
    if not hasattr(torch.nn.Module, "compile"):
        raise ConfigError(f"train.compile=true needs torch >= 2.2 (this is {torch.__version__}); "
                          f"set train.compile=false")
    model.backbone.compile()
    model.encoder.compile()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_config(cfg: Config, world_size: int) -> None:
    """Refuse settings the recipe cannot run, before anything is built."""
    t = cfg.train
    tracker_names(t.loggers)    # a tracker that is not installed: refused now, not after the first epoch
    # any global batch splits over any number of processes (fsgr.data.sampling); only a batch with fewer
    # items than processes x micro-batches is refused (image batching: checked once images/step are known)
    if t.batch_size < world_size * t.grad_accum:
        raise ConfigError(f"train.batch_size={t.batch_size} is smaller than processes ({world_size}) x "
                          f"train.grad_accum ({t.grad_accum})")
    if cfg.scst.enabled and cfg.scst.batch_images < world_size:
        raise ConfigError(f"scst.batch_images={cfg.scst.batch_images} is smaller than the number of "
                          f"processes ({world_size})")
    if "cider" not in parse_metrics(cfg.eval.val_metrics or cfg.eval.metrics):
        raise ConfigError(f"eval.val_metrics={cfg.eval.val_metrics or cfg.eval.metrics!r} (eval.metrics when unset): "
                          f"must include cider (validation picks the best checkpoint by CIDEr)")
    if cfg.scst.enabled and cfg.scst.mode == "sample" and cfg.scst.num_samples < 2:
        raise ConfigError("scst.mode=sample needs scst.num_samples >= 2 (mean-of-others baseline)")
    if cfg.model.semantic.grid_from_given_labels and not cfg.data.patch_labels:
        raise ConfigError("model.semantic.oracle builds the semantic grid from given patch concepts: set "
                          "data.patch_labels (synthetic: the synthetic world's own concept maps)")
    if t.contrastive_weight > 0 and not cfg.model.semantic.enabled and not cfg.data.patch_labels:
        raise ConfigError("train.contrastive_weight > 0 needs patch labels: model.semantic.enabled=true (online "
                          "concept ids) or data.patch_labels (offline); or set train.contrastive_weight=0")


class Trainer:
    def __init__(self, cfg: Config, resume: bool = False, device: str | None = None, progress: bool = True):
        if not cfg.run.base_dir:     # recorded in config.yaml and every checkpoint: relative data paths stay findable
            cfg = replace(cfg, run=replace(cfg.run, base_dir=os.getcwd()))
        self.cfg, self.resume, self.requested_device, self.progress = cfg, resume, device, progress
        self.run_dir = Path(cfg.run.dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.rules = PhaseRules.from_config(cfg)
        self.state = TrainState()
        self.dist = None
        self.logger = NullLogger()
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.schedule: Optional[LrSchedule] = None
        self._ddp: Optional[DDP] = None
        self._reward: Optional[CiderDReward] = None       # built at the first SCST step (train-set DF)
        self._stop_signal: Optional[int] = None
        self._previous_handlers: Optional[dict] = None
        self._loss_window: list[float] = []                 # train losses since the last logged row
        self.last_eval: dict[str, Any] = {}
        self.test_result: Optional[dict[str, Any]] = None   # the best checkpoint's test scores, once scored
        self._said_unavailable: dict[str, str] = {}         # metric -> reason already printed
        self._tokenized_refs: dict[str, TokenizedReferences] = {}   # split -> its references (built once per run)

    # ================================================================== setup
    def setup(self) -> None:
        """Everything a run needs: `setup_model()`, then the run directory, the optimiser (or the checkpoint to
        resume), config.yaml, the logger and the signal handlers."""
        self.setup_model()
        if self.resume and not (self.ckpt_dir / "last.pt").is_file():   # stopped before its first checkpoint
            self.resume = False
        self._prepare_run_dir()
        if self.resume:
            self._restore()
        else:
            self.begin_phase("xe")
        if self.dist.is_main:
            save_config(self.cfg, self.run_dir / "config.yaml")
            t = self.cfg.train
            self.logger = RunLogger(self.run_dir, to_dict(self.cfg), t.loggers, t.tracking_uri, t.tracking_project)
        self._install_signal_handlers()

    def setup_model(self) -> None:
        """Processes and device, data (captions tokenised once), the model and what trains it; no file written
        (`fsgr train --fast-dev-run` stops here)."""
        cfg = self.cfg
        self.dist = init_distributed(pick_device(self.requested_device, _env_local_rank()))
        self.device = pick_device(self.requested_device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.progress = self.progress and self.dist.is_main
        # before anything is read, built or written; rank 0 decides (the others may start after it wrote config.yaml)
        problem = broadcast_object(self._run_dir_problem() if self.dist.is_main else None, self.dist)
        if problem is not None:
            raise problem
        self.amp_dtype = resolve_amp(cfg.train.amp, self.device)
        check_config(cfg, self.dist.world_size)
        seed_everything(cfg.train.seed)
        started = time.perf_counter()
        self.data = setup.build_data(cfg)                 # records per split, vocab, captions tokenised once
        self.data_setup_seconds = time.perf_counter() - started
        self.vocab = self.data.vocab
        self.model, self.codebook_names, self.codebook_fingerprint = build_model(cfg, self.vocab)
        # the eval beam (and max_len) against this vocabulary and decoder: now, not at the first validation
        decoding.check_eval_section(cfg.eval, self.model.decoder.vocab_size, self.model.decoder.max_len)
        resolution = self.model.backbone.visual.input_resolution     # from the CLIP's weights when it is loaded
        if resolution != cfg.data.image_size:
            raise ConfigError(f"data.image_size={cfg.data.image_size}: this CLIP takes {resolution}x{resolution} "
                              f"images; set data.image_size={resolution}")
        self.model.to(self.device)
        if cfg.train.compile:
            compile_backbone_and_encoder(self.model)
        self.memory = MemoryHook.for_decoder(self.model.decoder, self.dist)
        if self.dist.is_main:
            log.debug(f"set-up: {self.dist.world_size} process(es) on {self.device}, amp "
                      f"{precision_name(self.amp_dtype)}; data read in "
                      f"{self.data_setup_seconds:.2f} s (" + ", ".join(f"{name} {len(self.data.split(name))} images"
                                                               for name in ("train", "val", "test")) + ")")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.loader_generator = torch.Generator()

    def _run_dir_problem(self) -> Optional[FsgrError]:
        """--resume needs run.dir/checkpoints/last.pt; a new run needs a run.dir without any run artefact. A run that
        stopped before its first checkpoint is started again, with or without --resume."""
        last = self.ckpt_dir / "last.pt"
        unstarted = setup.unstarted_run(self.run_dir, RUN_ARTEFACTS)
        if self.resume:
            if not last.is_file() and not unstarted:
                return CheckpointError(f"{last}: nothing to resume (no checkpoint there); start a new run without "
                                       f"--resume or point run.dir at the run to continue")
            return None
        why = why_not_writable(self.run_dir, folder=True)
        if why:
            return ConfigError(f"run.dir={self.run_dir}: {why}")
        found = [name for name in RUN_ARTEFACTS if _holds_something(self.run_dir / name)]
        if found and not unstarted:
            return FsgrError(f"{self.run_dir}: holds a run already ({', '.join(found)}); pass --resume to continue "
                             f"it or choose another run.dir")
        return None

    def _prepare_run_dir(self) -> None:
        if self.dist.is_main:
            if not self.resume:
                removed = setup.remove_unstarted_run(self.run_dir, RUN_ARTEFACTS)
                if removed:
                    self._say(f"{self.run_dir}: its run stopped before its first checkpoint; starting it again "
                              f"(replaced {', '.join(removed)})")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "predictions").mkdir(exist_ok=True)
            if self.resume:
                self._remove_stale_temporaries()
        barrier(self.dist)

    def _remove_stale_temporaries(self) -> None:
        """A process killed (SIGKILL, power) while saving a checkpoint leaves its temporary file: `fsgr.files.
        atomic_write` names it `.NAME.pt.PID-RANDOM.tmp` beside NAME.pt. Nothing writes there before this run."""
        for stale in sorted(self.ckpt_dir.glob(".*.pt.*.tmp")):
            stale.unlink()
            self._say(f"removed {stale}: the temporary file of a checkpoint save that was killed")

    def begin_phase(self, phase: str) -> None:
        """Start `phase` ("xe" or "scst"): its own optimiser and LR schedule (SCST: the backbone frozen unless
        model.backbone.train_in_scst), DDP around the model for XE. The state's phase becomes `phase`; what epoch
        and step it is at is the caller's (the phase rules at an epoch's end, or nothing for a fast dev run)."""
        self._build_optimizer(phase)
        self.state.phase = phase

    def _build_optimizer(self, phase: str) -> None:
        groups = self.model.parameter_groups()
        if phase == "scst" and not self.cfg.model.backbone.train_in_scst:
            for p in groups.get("backbone", []):   # the reference's SCST optimiser held no backbone
                p.requires_grad_(False)
            groups = {k: v for k, v in groups.items() if k != "backbone"}
        param_groups = [{"params": [p for p in ps if p.requires_grad], "name": name} for name, ps in groups.items()]
        param_groups = [g for g in param_groups if g["params"]]
        betas = tuple(self.cfg.train.adam_betas)
        self.optimizer = torch.optim.Adam(param_groups, lr=0.0, betas=betas, eps=self.cfg.train.adam_eps,
                                          fused=fused_adam_supported(self.device))
        self.schedule = xe_schedule(self.cfg.train) if phase == "xe" else scst_schedule(self.cfg.scst)
        self._ddp = None
        if self.dist.enabled and phase == "xe":
            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = self.cfg.train.find_unused_parameters
            if unused is None:
                unused = self.cfg.train.contrastive_weight == 0
            self._ddp = DDP(self.model, device_ids=ids, find_unused_parameters=unused)

    def _restore(self) -> None:
        path = self.ckpt_dir / "last.pt"
        ckpt = ckpt_io.load_checkpoint(path)
        ckpt_io.check_resumable(ckpt, path, to_dict(self.cfg), list(self.vocab.itos), self.codebook_fingerprint)
        saved_world, world, rank = ckpt["world_size"], self.dist.world_size, self.dist.rank
        if saved_world != world:
            self._say(f"{path}: saved by {saved_world} process(es), resuming with {world}: exact in data order (the "
                      f"epoch's remaining global batches, each sample once), not bit-exact in floats (sums run in "
                      f"another order; processes beyond the saved ones continue rank 0's random streams)")
        self.state = TrainState(**ckpt["state"])
        self.model.load_state_dict(ckpt["model"])
        self._build_optimizer(self.state.phase)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.last_eval = ckpt.get("last_eval", {})
        # every process starts from train.seed's streams; one the saved run did not have continues rank 0's
        ckpt_io.set_rng_state(ckpt["rng"][rank if rank < saved_world else 0], self.loader_generator)

    # ================================================================== train
    def train(self) -> dict[str, Any]:
        """Epochs until the phase rules say done (or a step budget / signal stops the run); then test the best."""
        while self.state.phase != "done":
            if self._steps_exhausted():   # the budget ran out at an epoch end: stopped, not finished (no test)
                return self._stop("max_steps", f"before {self.state.phase} epoch {self.state.epoch}")
            self._start_epoch()
            outcome = self._train_epoch()
            if outcome != "complete":
                st = self.state
                return self._stop(outcome, f"at {st.phase} epoch {st.epoch} step {st.step_in_epoch}")
            self._end_of_epoch()
            if self._signal_agreed():
                self.state.status = "interrupted"
                self._say(f"stopped (signal) after {self.state.phase} epoch {self.state.epoch - 1}; continue with "
                          f"--resume")
                return self.save_summary()
        self.state.status = "finished"
        self.save("last")
        if self.cfg.eval.test_at_end:
            self._test_best()
        return self.save_summary()

    def _stop(self, status: str, where: str) -> dict[str, Any]:
        self.state.status = status
        path = self.save("last")
        self._say(f"stopped ({status}) {where}; saved {path}; continue with --resume")
        return self.save_summary()

    def _steps_exhausted(self) -> bool:
        return self.cfg.train.max_steps is not None and self.state.global_step >= self.cfg.train.max_steps

    def _start_epoch(self) -> None:
        st = self.state
        lrs = self.schedule.apply(self.optimizer, st.epoch)
        self._log({"kind": "lr", "phase": st.phase, "epoch": st.epoch, "step": st.global_step, "lr": lrs})
        self._say(f"[{st.phase} epoch {st.epoch}] lr " + ", ".join(f"{k} {v:.3g}" for k, v in lrs.items()))

    def _train_epoch(self) -> str:
        """Optimiser steps to the end of the epoch: "complete", or why it stopped early ("interrupted",
        "max_steps"; the position is in the state, so --resume continues mid-epoch)."""
        st, scst = self.state, self.state.phase == "scst"
        loader = setup.train_loader(self.cfg, self.data, self.dist, epoch=st.epoch + (1000 if scst else 0),
                                    start_step=st.step_in_epoch, scst=scst, generator=self.loader_generator)
        steps_total = setup.steps_per_epoch(loader)
        micro = 1 if scst else self.cfg.train.grad_accum
        self.model.train()
        self._loss_window = []
        batches = iter(loader)
        with self._progress_bar(steps_total) as bar:
            while st.step_in_epoch < steps_total:
                values = self.step([next(batches) for _ in range(micro)], steps_total)
                bar.update(1)
                bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
                if st.step_in_epoch == steps_total:
                    break
                if values["_stop"]:
                    self._agree_on_signal()
                    return "interrupted"
                if self._steps_exhausted():
                    return "max_steps"
        return "complete"

    def step(self, batches: list, steps_total: int) -> dict[str, float]:
        """One optimiser step of the current phase on `batches` (XE: train.grad_accum micro-batches; SCST: one):
        forward, losses, backward and optimiser step, memory update, a metrics row every train.log_every steps and
        at the epoch's last step (`steps_total` steps per epoch). Returns the step's values summed over processes
        (loss, ...; `_stop` > 0 when some process got a stop signal)."""
        st, t0 = self.state, time.perf_counter()
        values = self._scst_step(batches[0]) if st.phase == "scst" else self._xe_step(batches)
        st.step_in_epoch += 1
        st.global_step += 1
        self.memory.after_step(st.global_step, st.phase)   # PMA bank commit / refresh (no-op: memory off)
        if self.cfg.train.log_batches:
            self._log_batch_ids(batches)
        self._loss_window.append(values["loss"])
        if st.global_step % self.cfg.train.log_every == 0 or st.step_in_epoch == steps_total:
            self._log_train_row(values, time.perf_counter() - t0)
        return values

    def _log_batch_ids(self, batches: list) -> None:
        """train.log_batches: this process's image ids of the step just taken, one JSON line in batches/rank{R}.jsonl
        (a resumed run appends): the union over ranks of a step's ids is its global batch, whatever the processes."""
        st = self.state
        row = {"phase": st.phase, "epoch": st.epoch, "step": st.global_step, "rank": self.dist.rank,
               "world_size": self.dist.world_size, "image_ids": [int(i) for b in batches for i in b.image_ids]}
        path = self.run_dir / "batches" / f"rank{self.dist.rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def _log_train_row(self, values: dict[str, float], step_time: float) -> None:
        st = self.state
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        row = {"kind": "train", "phase": st.phase, "epoch": st.epoch, "step": st.global_step,
               "step_in_epoch": st.step_in_epoch, **values, "loss_avg": float(np.mean(self._loss_window)),
               # the LR that train.lr / scst.lr set (the captioner group), not whichever group comes first
               "lr": lrs.get("captioner", self.optimizer.param_groups[0]["lr"]), "lrs": lrs,
               "step_time_s": step_time}
        if (prototypes := self.model.memory_prototypes()) is not None:
            row["memory_prototypes"] = prototypes
        self._log(row)
        self._loss_window = []

    # ------------------------------------------------------------------ XE
    def _xe_step(self, batches) -> dict[str, float]:
        cfg, dev, w, pad = self.cfg.train, self.device, self.dist.world_size, self.vocab.pad_id
        # the denominator of the NLL: target tokens of the WHOLE global batch (all processes, all micro-batches);
        # SupCon (a mean per micro-batch) is weighted by the micro-batch's share of the global batch's images
        global_targets, global_images = all_reduce_sum(
            [float(sum(num_targets(b.tokens, pad) for b in batches)), float(sum(len(b.image_ids) for b in batches))],
            dev, self.dist)
        module = self._ddp if self._ddp is not None else self.model
        parts = []                                    # per micro-batch: loss, nll, contrastive (this process's share)
        for i, batch in enumerate(batches):
            batch = batch.to(dev, non_blocking=True)
            last = i == len(batches) - 1                # DDP all-reduces gradients on the last micro-batch only
            with self._ddp.no_sync() if self._ddp is not None and not last else contextlib.nullcontext():
                with autocast(dev, self.amp_dtype):
                    out = module(batch.images, batch.tokens, batch.image_index, patch_concepts=batch.patch_labels)
                nll = token_nll(out.logprobs, batch.tokens, pad) / global_targets
                loss = nll * w                               # DDP averages gradients over the w processes
                con = torch.zeros((), device=dev)
                if cfg.contrastive_weight > 0:
                    share = len(batch.image_ids) / global_images * w
                    con = patch_contrastive_loss(out, batch.patch_labels, cfg) * share
                    loss = loss + cfg.contrastive_weight * con
                self.scaler.scale(loss).backward()
            parts.append(torch.stack([loss / w, nll, con / w]).detach().float())
        self._optimizer_step()
        # the step's one read back to the host, after all its work is queued (no sync inside the step)
        sums = torch.stack(parts).cpu().double().sum(0)
        return self._reduce_step_values(sums, batches)

    # ------------------------------------------------------------------ SCST
    def _scst_step(self, batch) -> dict[str, float]:
        sc, dev, w = self.cfg.scst, self.device, self.dist.world_size
        batch = batch.to(dev, non_blocking=True)
        tokens, logprobs = self._scst_rollout(batch.images, batch.patch_labels)   # (B, k, T) each
        rewards = self._scst_rewards(tokens, batch.image_ids)             # (B, k)
        advantage = rewards - scst_baseline(rewards, sc.mode)
        mask = through_eos_mask(tokens, self.vocab.eos_id)   # generated tokens up to and including the first <eos>
        if sc.mode == "sample":
            loss_sum, count = scst_sample_loss(logprobs, mask, advantage)
        else:
            loss_sum, count = scst_beam_loss(logprobs * mask, advantage, sc.max_len)
        global_count, global_samples = all_reduce_sum([float(count), float(rewards.numel())], dev, self.dist)
        loss = loss_sum / global_count
        self.scaler.scale(loss * w).backward()
        if self.dist.enabled:
            self._all_reduce_gradients()
        part = torch.stack([loss.detach().float(), rewards.sum().detach() / global_samples])
        self._optimizer_step()
        part = part.cpu().double()          # read back once the step's work is queued
        return self._reduce_step_values(part, [batch], names=("loss", "reward"))

    def _scst_rollout(self, images: torch.Tensor, patch_concepts: Optional[torch.Tensor] = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """k captions per image in train mode with differentiable token log-probs: samples (sample mode) or the
        beam (beam mode). -> tokens (B, k, T), fp32 log-probs (B, k, T)."""
        sc = self.cfg.scst
        with autocast(self.device, self.amp_dtype):
            encoded = self.model.encode(images, backbone_grad=self.cfg.model.backbone.train_in_scst,
                                        patch_concepts=patch_concepts)
            if sc.mode == "sample":
                tokens, logprobs = decoding.sample(self.model, encoded, num_samples=sc.num_samples, max_len=sc.max_len)
            else:
                beams = decoding.beam_search(self.model, encoded, beam_size=sc.num_samples, max_len=sc.max_len,
                                             return_all=True, grad=True)
                tokens, logprobs = beams.tokens, beams.token_logprobs
        return tokens, logprobs.float()

    def _scst_rewards(self, tokens: torch.Tensor, image_ids) -> torch.Tensor:
        """CIDEr-D of every caption against its image's training references: (B, k, T) tokens -> (B, k) rewards."""
        b, k = tokens.shape[:2]
        token_lists = tokens.cpu().tolist()
        captions = [self.vocab.decode(ids, collapse_repeats=False) for row in token_lists for ids in row]
        if self.cfg.scst.mode == "sample":   # SacreEOS "standard": <eos> counted as a word of candidates and references
            ended = [self.vocab.eos_id in ids for row in token_lists for ids in row]
            captions = [c + " " + EOS_WORD if e else c for c, e in zip(captions, ended)]
        ids = [int(i) for i in image_ids for _ in range(k)]
        rewards = np.asarray(self._reward_fn()(ids, captions), dtype=np.float64)
        return torch.as_tensor(rewards, dtype=torch.float32).view(b, k).to(self.device)

    def _reward_fn(self) -> CiderDReward:
        if self._reward is None:
            # tokenised here with the toolkit's tokenizer (it keeps -lrb-/-rrb-, which the training words drop)
            refs = self.data.train_refs
            if self.cfg.scst.mode == "sample":
                refs = {i: [r + " " + EOS_WORD for r in caps] for i, caps in refs.items()}
            self._reward = CiderDReward(refs, documents=self.cfg.scst.reward_documents)
        return self._reward

    # ------------------------------------------------------------------ shared by both steps
    def _trainable(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _all_reduce_gradients(self) -> None:
        for p in self._trainable():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(self.dist.world_size)

    def _optimizer_step(self) -> None:
        if self.cfg.train.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self._trainable(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _reduce_step_values(self, sums: torch.Tensor, batches, names=("loss", "nll", "contrastive")) -> dict:
        """The step's values summed over processes, plus `_stop` (some process got a signal); a non-finite value
        on any process stops the run naming the batch's images."""
        local_bad = 0.0 if bool(torch.isfinite(sums).all()) else 1.0
        stop = 1.0 if self._stop_signal is not None else 0.0
        reduced = all_reduce_sum([*sums.tolist(), local_bad, stop], self.device, self.dist)
        values = dict(zip(names, reduced[:len(names)]))
        if reduced[len(names)] > 0:
            self._non_finite([i for b in batches for i in b.image_ids], sums, local_bad > 0)
        values["_stop"] = reduced[len(names) + 1]
        return values

    def _non_finite(self, image_ids, sums, local: bool) -> None:
        ids = all_gather_objects(list(image_ids) if local else [], self.dist) if self.dist.enabled else [image_ids]
        bad = sorted({int(i) for part in ids for i in part})
        last = self.ckpt_dir / "last.pt"
        good = f"last good checkpoint: {last}" if last.exists() else "no checkpoint was saved yet"
        raise NonFiniteLossError(f"non-finite loss ({sums.tolist()}) at {self.state.phase} epoch {self.state.epoch} "
                                 f"step {self.state.step_in_epoch + 1} (global {self.state.global_step + 1}); batch "
                                 f"image ids {bad}; {good}. Check the learning rates logged in metrics.jsonl")

    # ------------------------------------------------------------------ epoch end: validate, select, switch
    def _end_of_epoch(self) -> None:
        self.save("last")   # before evaluating: a failure or crash in evaluation never costs the epoch's steps
        st = self.state
        result = self._validate()
        end = end_of_epoch(st, result["scores"]["CIDEr"], self.rules)
        self._log({"kind": "eval", "split": "val", "phase": st.phase, "epoch": st.epoch, "step": st.global_step,
                   **{k: v for k, v in result.items() if k != "num_images"}, "improved": end.improved,
                   "scst_mode": self.cfg.scst.mode if st.phase == "scst" else None})
        self._say(f"[{st.phase} epoch {st.epoch}] val " + " ".join(f"{k} {v:.4g}" for k, v in
                  result["scores"].items()) + (f" loss {result['loss']:.4f}" if "loss" in result else ""))
        self.state = end.scored           # a checkpoint saved now resumes at the next epoch
        if end.improved:
            self.save("best")
        if end.to_scst:
            self._start_scst(end.reload_best_xe)
        self.state = end.state
        self.save("last")

    def _validate(self) -> dict[str, Any]:
        """Val scores (eval.val_metrics, default eval.metrics) and loss. A Java metric that fails is reported
        unavailable (log line + metrics.jsonl) and training goes on, selecting on CIDEr."""
        st, cfg = self.state, self.cfg
        result = evaluate_split(self.model, self.data.split("val"), self.vocab, cfg, self.device, self.dist,
                                amp_dtype=self.amp_dtype, with_loss=cfg.eval.val_loss,
                                predictions_path=self.run_dir / "predictions" / f"val_{st.phase}{st.epoch}.json",
                                patch_labels=self.data.patch_labels, metrics=cfg.eval.val_metrics or cfg.eval.metrics,
                                references=self._references("val"), tolerate_metric_failures=True,
                                encoded=self.data.encoded("val") if cfg.eval.val_loss else None)
        if "CIDEr" not in result["scores"]:
            raise FsgrError("validation scores have no CIDEr: eval.val_metrics must include cider (model selection)")
        self.last_eval = {"split": "val", "phase": st.phase, "epoch": st.epoch, **result}
        news = {k: v for k, v in result.get("unavailable", {}).items() if self._said_unavailable.get(k) != v}
        if news:   # each reason once (a metric that fails differently later is said again)
            self._said_unavailable.update(news)
            self._say("metrics not computed here: " + "; ".join(f"{k}: {v}" for k, v in news.items()))
        return result

    def _references(self, split: str) -> TokenizedReferences:
        """The split's PTB-tokenised references, built once per run (every evaluation of the split reuses them)."""
        if split not in self._tokenized_refs:
            records, limit = self.data.split(split), self.cfg.eval.max_images
            self._tokenized_refs[split] = TokenizedReferences(records[:limit] if limit else records)
        return self._tokenized_refs[split]

    def _start_scst(self, reload_best_xe: bool) -> None:
        if reload_best_xe:   # SCST starts from the best-val XE weights (reference)
            self.model.load_state_dict(ckpt_io.load_checkpoint(self.ckpt_dir / "best.pt")["model"])
            self._say(f"switching to SCST from the best XE epoch {self.state.best_epoch} (val CIDEr "
                      f"{self.state.best_score:.4f})")
        self.begin_phase("scst")

    def _test_best(self) -> None:
        test = self.data.split("test")
        if not test:
            return
        best_path = self.ckpt_dir / "best.pt"
        if best_path.exists():
            self.model.load_state_dict(ckpt_io.load_checkpoint(best_path)["model"])
        result = evaluate_split(self.model, test, self.vocab, self.cfg, self.device, self.dist,
                                amp_dtype=self.amp_dtype, with_loss=False, references=self._references("test"),
                                patch_labels=self.data.patch_labels, predictions_path=self.run_dir / "predictions" / "test_best.json")
        self.test_result = result
        self._log({"kind": "eval", "split": "test", "phase": self.state.best_phase, "epoch": self.state.best_epoch,
                   "step": self.state.global_step, **result, "checkpoint": str(best_path)})
        self._say("test (best-val checkpoint, reported only) " +
                  " ".join(f"{k} {v:.4g}" for k, v in result["scores"].items()))

    # ================================================================== save
    def save(self, name: str) -> Path:
        """checkpoints/NAME.pt: everything a bit-exact resumption needs (every rank takes part: RNG gather)."""
        path = self.ckpt_dir / f"{name}.pt"
        rng = all_gather_objects(ckpt_io.rng_state(self.loader_generator), self.dist)   # one entry per rank
        payload = ckpt_io.make_payload(
            config=to_dict(self.cfg), vocab_itos=list(self.vocab.itos), codebook_names=self.codebook_names,
            codebook_fingerprint=self.codebook_fingerprint, model=self.model, optimizer=self.optimizer,
            schedule=self.schedule, scaler=self.scaler, rng=rng, state=self.state, world_size=self.dist.world_size,
            last_eval=self.last_eval)
        if self.dist.is_main:
            ckpt_io.atomic_save(payload, path)
        barrier(self.dist)
        return path

    # ================================================================== cleanup
    def cleanup(self) -> None:
        """Signal handlers back, logs closed, the process group shut down (also after a failed setup)."""
        for s, h in (self._previous_handlers or {}).items():
            signal.signal(s, h)
        self._previous_handlers = None
        self.logger.close(self.state.status)
        if self.dist is not None:
            shutdown(self.dist)

    # ------------------------------------------------------------------ output and signals
    def _log(self, row: dict) -> None:
        self.logger.log({k: v for k, v in row.items() if not k.startswith("_")}, self.state.global_step)

    def _say(self, text: str) -> None:
        if self.dist.is_main:
            log.info(text)

    def _progress_bar(self, steps_total: int):
        st = self.state
        return tqdm(total=steps_total, initial=st.step_in_epoch, desc=f"{st.phase} {st.epoch}", unit="step",
                    dynamic_ncols=True, file=sys.stderr, disable=not self.progress)

    def summary(self) -> dict[str, Any]:
        st = self.state
        out = {
            "run_dir": str(self.run_dir), "status": st.status, "phase": st.phase, "epoch": st.epoch,
            "global_step": st.global_step, "best_val_cider": None if st.best_epoch < 0 else st.best_score,
            "best_phase": st.best_phase, "best_epoch": st.best_epoch,
            "best_checkpoint": str(self.ckpt_dir / "best.pt") if st.best_epoch >= 0 else None,
            "last_checkpoint": str(self.ckpt_dir / "last.pt"),
            "last_val": self.last_eval.get("scores"), "val_loss": self.last_eval.get("loss"),
            "scst_mode": self.cfg.scst.mode, "scst_recipe": SCST_RECIPES[self.cfg.scst.mode],
            "signature": run_signature(self.last_eval.get("signature"), SCST_RECIPES[self.cfg.scst.mode]),
            "world_size": self.dist.world_size, "device": str(self.device),
            "amp": precision_name(self.amp_dtype),
            # the signal that stopped the run (status "interrupted"); `fsgr train` then exits 128 + its number
            "signal": signal.Signals(self._stop_signal).name if self._stop_signal is not None else None,
        }
        if self.test_result is not None:
            out["test"] = self.test_result["scores"]
        return out

    def save_summary(self, **extra) -> dict[str, Any]:
        """`summary()` plus `extra` entries, written to run.dir/summary.json (rank 0); returns what was written."""
        out = {**self.summary(), **extra}
        if self.dist.is_main:
            atomic_write_text(self.run_dir / "summary.json", json.dumps(out, indent=2))
            self.logger.log_file(self.run_dir / "summary.json")
        barrier(self.dist)   # no rank leaves before it is written (torchrun stops the others when one exits non-zero)
        return out

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            self._stop_signal = signum

        self._previous_handlers = {s: signal.signal(s, handler) for s in STOP_SIGNALS}

    def _signal_agreed(self) -> bool:
        flag = 1.0 if self._stop_signal is not None else 0.0
        agreed = all_reduce_sum([flag], self.device, self.dist)[0] > 0
        if agreed:
            self._agree_on_signal()
        return agreed

    def _agree_on_signal(self) -> None:
        """Every rank stops for the signal of the lowest rank that got one (a scheduler may signal one process
        only): summary.json names it and every process exits with the same code."""
        got = [s for s in all_gather_objects(self._stop_signal, self.dist) if s is not None]
        self._stop_signal = got[0]


def _holds_something(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def _env_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def train(cfg: Config, resume: bool = False, device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train from a resolved config (XE then SCST). Returns the run summary (also written to run.dir/summary.json)."""
    trainer = Trainer(cfg, resume=resume, device=device, progress=progress)
    try:
        trainer.setup()
        return trainer.train()
    finally:
        trainer.cleanup()
