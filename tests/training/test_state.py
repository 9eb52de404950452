"""The XE -> SCST switch and the stop rules over tables of validation scores (pure: no model, no data)."""

from __future__ import annotations

import pytest

from fsgr.training.state import PhaseRules, TrainState, end_of_epoch

RULES = PhaseRules(patience=2, xe_least=3, xe_limit=6, scst_enabled=True, scst_max_epochs=4)


def run(scores, rules=RULES):
    """Feed one validation score per epoch; -> the (phase, epoch) after each, and the epochs that switched/reloaded."""
    state, trail, switches = TrainState(), [], []
    for score in scores:
        end = end_of_epoch(state, score, rules)
        if end.to_scst:
            switches.append((state.epoch, end.reload_best_xe))
        state = end.state
        trail.append((state.phase, state.epoch))
        if state.phase == "done":
            break
    return trail, switches, state


@pytest.mark.parametrize("name,scores,rules,trail,switches", [
    ("patience ends XE once xe_least epochs are done, from the best XE epoch",
     [1, .5, .5, 2, 2], RULES,
     [("xe", 1), ("xe", 2), ("scst", 0), ("scst", 1), ("scst", 2)], [(2, True)]),
    ("patience before xe_least is reset and XE goes on",
     [1, .5, .5, .5, .5], PhaseRules(patience=1, xe_least=4, xe_limit=9, scst_enabled=True, scst_max_epochs=3),
     [("xe", 1), ("xe", 2), ("xe", 3), ("scst", 0), ("done", 1)], [(3, True)]),
    ("xe_limit ends XE; the last epoch was the best, so no reload",
     [1, 2, 3, 4, 5, 6, 7], RULES,
     [("xe", 1), ("xe", 2), ("xe", 3), ("xe", 4), ("xe", 5), ("scst", 0), ("scst", 1)], [(5, False)]),
    ("SCST off: the end of XE ends training",
     [1, .5, .5], PhaseRules(patience=2, xe_least=1, xe_limit=6, scst_enabled=False, scst_max_epochs=4),
     [("xe", 1), ("xe", 2), ("done", 3)], []),
    ("SCST stops at patience (the best is tracked across phases)",
     [1, 2, 3, 4, 5, 6, 5, 5], RULES,
     [("xe", 1), ("xe", 2), ("xe", 3), ("xe", 4), ("xe", 5), ("scst", 0), ("scst", 1), ("done", 2)], [(5, False)]),
    ("SCST stops at scst_max_epochs",
     [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], RULES,
     [("xe", 1), ("xe", 2), ("xe", 3), ("xe", 4), ("xe", 5), ("scst", 0), ("scst", 1), ("scst", 2), ("scst", 3),
      ("done", 4)], [(5, False)]),
])
def test_phase_trail(name, scores, rules, trail, switches):
    got_trail, got_switches, _ = run(scores, rules)
    assert got_trail == trail, name
    assert got_switches == switches, name


def test_best_score_phase_and_epoch_follow_the_maximum():
    _, _, state = run([1, .5, .5, 2, 2], RULES)
    assert (state.best_score, state.best_phase, state.best_epoch) == (2, "scst", 0)
    assert state.xe_epochs == 3


def test_the_scored_state_is_what_best_pt_stores():
    # improvement at the epoch that ends XE: best.pt records XE's next position, last.pt starts SCST
    end = end_of_epoch(TrainState(epoch=5, xe_epochs=5, best_score=1), 2.0, RULES)
    assert end.improved and end.to_scst and not end.reload_best_xe
    assert (end.scored.phase, end.scored.epoch, end.scored.best_epoch) == ("xe", 6, 5)
    assert (end.state.phase, end.state.epoch, end.state.patience) == ("scst", 0, 0)


def test_the_input_state_is_not_changed():
    state = TrainState(epoch=2, patience=1)
    end_of_epoch(state, 0.0, RULES)
    assert (state.epoch, state.patience) == (2, 1)


def test_rules_from_config_cap_xe_at_max_epochs():
    from fsgr.config import Config

    cfg = Config()
    cfg.train.max_epochs, cfg.train.xe_most = 3, 20
    assert PhaseRules.from_config(cfg).xe_limit == 3
