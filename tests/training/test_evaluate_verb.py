"""`fsgr evaluate`: under `torchrun --nproc_per_node 2` (gloo, CPU) each process decodes its shard of the split, rank 0
gathers, scores and writes: the same captions and scores as one process, beam and greedy, and `"processes": 2`. A
metric that crashes after the decoding costs only itself: exit 1, the other scores printed and written."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fsgr.cli import main
from fsgr.config import load_config
from fsgr.training import train

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_kit):
    """A few training steps on tiny data with 5 test images (the two shards are uneven: 3 + 2)."""
    tmp = tmp_path_factory.mktemp("sharded_eval")
    data = tiny_kit.make_dataset(tmp / "data", n_train=10, n_val=2, n_test=5)
    cfg = tiny_kit.write(tmp / "run.yaml", tiny_kit.config(data, tmp / "run", train={"max_steps": 3},
                                                          eval={"test_at_end": False, "batch_images": 2}))
    train(load_config(cfg), progress=False)
    return tmp / "run" / "checkpoints" / "last.pt"


@pytest.mark.slow
@pytest.mark.parametrize("beam", [1, 3])
def test_two_processes_give_the_one_process_captions_and_scores(checkpoint, tmp_path, capsys, beam):
    common = ["evaluate", str(checkpoint), "--beam", str(beam), "--precision", "fp32"]
    assert main([*common, "--out", str(tmp_path / "one.json")]) == 0
    printed_one = json.loads(capsys.readouterr().out)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "fsgr", *common, "--out", str(tmp_path / "two.json")]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1                                           # rank 0 alone reports
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert len(one) == 5 and two == one                                # every image once, the same captions
    scores_one = json.loads((tmp_path / "one.json.scores.json").read_text())
    scores_two = json.loads((tmp_path / "two.json.scores.json").read_text())
    assert scores_one.pop("processes") == printed_one["processes"] == 1
    assert scores_two.pop("processes") == printed[0]["processes"] == 2
    assert scores_two == scores_one and scores_one["CIDEr"] >= 0 and scores_one["beam"] == beam


def test_a_crashing_meteor_exits_1_and_keeps_the_other_scores(checkpoint, tmp_path, capsys, crashing_meteor):
    rc = main(["evaluate", str(checkpoint), "--beam", "1", "--metrics", "bleu,meteor,cider",
               "--out", str(tmp_path / "p.json")])
    out, err = capsys.readouterr()
    assert rc == 1 and "internal error" not in err
    printed = json.loads(out)
    assert {"BLEU-4", "CIDEr"} <= set(printed) and "METEOR" not in printed
    assert printed["unavailable"]["METEOR"].startswith("failed:") and "OutOfMemoryError" in err
    assert json.loads((tmp_path / "p.json.scores.json").read_text()) == printed
