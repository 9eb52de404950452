"""The trainer's position and the rules that move it at an epoch's end, as pure functions (no model, no files).

    end_of_epoch(state, val_score, rules) -> EpochEnd

XE -> SCST, as the reference: after each XE epoch the validation score either improves (patience 0) or not
(patience + 1). Patience reaching `patience` before `xe_least` XE epochs resets it and XE goes on; at or after
`xe_least`, or once `xe_limit` XE epochs are done, XE ends: SCST starts from the best XE weights (or training ends
when SCST is off). In SCST, patience reaching `patience` or `scst_max_epochs` SCST epochs ends training. The best
score is tracked over both phases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


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


@dataclass(frozen=True)
class PhaseRules:
    patience: int                    # epochs without improvement that end a phase
    xe_least: int                    # XE epochs before patience may end XE
    xe_limit: int                    # XE epochs at most
    scst_enabled: bool
    scst_max_epochs: int

    @classmethod
    def from_config(cls, cfg) -> "PhaseRules":
        t = cfg.train
        return cls(patience=t.patience, xe_least=t.xe_least, xe_limit=min(t.xe_most, t.max_epochs),
                   scst_enabled=cfg.scst.enabled, scst_max_epochs=cfg.scst.max_epochs)


@dataclass(frozen=True)
class EpochEnd:
    scored: TrainState               # the score recorded, the position at the next epoch: what best.pt stores
    state: TrainState                # after the phase rules: where training continues (what last.pt stores)
    improved: bool                   # the validation score beat the best so far: save best.pt
    to_scst: bool                    # XE ended and SCST starts now (a fresh optimiser)
    reload_best_xe: bool             # ... from best.pt's weights: the best XE epoch was not the one just finished


def end_of_epoch(state: TrainState, score: float, rules: PhaseRules) -> EpochEnd:
    """The state after an epoch of `state.phase` that scored `score` on validation."""
    improved = score > state.best_score
    scored = replace(state, epoch=state.epoch + 1, step_in_epoch=0,
                     xe_epochs=state.xe_epochs + (state.phase == "xe"))
    if improved:
        scored = replace(scored, best_score=score, best_phase=state.phase, best_epoch=state.epoch, patience=0)
    else:
        scored = replace(scored, patience=state.patience + 1)
    if state.phase == "scst":
        done = scored.patience >= rules.patience or scored.epoch >= rules.scst_max_epochs
        return EpochEnd(scored, replace(scored, phase="done") if done else scored, improved, False, False)
    nxt, leave = scored, scored.xe_epochs >= rules.xe_limit
    if scored.patience >= rules.patience:
        if scored.xe_epochs < rules.xe_least:
            nxt = replace(nxt, patience=0)
        else:
            leave = True
    if not leave:
        return EpochEnd(scored, nxt, improved, False, False)
    if not rules.scst_enabled:
        return EpochEnd(scored, replace(nxt, phase="done"), improved, False, False)
    reload = nxt.best_phase == "xe" and nxt.best_epoch != state.epoch
    return EpochEnd(scored, replace(nxt, phase="scst", epoch=0, step_in_epoch=0, patience=0), improved, True, reload)
