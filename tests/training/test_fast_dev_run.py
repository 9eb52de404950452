"""`fsgr train CONFIG --fast-dev-run N` on the demo config: N steps of each phase, N eval batches, projections, no
checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fsgr.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fast_dev_run_on_the_demo_config(tmp_path, capsys):
    run = tmp_path / "run"
    over = [f"run.dir={run}", f"data.synthetic.root={tmp_path / 'shapes'}", f"data.cache_dir={tmp_path / 'cache'}",
            "data.synthetic.num_train=20", "data.synthetic.num_val=6", "data.synthetic.num_test=4",
            "train.batch_size=50", "scst.batch_images=5", "eval.batch_images=4"]
    assert cli_main(["train", str(REPO / "configs" / "demo.yaml"), *over, "--fast-dev-run", "2"]) == 0
    out, err = capsys.readouterr()
    report = json.loads((run / "fast_dev_run.json").read_text())
    assert report == json.loads(out.strip().splitlines()[-1])
    # 20 training images: 10 per XE step (50 captions / 5), 5 per SCST step
    assert report["xe_steps_per_epoch"] == 2 and report["scst_steps_per_epoch"] == 4
    assert len(report["xe_step_times"]) == len(report["scst_step_times"]) == 2
    for key in ("data_setup_seconds", "xe_step_seconds", "scst_step_seconds", "eval_images_per_second",
                "peak_memory_bytes"):
        assert report[key] > 0, key
    p = report["projected"]
    assert p["xe_epoch_seconds"] == pytest.approx(2 * report["xe_step_seconds"])
    assert p["scst_epoch_seconds"] == pytest.approx(4 * report["scst_step_seconds"])
    assert p["val_seconds"] == pytest.approx(6 * report["val_seconds_per_image"])
    # demo: 3 XE epochs, 1 SCST epoch, each followed by validation
    assert p["run_seconds_at_most"] == pytest.approx(3 * (p["xe_epoch_seconds"] + p["val_seconds"])
                                                     + p["scst_epoch_seconds"] + p["val_seconds"])
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()
    assert "XE epoch" in err and "SCST epoch" in err and "validation" in err


def test_fast_dev_run_refuses_resume(tmp_path, capsys):
    assert cli_main(["train", str(REPO / "configs" / "demo.yaml"), f"run.dir={tmp_path}", "--resume",
                     "--fast-dev-run"]) == 2
    assert "--fast-dev-run and --resume" in capsys.readouterr().err
