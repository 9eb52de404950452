"""The training loop: XE (+ patch SupCon), then SCST; one readable loop with its state in one dataclass.

    train(cfg, resume=False) -> summary dict

Everything that decides what the next step computes lives in `TrainState` (phase, epoch, step within the epoch, global
step, best score, patience) plus the model/optimiser/scaler/RNG states; all of it goes into every checkpoint, so
`--resume` continues bit-for-bit. Data parallelism: torchrun env -> DDP for XE (gradients averaged in backward),
explicit gradient all-reduce for SCST (decoding does not go through DDP's forward). Rank 0 alone writes files.

Loss normalisation: a step's NLL is sum(token NLL) / (number of target tokens in the whole global batch), so one
process and N processes (and any gradient accumulation) optimise and log the same number.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from fsgr.config import Config, save_config, to_dict
from fsgr.core import checkpoint as ckpt_io
from fsgr.core.build import build_model
from fsgr.core.device import autocast, pick_device, resolve_amp
from fsgr.errors import ConfigError, FsgrError
from fsgr.metrics.reward import CiderDReward
from fsgr.models import decoding
from fsgr.training import setup
from fsgr.training.distributed import all_gather_objects, all_reduce_sum, barrier, init_distributed, shutdown
from fsgr.training.evaluation import evaluate_split
from fsgr.training.logging import MetricsLogger, NullLogger
from fsgr.training.losses import (nll_sum, num_targets, patch_contrastive_loss, scst_baseline, scst_beam_loss,
                                  scst_sample_loss, through_eos_mask)
from fsgr.training.schedules import LrSchedule, scst_schedule, xe_schedule


class NonFiniteLossError(FsgrError):
    """The loss became NaN/inf: training stops (the reference kept going, averaging NaN into its running loss)."""


@dataclass
class TrainState:
    phase: str = "xe"                # "xe" | "scst" | "done"
    epoch: int = 0                   # epoch index within the phase
    step_in_epoch: int = 0           # optimiser steps already taken in this epoch (resume skips their batches)
    global_step: int = 0             # optimiser steps in total, both phases
    best_score: float = -math.inf    # best val CIDEr so far (both phases)
    best_phase: str = ""
    best_epoch: int = -1
    patience: int = 0
    xe_epochs: int = 0               # XE epochs completed (the switch rules count these)
    status: str = "running"          # "running" | "finished" | "max_steps" | "interrupted"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: Config, resume: bool = False, device: str | None = None, progress: bool = True):
        self.cfg = cfg
        self.resume = resume
        self.dist = init_distributed(pick_device(device, _env_local_rank()))
        self.device = pick_device(device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.progress = progress and self.dist.is_main
        self.run_dir = Path(cfg.run.dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.amp_dtype = resolve_amp(cfg.train.amp, self.device)
        self._check_batch_sizes()
        seed_everything(cfg.train.seed)

        self.data = setup.build_data(cfg)                 # records per split, vocab, reward refs
        self.vocab = self.data.vocab
        self.model, self.codebook_names, self.codebook_fingerprint = build_model(cfg, self.vocab)
        self.model.to(self.device)
        self.state = TrainState()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.loader_generator = torch.Generator()
        self.optimizer = None
        self.schedule: Optional[LrSchedule] = None
        self._ddp = None
        self._reward = None
        self._stop_signal: Optional[int] = None
        self.logger = None
        self.last_eval: dict[str, Any] = {}
        self.test_result: Optional[dict[str, Any]] = None   # the best checkpoint's test scores, once scored
        self._said_unavailable = False                      # metrics that cannot run here are named once per run

    # ------------------------------------------------------------------ set-up helpers
    def _check_batch_sizes(self) -> None:
        t, w = self.cfg.train, self.dist.world_size
        if t.batch_size % (w * t.grad_accum):
            raise ConfigError(f"train.batch_size={t.batch_size} must be divisible by processes ({w}) x "
                              f"train.grad_accum ({t.grad_accum})")
        if self.cfg.scst.enabled and self.cfg.scst.batch_images % w:
            raise ConfigError(f"scst.batch_images={self.cfg.scst.batch_images} must be divisible by processes ({w})")
        if t.compile:
            raise ConfigError("train.compile=true is not supported yet (the decoder's growing cache recompiles); "
                              "set train.compile=false")
        if self.cfg.scst.enabled and self.cfg.scst.mode == "sample" and self.cfg.scst.num_samples < 2:
            raise ConfigError("scst.mode=sample needs scst.num_samples >= 2 (mean-of-others baseline)")
        if t.contrastive_weight > 0 and not self.cfg.model.semantic.enabled and not self.cfg.data.patch_labels:
            raise ConfigError("train.contrastive_weight > 0 needs patch labels: model.semantic.enabled=true (online "
                              "concept ids) or data.patch_labels (offline); or set train.contrastive_weight=0")

    def _build_optimizer(self, phase: str) -> None:
        model = self.model
        groups = model.parameter_groups()
        if phase == "scst" and not self.cfg.model.backbone.train_in_scst:
            for p in groups.get("backbone", []):   # the reference's SCST optimiser held no backbone
                p.requires_grad_(False)
            groups = {k: v for k, v in groups.items() if k != "backbone"}
        param_groups = [{"params": [p for p in ps if p.requires_grad], "name": name} for name, ps in groups.items()]
        param_groups = [g for g in param_groups if g["params"]]
        betas = tuple(self.cfg.train.adam_betas)
        self.optimizer = torch.optim.Adam(param_groups, lr=0.0, betas=betas, eps=self.cfg.train.adam_eps)
        self.schedule = xe_schedule(self.cfg.train) if phase == "xe" else scst_schedule(self.cfg.scst)
        self._ddp = None
        if self.dist.enabled and phase == "xe":
            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = self.cfg.train.find_unused_parameters
            if unused is None:
                unused = self.cfg.train.contrastive_weight == 0
            self._ddp = DDP(self.model, device_ids=ids, find_unused_parameters=unused)

    def _trainable(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self) -> dict[str, Any]:
        rng = all_gather_objects(ckpt_io.rng_state(self.loader_generator), self.dist)
        return {
            "format_version": ckpt_io.FORMAT_VERSION,
            "config": to_dict(self.cfg),
            "vocab_itos": list(self.vocab.itos),
            "codebook_names": self.codebook_names,
            "codebook_fingerprint": self.codebook_fingerprint,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": asdict(self.schedule),
            "scaler": self.scaler.state_dict(),
            "rng": rng,                         # one entry per rank
            "state": asdict(self.state),
            "world_size": self.dist.world_size,
            "last_eval": self.last_eval,
        }

    def save(self, name: str) -> Path:
        path = self.ckpt_dir / f"{name}.pt"
        payload = self._checkpoint()            # every rank takes part (RNG gather)
        if self.dist.is_main:
            ckpt_io.atomic_save(payload, path)
        barrier(self.dist)
        return path

    def _restore(self) -> None:
        path = self.ckpt_dir / "last.pt"
        ckpt = ckpt_io.load_checkpoint(path)
        ckpt_io.check_resumable(ckpt, path, to_dict(self.cfg), list(self.vocab.itos), self.codebook_fingerprint)
        if ckpt["world_size"] != self.dist.world_size:
            raise FsgrError(f"{path}: saved by {ckpt['world_size']} processes, resuming with "
                            f"{self.dist.world_size}; bit-exact resumption needs the same number")
        self.state = TrainState(**ckpt["state"])
        self.model.load_state_dict(ckpt["model"])
        self._build_optimizer(self.state.phase)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.last_eval = ckpt.get("last_eval", {})
        ckpt_io.set_rng_state(ckpt["rng"][self.dist.rank], self.loader_generator)

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "predictions").mkdir(exist_ok=True)
            if not self.resume and (self.ckpt_dir / "last.pt").exists():
                raise FsgrError(f"{self.run_dir}: holds a run already (checkpoints/last.pt); pass --resume to "
                                f"continue it or choose another run.dir")
        barrier(self.dist)
        if self.resume:
            self._restore()
        else:
            self._build_optimizer("xe")
        if self.dist.is_main:
            save_config(self.cfg, self.run_dir / "config.yaml")
        self.logger = MetricsLogger(self.run_dir) if self.dist.is_main else NullLogger()
        previous = self._install_signal_handlers()
        try:
            self._loop()
            if self.state.status == "finished" and self.cfg.eval.test_at_end:
                self._test_best()
        finally:
            self._restore_signal_handlers(previous)
            self.logger.close()
        return self.summary()

    def _loop(self) -> None:
        st, cfg = self.state, self.cfg
        while st.phase != "done":
            if self._steps_exhausted():   # the budget ran out at an epoch end: stopped, not finished (no test)
                st.status = "max_steps"
                path = self.save("last")
                self._say(f"stopped (max_steps) before {st.phase} epoch {st.epoch}; saved {path}; continue with "
                          f"--resume")
                return
            lrs = self.schedule.apply(self.optimizer, st.epoch)
            self._log({"kind": "lr", "phase": st.phase, "epoch": st.epoch, "step": st.global_step, "lr": lrs})
            self._say(f"[{st.phase} epoch {st.epoch}] lr " + ", ".join(f"{k} {v:.3g}" for k, v in lrs.items()))
            outcome = self._train_epoch()
            if outcome != "complete":
                st.status = outcome
                path = self.save("last")
                self._say(f"stopped ({outcome}) at {st.phase} epoch {st.epoch} step {st.step_in_epoch}; "
                          f"saved {path}; continue with --resume")
                return
            self._end_of_epoch()
            if self._signal_agreed():
                st.status = "interrupted"
                self._say(f"stopped (signal) after {st.phase} epoch {st.epoch - 1}; continue with --resume")
                return
        st.status = "finished"
        self.save("last")

    def _steps_exhausted(self) -> bool:
        return self.cfg.train.max_steps is not None and self.state.global_step >= self.cfg.train.max_steps

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self) -> str:
        st = self.state
        scst = st.phase == "scst"
        loader = setup.train_loader(self.cfg, self.data, self.dist, epoch=st.epoch + (1000 if scst else 0),
                                    start_step=st.step_in_epoch, scst=scst, generator=self.loader_generator)
        steps_total = setup.steps_per_epoch(loader, self.cfg, scst)
        if steps_total <= 0:
            raise ConfigError(f"the training split is smaller than one global batch "
                              f"({self.cfg.scst.batch_images if scst else self.cfg.train.batch_size})")
        micro = 1 if scst else self.cfg.train.grad_accum
        self.model.train()
        it = iter(loader)
        bar = None
        if self.progress:
            bar = tqdm(total=steps_total, initial=st.step_in_epoch, desc=f"{st.phase} {st.epoch}", unit="step",
                       dynamic_ncols=True, file=sys.stderr)
        window: list[float] = []
        try:
            while st.step_in_epoch < steps_total:
                batches = [next(it) for _ in range(micro)]
                t0 = time.perf_counter()
                values = self._scst_step(batches[0]) if scst else self._xe_step(batches)
                st.step_in_epoch += 1
                st.global_step += 1
                self.model.memory_update(st.global_step, st.phase)   # PMA bank push / refresh (no-op: memory off)
                window.append(values["loss"])
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
                if st.global_step % self.cfg.train.log_every == 0 or st.step_in_epoch == steps_total:
                    row = {"kind": "train", "phase": st.phase, "epoch": st.epoch, "step": st.global_step,
                           "step_in_epoch": st.step_in_epoch, **values,
                           "loss_avg": float(np.mean(window)),
                           "lr": self._main_lr(),
                           "lrs": {g["name"]: g["lr"] for g in self.optimizer.param_groups},
                           "step_time_s": time.perf_counter() - t0}
                    if (prototypes := self.model.memory_prototypes()) is not None:
                        row["memory_prototypes"] = prototypes
                    self._log(row)
                    window = []
                if st.step_in_epoch == steps_total:
                    break
                if self._stop_requested(values):
                    return "interrupted"
                if self._steps_exhausted():
                    return "max_steps"
        finally:
            if bar is not None:
                bar.close()
        return "complete"

    def _main_lr(self) -> float:
        """The LR that train.lr / scst.lr set (the captioner group), not whichever group happens to come first."""
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        return lrs.get("captioner", self.optimizer.param_groups[0]["lr"])

    def _stop_requested(self, values: dict) -> bool:
        return bool(values.get("_stop", 0))

    def _signal_agreed(self) -> bool:
        flag = 1.0 if self._stop_signal is not None else 0.0
        return all_reduce_sum([flag], self.device, self.dist)[0] > 0

    # ------------------------------------------------------------------ XE
    def _xe_step(self, batches) -> dict[str, float]:
        cfg, dev, w = self.cfg.train, self.device, self.dist.world_size
        pad = self.vocab.pad_id
        # the denominator of the NLL: target tokens of the WHOLE global batch (all processes, all micro-batches)
        global_targets = all_reduce_sum([float(sum(num_targets(b.tokens, pad) for b in batches))], dev, self.dist)[0]
        module = self._ddp if self._ddp is not None else self.model
        sums = torch.zeros(3, dtype=torch.float64)    # loss, nll, contrastive (this process's share)
        for i, batch in enumerate(batches):
            batch = batch.to(dev, non_blocking=True)
            sync = self._ddp.no_sync() if (self._ddp is not None and i < len(batches) - 1) else contextlib.nullcontext()
            with sync:
                with autocast(self.device, self.amp_dtype):
                    out = module(batch.images, batch.tokens, batch.image_index)
                nll, _ = nll_sum(out.logprobs, batch.tokens, pad)
                nll = nll / global_targets
                loss = nll * w                               # DDP averages gradients over the w processes
                con = torch.zeros((), device=dev)
                if cfg.contrastive_weight > 0:
                    con = patch_contrastive_loss(out, batch.patch_labels, cfg) / len(batches)
                    loss = loss + cfg.contrastive_weight * con
                self.scaler.scale(loss).backward()
            part = torch.stack([(loss / w).detach().double(), nll.detach().double(), (con / w).detach().double()])
            sums += part.cpu()
        self._optimizer_step()
        return self._reduce_step_values(sums, batches)

    def _optimizer_step(self) -> None:
        if self.cfg.train.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self._trainable(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _reduce_step_values(self, sums: torch.Tensor, batches, names=("loss", "nll", "contrastive")) -> dict:
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

    # ------------------------------------------------------------------ SCST
    def _scst_step(self, batch) -> dict[str, float]:
        sc, dev, w = self.cfg.scst, self.device, self.dist.world_size
        batch = batch.to(dev, non_blocking=True)
        reward_fn = self._reward_fn()
        with autocast(self.device, self.amp_dtype):
            encoded = self.model.encode(batch.images, backbone_grad=self.cfg.model.backbone.train_in_scst)
            if sc.mode == "sample":
                tokens, logprobs = decoding.sample(self.model, encoded, num_samples=sc.num_samples, max_len=sc.max_len)
            else:
                beams = decoding.beam_search(self.model, encoded, beam_size=sc.num_samples, max_len=sc.max_len,
                                             return_all=True, grad=True)
                tokens, logprobs = beams.tokens, beams.token_logprobs
        b, k = tokens.shape[:2]
        logprobs = logprobs.float()
        eos = self.vocab.eos_id
        mask = through_eos_mask(tokens, eos)          # generated tokens up to and including the first <eos>
        token_lists = tokens.cpu().tolist()
        captions = [self.vocab.decode(ids, collapse_repeats=False) for row in token_lists for ids in row]
        ids_rep = [int(i) for i in batch.image_ids for _ in range(k)]
        if sc.mode == "sample":   # SacreEOS "standard": <eos> counted as a word of candidates and references
            ended = [eos in ids for row in token_lists for ids in row]
            captions = [c + " " + EOS_WORD if e else c for c, e in zip(captions, ended)]
        rewards = torch.as_tensor(np.asarray(reward_fn(ids_rep, captions), dtype=np.float64),
                                  dtype=torch.float32).view(b, k).to(dev)
        advantage = rewards - scst_baseline(rewards, sc.mode)
        if sc.mode == "sample":
            loss_sum, count = scst_sample_loss(logprobs, mask, advantage)
        else:
            loss_sum, count = scst_beam_loss(logprobs * mask, advantage, sc.max_len)
        global_count = all_reduce_sum([float(count)], dev, self.dist)[0]
        loss = loss_sum / global_count
        self.scaler.scale(loss * w).backward()
        if self.dist.enabled:
            self._all_reduce_gradients()
        part = torch.stack([loss.detach().double(), rewards.mean().detach().double() / w]).cpu()
        self._optimizer_step()
        return self._reduce_step_values(part, [batch], names=("loss", "reward"))

    def _all_reduce_gradients(self) -> None:
        for p in self._trainable():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(self.dist.world_size)

    def _reward_fn(self):
        if self._reward is None:
            refs = self.data.train_refs
            if self.cfg.scst.mode == "sample":
                refs = {i: [r + " " + EOS_WORD for r in caps] for i, caps in refs.items()}
            self._reward = CiderDReward(refs)
        return self._reward

    # ------------------------------------------------------------------ epoch end: evaluate, select, switch
    def _end_of_epoch(self) -> None:
        st, cfg = self.state, self.cfg
        tag = f"{st.phase}{st.epoch}"
        result = evaluate_split(self.model, self.data.split("val"), self.vocab, cfg, self.device, self.dist,
                                amp_dtype=self.amp_dtype, with_loss=cfg.eval.val_loss,
                                predictions_path=self.run_dir / "predictions" / f"val_{tag}.json",
                                patch_labels=self.data.patch_labels)
        cider = result["scores"].get("CIDEr")
        if cider is None:
            raise FsgrError("validation scores have no CIDEr: eval.metrics must include cider (model selection)")
        self.last_eval = {"split": "val", "phase": st.phase, "epoch": st.epoch, **result}
        if result.get("unavailable") and not self._said_unavailable:
            self._said_unavailable = True
            self._say("metrics not computed here: " + "; ".join(f"{k}: {v}" for k, v in
                                                                 result["unavailable"].items()))
        improved = cider > st.best_score
        self._log({"kind": "eval", "split": "val", "phase": st.phase, "epoch": st.epoch, "step": st.global_step,
                   **{k: v for k, v in result.items() if k != "num_images"}, "improved": improved,
                   "scst_mode": cfg.scst.mode if st.phase == "scst" else None})
        self._say(f"[{st.phase} epoch {st.epoch}] val " + " ".join(f"{k} {v:.4g}" for k, v in
                  result["scores"].items()) + (f" loss {result['loss']:.4f}" if "loss" in result else ""))
        if improved:
            st.best_score, st.best_phase, st.best_epoch, st.patience = cider, st.phase, st.epoch, 0
        else:
            st.patience += 1
        if st.phase == "xe":
            st.xe_epochs += 1
        # advance the position first: a checkpoint saved now resumes at the next epoch
        finished_phase, finished_epoch = st.phase, st.epoch
        st.epoch += 1
        st.step_in_epoch = 0
        if improved:
            self.save("best")
        if finished_phase == "xe":
            switch = False
            xe_limit = min(cfg.train.xe_most, cfg.train.max_epochs)
            if st.patience >= cfg.train.patience:
                if st.xe_epochs < cfg.train.xe_least:
                    st.patience = 0
                else:
                    switch = True
            if st.xe_epochs >= xe_limit:
                switch = True
            if switch:
                self._leave_xe()
        else:
            if st.patience >= cfg.train.patience or st.epoch >= cfg.scst.max_epochs:
                st.phase = "done"
        self.save("last")

    def _leave_xe(self) -> None:
        st = self.state
        if not self.cfg.scst.enabled:
            st.phase = "done"
            return
        if st.best_phase == "xe" and st.best_epoch != st.epoch - 1:   # reload the best-val XE weights (reference)
            best = ckpt_io.load_checkpoint(self.ckpt_dir / "best.pt")
            self.model.load_state_dict(best["model"])
            self._say(f"switching to SCST from the best XE epoch {st.best_epoch} (val CIDEr {st.best_score:.4f})")
        st.phase, st.epoch, st.step_in_epoch, st.patience = "scst", 0, 0, 0
        self._build_optimizer("scst")

    def _test_best(self) -> None:
        test = self.data.split("test")
        if not test:
            return
        best_path = self.ckpt_dir / "best.pt"
        if best_path.exists():
            self.model.load_state_dict(ckpt_io.load_checkpoint(best_path)["model"])
        result = evaluate_split(self.model, test, self.vocab, self.cfg, self.device, self.dist,
                                amp_dtype=self.amp_dtype, with_loss=False,
                                predictions_path=self.run_dir / "predictions" / "test_best.json")
        self.test_result = result
        self._log({"kind": "eval", "split": "test", "phase": self.state.best_phase, "epoch": self.state.best_epoch,
                   "step": self.state.global_step, **result, "checkpoint": str(best_path)})
        self._say("test (best-val checkpoint, reported only) " +
                  " ".join(f"{k} {v:.4g}" for k, v in result["scores"].items()))

    # ------------------------------------------------------------------ output
    def _log(self, row: dict) -> None:
        self.logger.log({k: v for k, v in row.items() if not k.startswith("_")}, self.state.global_step)

    def _say(self, text: str) -> None:
        if self.dist.is_main:
            tqdm.write(text, file=sys.stderr)

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
            "world_size": self.dist.world_size, "device": str(self.device),
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32",
        }
        if self.test_result is not None:
            out["test"] = self.test_result["scores"]
        if self.dist.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(out, indent=2))
        return out

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            self._stop_signal = signum

        return {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    @staticmethod
    def _restore_signal_handlers(previous) -> None:
        for s, h in (previous or {}).items():
            signal.signal(s, h)


EOS_WORD = "eos"   # the word that stands for <eos> in SacreEOS-standard rewards (PTB-safe, no angle brackets)
SCST_RECIPES = {
    "sample": "SCST standard (SacreEOS): 5 multinomial samples/image, mean-of-others baseline, <eos> in the reward, "
              "CIDEr-D with training-set document frequencies",
    "beam": "SCST M2/FSGR: beam 5 as samples, mean-of-beams baseline, <eos> dropped from the reward, CIDEr-D with "
            "training-set document frequencies",
}


def _env_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def train(cfg: Config, resume: bool = False, device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train from a resolved config (XE then SCST). Returns the run summary (also written to run.dir/summary.json)."""
    trainer = Trainer(cfg, resume=resume, device=device, progress=progress)
    try:
        return trainer.run()
    finally:
        shutdown(trainer.dist)
