"""Past one process: resuming on another number of processes, two torchrun agents as two nodes, SIGUSR1 on one rank,
and the temporary file a killed checkpoint save leaves behind. The multi-process tests run gloo on this CPU."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fsgr.config import load_config
from fsgr.core.checkpoint import load_checkpoint
from fsgr.training import train
from fsgr.training.logging import read_metrics

# 24 training images, 4 per step (20 captions, image batching): 6 XE steps in the epoch; SCST off
ONE_EPOCH = ["train.batch_size=20", "data.batching=image", "train.max_epochs=1", "train.xe_most=1",
             "train.log_batches=true"]


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"}


def _batches(run: Path) -> dict[int, dict]:
    """step -> {"ids": the sorted image ids of every rank's part, "world_size": processes that took it}."""
    steps: dict[int, dict] = {}
    for path in sorted((run / "batches").glob("rank*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            step = steps.setdefault(row["step"], {"ids": [], "world_size": row["world_size"], "ranks": 0})
            step["ids"] = sorted(step["ids"] + row["image_ids"])
            step["ranks"] += 1
    return steps


@pytest.mark.slow
@pytest.mark.parametrize("before, after", [(2, 1), (1, 2)])
def test_resume_on_another_number_of_processes(tmp_path, tiny_run_config, launch, before, after):
    over = [*launch.no_noise, *ONE_EPOCH]
    whole, split = tiny_run_config(tmp_path, "whole"), tiny_run_config(tmp_path, "split")
    train(load_config(whole, [*over, "train.max_steps=6"]), progress=False)          # one process, no stop
    launch.train(split, [*over, "train.max_steps=3"], processes=before)               # stops mid-epoch
    proc = launch.train(split, [*over, "train.max_steps=6"], processes=after, resume=True)
    assert f"saved by {before} process(es), resuming with {after}: exact in data order" in proc.stderr
    assert "not bit-exact in floats" in proc.stderr

    a, b = _batches(tmp_path / "whole"), _batches(tmp_path / "split")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    assert [b[s]["world_size"] for s in sorted(b)] == [before] * 3 + [after] * 3
    assert all(b[s]["ranks"] == b[s]["world_size"] for s in b)
    for s in a:                                   # every step saw the uninterrupted run's global batch ...
        assert b[s]["ids"] == a[s]["ids"], s
    epoch = [i for s in b for i in b[s]["ids"]]  # ... so the epoch saw each training image exactly once
    assert sorted(epoch) == sorted(i for s in a for i in a[s]["ids"]) and len(epoch) == len(set(epoch)) == 24

    la, lb = _losses(tmp_path / "whole"), _losses(tmp_path / "split")
    differences = {s: abs(la[s] - lb[s]) for s in la}
    print(f"{before} -> {after} processes: max loss difference {max(differences.values()):.2e}")
    assert max(differences.values()) <= 1e-4, differences
    saved = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert saved["world_size"] == after and saved["state"]["global_step"] == 6
    assert {int(s["step"]) for s in saved["optimizer"]["state"].values()} == {6}   # Adam's moments carried over


@pytest.mark.slow
def test_two_torchrun_agents_as_two_nodes_match_one_process(tmp_path, tiny_run_config, launch):
    over = ["train.max_steps=4", *launch.no_noise, "train.batch_size=20", "data.batching=caption"]
    one, two = tiny_run_config(tmp_path, "one"), tiny_run_config(tmp_path, "two")
    train(load_config(one, over), progress=False)
    port = launch.free_port()
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node",
                                "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
                                "--rdzv_id", "fsgr-test", "-m", "fsgr", "train", str(two), *over, "--no-progress"],
                               env=launch.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    results = [agent.communicate(timeout=300) for agent in agents]
    for agent, (_, err) in zip(agents, results):
        assert agent.returncode == 0, err[-3000:]
    assert load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["world_size"] == 2
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    difference = max(abs(a[s] - b[s]) for s in a)
    print(f"2 nodes x 1 process vs 1 process: max loss difference {difference:.2e}")
    assert difference <= 1e-4


def _children(pid: int) -> list[int]:
    """The processes `pid` started, from any of its threads."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def _rank_of(pid: int) -> int | None:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ranks = [int(v.split(b"=", 1)[1]) for v in env if v.startswith(b"RANK=")]
    return ranks[0] if ranks else None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers through /proc")
@pytest.mark.parametrize("to", ["rank 1", "torchrun"])
def test_sigusr1_stops_every_rank_at_the_same_step(tmp_path, tiny_run_config, launch, to):
    # SIGUSR1 to one worker (all ranks must agree), or to the agent as SLURM's `--signal=USR1@120` does (torchrun
    # forwards it to every worker with --signals-to-handle, as scripts/slurm/train.sbatch runs it): every rank
    # stops at the same step, last.pt is saved, the workers exit 138
    cfg = tiny_run_config(tmp_path, train={"max_epochs": 50, "xe_most": 50, "xe_least": 50, "log_batches": True})
    forward = ["--signals-to-handle", "SIGTERM,SIGINT,SIGUSR1"] if to == "torchrun" else []
    agent = subprocess.Popen(launch.command(cfg, [], processes=2, torchrun=forward), env=launch.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    batches = tmp_path / "run" / "batches" / "rank1.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and not (batches.exists() and batches.read_text().count("\n") >= 2):
        time.sleep(0.2)
    if to == "torchrun":
        agent.send_signal(signal.SIGUSR1)
    else:
        rank1 = [pid for pid in _children(agent.pid) if _rank_of(pid) == 1]
        assert len(rank1) == 1, _children(agent.pid)
        os.kill(rank1[0], signal.SIGUSR1)
    out, err = agent.communicate(timeout=180)
    assert agent.returncode != 0, err[-3000:]         # torchrun reports the stop as a failure (summary.json says why)
    if to == "rank 1":                                # ... naming the code a worker exited with
        assert re.search(r"exitcode\s*:\s*138", err), err[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGUSR1"   # rank 0 names rank 1's signal
    last = [json.loads(line)["step"] for line in batches.read_text().splitlines()][-1]
    first = [json.loads(line)["step"] for line in batches.with_name("rank0.jsonl").read_text().splitlines()][-1]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]
    assert first == last == state["global_step"] == summary["global_step"] >= 2


def test_resume_removes_the_temporary_file_of_a_killed_save(tmp_path, tiny_run_config, capsys):
    cfg = tiny_run_config(tmp_path, train={"max_steps": 1})
    train(load_config(cfg), progress=False)
    checkpoints = tmp_path / "run" / "checkpoints"
    stale = checkpoints / ".last.pt.4242-0badcafe.tmp"          # what `atomic_write` leaves when SIGKILLed mid-save
    stale.write_bytes(b"\0" * 4096)
    kept = checkpoints / "notes.tmp"                            # not a checkpoint temporary: left alone
    kept.write_text("mine")
    capsys.readouterr()
    train(load_config(cfg, ["train.max_steps=2"]), resume=True, progress=False)
    assert not stale.exists() and kept.read_text() == "mine"
    assert f"removed {stale}" in capsys.readouterr().err
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt", "notes.tmp"]   # 2 of 12 steps: no best.pt


SBATCH = Path(__file__).resolve().parents[2] / "scripts" / "slurm" / "train.sbatch"


def _slurm_stand_ins(folder: Path) -> Path:
    """`srun` (one node: run the task here) and `scontrol` (hostnames; other calls logged) for running the template
    without a SLURM cluster."""
    folder.mkdir()
    (folder / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (folder / "scontrol").write_text('#!/bin/bash\nif [ "$1 $2" = "show hostnames" ]; then echo 127.0.0.1; '
                                     'else echo "$@" >> "$SCONTROL_LOG"; fi\n')
    for tool in folder.iterdir():
        tool.chmod(0o755)
    return folder


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun through /proc")
def test_slurm_template_requeues_on_sigusr1_and_the_requeued_job_resumes(tmp_path, tiny_run_config, launch):
    tools = _slurm_stand_ins(tmp_path / "slurm")
    env = {**launch.env(), "PATH": os.pathsep.join([str(tools), str(Path(sys.executable).parent),
                                                     os.environ["PATH"]]),
           "SLURM_NNODES": "1", "SLURM_GPUS_ON_NODE": "2", "SLURM_JOB_NODELIST": "node1", "SLURM_JOB_ID": "4242",
           "RUN_DIR": str(tmp_path / "run"), "FSGR_RDZV_PORT": str(launch.free_port()),
           "SCONTROL_LOG": str(tmp_path / "scontrol.log")}
    cfg = tiny_run_config(tmp_path, train={"max_epochs": 50, "xe_most": 50, "xe_least": 50, "log_batches": True})
    job = subprocess.Popen(["bash", str(SBATCH), str(cfg)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    batches = tmp_path / "run" / "batches" / "rank0.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and not (batches.exists() and batches.read_text().count("\n") >= 2):
        time.sleep(0.2)
    agents = [pid for pid in _children(job.pid)
              if b"torch.distributed.run" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(agents) == 1
    os.kill(agents[0], signal.SIGUSR1)              # what `#SBATCH --signal=USR1@120` does to the job step
    out, err = job.communicate(timeout=180)
    assert job.returncode == 0, err[-3000:]
    assert "requeueing job 4242" in out and (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    stopped = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["signal"] == "SIGUSR1" and stopped["world_size"] == 2

    # the requeued job: the same script finds last.pt and resumes (here up to two more steps, on one GPU)
    more = stopped["global_step"] + 2
    env["SLURM_GPUS_ON_NODE"], env["FSGR_RDZV_PORT"] = "1", str(launch.free_port())
    again = subprocess.run(["bash", str(SBATCH), str(cfg), f"train.max_steps={more}"], env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert resumed["status"] == "max_steps" and resumed["global_step"] == more and resumed["world_size"] == 1
    assert "resuming with 1: exact in data order" in again.stderr
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"      # a finished stint is not requeued
