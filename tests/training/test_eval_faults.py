"""Evaluation faults never cost training: a Java metric that crashes is reported unavailable and the run goes on;
last.pt is on disk before validation starts, so even a fatal evaluation error leaves the epoch resumable."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fsgr.config import load_config
from fsgr.training import engine, train
from fsgr.core.checkpoint import load_checkpoint
from fsgr.training.logging import read_metrics

REPO = Path(__file__).resolve().parents[2]

FAKE_JAVA = """#!/bin/sh
# reports a version (so METEOR is attempted), then dies on any real work, as a JVM that crashes would
case "$1" in
  -version) echo 'openjdk version "17.0.99" 2026-01-01' >&2; exit 0 ;;
esac
echo "# A fatal error has been detected by the Java Runtime Environment: SIGSEGV" >&2
kill -SEGV $$
"""


@pytest.mark.slow
def test_a_crashing_java_costs_no_training(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text(FAKE_JAVA)
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    run = tmp_path / "run"
    over = [f"run.dir={run}", f"data.synthetic.root={tmp_path / 'shapes'}", "data.synthetic.num_train=20",
            "data.synthetic.num_val=6", "data.synthetic.num_test=4", "train.batch_size=50", "train.max_epochs=1",
            "train.xe_least=1", "train.xe_most=1", "scst.enabled=false", "eval.val_metrics=bleu,meteor,cider",
            "eval.test_at_end=false", "eval.beam_size=2"]
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "fsgr", "train", "demo", *over,
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["global_step"] == 2
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "checkpoints" / "best.pt").is_file()
    val = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "eval" and r["split"] == "val"]
    assert len(val) == 1
    assert "METEOR" not in val[0]["scores"] and {"BLEU-4", "CIDEr"} <= set(val[0]["scores"])
    reason = val[0]["unavailable"]["METEOR"]
    assert reason.startswith("failed:") and "METEOR" in reason and "SIGSEGV" in reason
    assert "METEOR: failed" in proc.stderr                       # said in the log as well


def test_last_checkpoint_is_saved_before_validation(tmp_path, tiny_run_config, monkeypatch):
    cfg = load_config(tiny_run_config(tmp_path, train={"max_epochs": 1, "xe_most": 1, "contrastive_weight": 0.0}))

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation blew up")

    monkeypatch.setattr(engine.Trainer, "_validate", broken)
    with pytest.raises(RuntimeError, match="blew up"):
        train(cfg, progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]
    assert state["global_step"] == state["step_in_epoch"] == 12 and state["epoch"] == 0   # the whole epoch is kept
    monkeypatch.undo()
    summary = train(cfg, resume=True, progress=False)              # resuming evaluates the epoch and goes on
    assert summary["status"] == "finished" and summary["global_step"] == 12 and summary["best_epoch"] == 0
