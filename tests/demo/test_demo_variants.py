"""`fsgr demo` with the semantic head off (the ablation's "no semantic grid" variant): it trains, scores and reports
patch accuracy as not applicable instead of stopping on the codebook check."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_without_semantic_grid(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "fsgr", "demo", "--out", str(out), "--no-progress",
         "model.semantic.enabled=false", "train.contrastive_weight=0",
         "data.synthetic.num_train=200", "data.synthetic.num_val=20", "data.synthetic.num_test=40",
         "train.max_epochs=1", "train.xe_least=1", "train.xe_most=1", "scst.enabled=false", "eval.batch_images=40"],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "patch accuracy: not applicable" in proc.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["semantic_patch_accuracy"] is None and m["untrained_fsgr_head"] is None
    assert m["files"]["explain"] is None and not (out / "explain.png").exists()
    assert {"BLEU-1", "CIDEr"} <= set(m["test"]) and m["test"]["BLEU-1"] > 0   # scored, and not an empty caption
    assert 0.0 <= m["tiny_clip_alone"]["accuracy"] <= 1.0
    assert len(json.loads((out / "predictions" / "test_demo.json").read_text())) == 40
