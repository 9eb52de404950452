"""The training engine with the prototypical memory on (tiny real model and data): banks pushed every step, prototypes
refreshed every R steps and logged, frozen in SCST, carried by checkpoints and restored exactly on resume."""

from __future__ import annotations

import pytest
import torch

from fsgr.config import load_config
from fsgr.training import train
from fsgr.core.checkpoint import load_checkpoint
from fsgr.training.logging import read_metrics

PMA = {"enabled": True, "num_prototypes": 4, "bank_iterations": 3, "tokens_per_step": 8, "refresh_every": 2,
       "knn": 2, "kmeans_iterations": 5, "bank_dtype": "float32"}
MEMORY = ("bank_k", "bank_v", "bank_valid", "commits", "proto_k", "proto_v", "proto_valid")


def _config(tiny_run_config, tmp_path, name, **train_cfg):
    return load_config(tiny_run_config(tmp_path, name, model={"pma": dict(PMA)},
                                       train={"max_epochs": 1, "xe_most": 1, "contrastive_weight": 0.0, **train_cfg},
                                       scst={"enabled": True, "mode": "sample", "max_epochs": 1}))


def _memory_state(path):
    model = load_checkpoint(path)["model"]
    return {k: v for k, v in model.items() if ".memory." in k and k.rsplit(".", 1)[1] in MEMORY}


@pytest.fixture(scope="module")
def pma_run(tmp_path_factory, tiny_run_config):
    tmp = tmp_path_factory.mktemp("pma")
    summary = train(_config(tiny_run_config, tmp, "run"), progress=False)
    return tmp, summary


def test_demo_trains_with_memory_and_logs_prototypes(pma_run):
    tmp, summary = pma_run
    assert summary["status"] == "finished"
    rows = [r for r in read_metrics(tmp / "run" / "metrics.jsonl") if r["kind"] == "train"]
    xe = [r for r in rows if r["phase"] == "xe"]
    scst = [r for r in rows if r["phase"] == "scst"]
    assert xe and scst and all("memory_prototypes" in r for r in rows)
    assert xe[0]["step"] == 1 and xe[0]["memory_prototypes"] == 0          # no refresh yet: nothing valid
    assert all(r["memory_prototypes"] == 4 for r in xe[1:])                 # 1 layer x M=4 from step 2 on
    assert all(r["memory_prototypes"] == 4 for r in scst)
    state = _memory_state(tmp / "run" / "checkpoints" / "last.pt")
    assert set(k.rsplit(".", 1)[1] for k in state) == set(MEMORY)
    assert int(state["decoder.layers.0.memory.commits"]) == len(xe)         # frozen in SCST: XE pushes only
    assert bool(state["decoder.layers.0.memory.proto_valid"].all())
    assert int(state["decoder.layers.0.memory.bank_valid"].sum()) == 3 * 8  # T=3 steps x cap 8, no pad rows
    assert torch.isfinite(state["decoder.layers.0.memory.proto_v"]).all()


def test_resume_restores_banks_and_prototypes_exactly(pma_run, tmp_path, tiny_run_config):
    tmp, _ = pma_run
    stopped = train(_config(tiny_run_config, tmp_path, "resumed", max_steps=5), progress=False)
    assert stopped["status"] == "max_steps"
    middle = _memory_state(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert int(middle["decoder.layers.0.memory.commits"]) == 5
    train(_config(tiny_run_config, tmp_path, "resumed"), resume=True, progress=False)
    straight = _memory_state(tmp / "run" / "checkpoints" / "last.pt")
    resumed = _memory_state(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert straight.keys() == resumed.keys()
    for k in straight:                                                       # bit for bit on one CPU process
        assert torch.equal(resumed[k], straight[k]), k


def test_checkpoint_captions_with_its_prototypes(pma_run, tiny_data):
    import fsgr
    from fsgr.models.decoding import beam_search

    tmp, _ = pma_run
    path = tmp / "run" / "checkpoints" / "last.pt"
    cap = fsgr.Captioner.from_checkpoint(path, device="cpu")
    mem = cap.model.decoder.layers[0].memory
    assert torch.equal(mem.proto_k, _memory_state(path)["decoder.layers.0.memory.proto_k"])
    images = sorted(tiny_data.parent.glob("img_*.jpg"))[:3]
    captions = cap.caption([str(p) for p in images])
    assert len(captions) == 3 and all(isinstance(c, str) and c for c in captions)
    batch = torch.stack([cap.preprocess(str(p)) for p in images])
    with torch.no_grad():
        enc = cap.model.encode(batch)
        with_memory = beam_search(cap.model, enc, beam_size=2, max_len=8).seq_logprob
        mem.proto_valid.zero_()                                              # hide the memory
        without = beam_search(cap.model, enc, beam_size=2, max_len=8).seq_logprob
    assert not torch.allclose(with_memory, without)                          # inference does use the prototypes
