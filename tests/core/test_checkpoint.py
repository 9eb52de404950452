"""The checkpoint file: atomic write, refusal of foreign/torn files, RNG round trip, resume checks."""

import random

import numpy as np
import pytest
import torch

from fsgr.config import Config, to_dict
from fsgr.core import checkpoint as ck
from fsgr.errors import CheckpointError


def test_atomic_save_leaves_no_temporary_and_round_trips(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    ck.atomic_save({"format_version": ck.FORMAT_VERSION, "x": torch.arange(3)}, path)
    ck.atomic_save({"format_version": ck.FORMAT_VERSION, "x": torch.arange(4)}, path)   # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
    assert ck.load_checkpoint(path)["x"].tolist() == [0, 1, 2, 3]


def test_load_refuses_foreign_and_torn_files(tmp_path):
    torn = tmp_path / "torn.pt"
    torn.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="torn.pt"):
        ck.load_checkpoint(torn)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not an fsgr checkpoint"):
        ck.load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        ck.load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_round_trip_restores_every_generator():
    gen = torch.Generator().manual_seed(3)
    state = ck.rng_state(gen)
    a = (random.random(), np.random.rand(), torch.rand(2).tolist(), torch.rand(1, generator=gen).item())
    ck.set_rng_state(state, gen)
    b = (random.random(), np.random.rand(), torch.rand(2).tolist(), torch.rand(1, generator=gen).item())
    assert a == b


def _ckpt(cfg, itos=("<unk>", "<pad>", "<bos>", "<eos>", "a"), fp="abc"):
    return {"config": to_dict(cfg), "vocab_itos": list(itos), "codebook_fingerprint": fp}


def test_resume_checks_name_what_differs(tmp_path):
    cfg = Config()
    itos = ["<unk>", "<pad>", "<bos>", "<eos>", "a"]
    path = tmp_path / "last.pt"
    ck.check_resumable(_ckpt(cfg), path, to_dict(cfg), itos, "abc")        # identical: fine
    other = Config()
    other.train.max_steps = 99          # allowed to change
    other.run.dir = "elsewhere"
    ck.check_resumable(_ckpt(cfg), path, to_dict(other), itos, "abc")
    other.train.lr = 1.0                # not allowed
    with pytest.raises(CheckpointError, match=r"train\.lr: checkpoint 0\.0002, now 1\.0"):
        ck.check_resumable(_ckpt(cfg), path, to_dict(other), itos, "abc")
    with pytest.raises(CheckpointError, match="vocabulary differs.*5 words, now 6"):
        ck.check_resumable(_ckpt(cfg), path, to_dict(cfg), itos + ["b"], "abc")
    with pytest.raises(CheckpointError, match="codebook differs.*abc, now xyz"):
        ck.check_resumable(_ckpt(cfg), path, to_dict(cfg), itos, "xyz")
