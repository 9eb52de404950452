"""The PMA memory's update rules as the trainer applies them: commit, refresh, and the DDP exchange of banks."""

from __future__ import annotations

import os
import tempfile

import torch
import torch.distributed
import torch.multiprocessing

from fsgr.models.config import PMAConfig
from fsgr.models.memory import LayerMemory
from fsgr.core.distributed import DistInfo
from fsgr.training.memory_hook import MemoryHook

PMA = PMAConfig(enabled=True, num_prototypes=6, bank_iterations=4, tokens_per_step=8, refresh_every=2, knn=3,
                kmeans_iterations=15, bank_dtype="float32")


def _filled(seed: int = 0, shift: float = 0.0) -> LayerMemory:
    torch.manual_seed(seed)
    mem = LayerMemory(PMA, d_model=8, heads=2)
    for _ in range(4):
        mem.record(torch.randn(2, 2, 5, 4) + shift, torch.randn(2, 2, 5, 4), mem.plan(torch.rand(2, 5)))
        mem.commit()
    return mem


def test_commit_every_step_refresh_every_r_steps():
    mem = LayerMemory(PMA, d_model=8, heads=2)
    hook = MemoryHook([mem], PMA)
    refreshed = []
    for step in (1, 2, 3, 4):
        mem.record(torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4), mem.plan(torch.rand(2, 5)))
        refreshed.append(hook.after_step(step, "xe"))
    assert refreshed == [False, True, False, True] and int(mem.commits) == 4
    assert int(mem.proto_valid.sum()) == PMA.num_prototypes


def test_refresh_is_seeded_by_step_and_layer_only():
    a, b = _filled(), _filled()
    MemoryHook([a], PMA).refresh(step=6)
    MemoryHook([b], PMA).refresh(step=6)
    assert torch.equal(a.proto_k, b.proto_k) and torch.equal(a.proto_v, b.proto_v)
    MemoryHook([b], PMA).refresh(step=8)
    assert not torch.equal(a.proto_k, b.proto_k)


def test_no_memory_no_op():
    assert MemoryHook([], None).after_step(2, "xe") is False


def _ddp_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)                     # every rank sees other tokens
        mem = LayerMemory(PMA, d_model=8, heads=2)
        for _ in range(4):
            mem.record(torch.randn(2, 2, 5, 4) + 3 * rank, torch.randn(2, 2, 5, 4), mem.plan(torch.rand(2, 5)))
            mem.commit()
        MemoryHook([mem], PMA, DistInfo(rank=rank, world_size=world)).refresh(step=4)
        torch.save({"proto_k": mem.proto_k, "proto_v": mem.proto_v, "bank_k": mem.bank_k},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_ranks_keep_their_banks_and_share_identical_prototypes():
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.spawn(_ddp_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        r0, r1 = (torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in (0, 1))
    assert not torch.equal(r0["bank_k"], r1["bank_k"])
    assert torch.equal(r0["proto_k"], r1["proto_k"]) and torch.equal(r0["proto_v"], r1["proto_v"])
    # the union of both ranks' shares was clustered: rank 1's keys sit ~3 higher, so some prototypes are near each
    means = r0["proto_k"].mean(-1)
    assert (means < 1.5).any() and (means > 1.5).any()


