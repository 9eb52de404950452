"""The checkpoint file: atomic write, refusal of foreign/torn files, RNG round trip, resume checks."""

import errno
import os
import random
import zipfile

import numpy as np
import pytest
import torch

from fsgr.config import Config, to_dict
from fsgr.core import checkpoint as ck
from fsgr.errors import CheckpointError, FsgrError


def _payload(**extra):
    return {"format_version": ck.FORMAT_VERSION, "config": to_dict(Config()), "vocab_itos": ["<unk>", "a"],
            "model": {"w": torch.arange(4096, dtype=torch.float32)}, "rng": [ck.rng_state()], **extra}


def test_atomic_save_leaves_no_temporary_and_round_trips(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    ck.atomic_save(_payload(x=torch.arange(3)), path)
    ck.atomic_save(_payload(x=torch.arange(4)), path)   # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
    assert ck.load_checkpoint(path)["x"].tolist() == [0, 1, 2, 3]


def test_a_pickled_payload_never_runs(tmp_path, write_hostile_checkpoint):
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    write_hostile_checkpoint(evil, target)
    with pytest.raises(CheckpointError) as info:
        ck.load_checkpoint(evil)
    assert not target.exists()
    message = str(info.value)
    assert "\n" not in message and "evil.pt" in message and "open" in message and "refused" in message


def test_a_file_changed_in_the_middle_fails_its_checksum(tmp_path):
    path = tmp_path / "last.pt"
    ck.atomic_save(_payload(), path)
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.file_size == 4096 * 4)   # the weight tensor's bytes
    with open(path, "r+b") as f:          # the data begins after the local header (30 bytes + name + extra)
        f.seek(info.header_offset + 30 + len(info.filename) + 64 + 2000)
        f.write(b"\x7f" * 64)
    with pytest.raises(CheckpointError, match="last.pt: checksum mismatch"):
        ck.load_checkpoint(path)


def test_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "ck" / "last.pt"
    ck.atomic_save(_payload(x=torch.arange(3)), path)
    real_save = torch.save

    def save_until_full(obj, f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(FsgrError, match=r"last.pt: no space left on device"):
        ck.atomic_save(_payload(x=torch.arange(9)), path)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
    assert ck.load_checkpoint(path)["x"].tolist() == [0, 1, 2]          # the previous file is intact


def test_a_checkpoint_without_a_config_is_refused(tmp_path):
    path = tmp_path / "noconfig.pt"
    payload = _payload()
    del payload["config"]
    ck.atomic_save(payload, path)
    with pytest.raises(CheckpointError, match="noconfig.pt: not a complete fsgr checkpoint: no config"):
        ck.load_checkpoint(path)


def test_format_1_files_still_load(tmp_path):
    # written as fsgr wrote checkpoints before format 2: plain torch.save, numpy RNG state as an array, no checksum
    path = tmp_path / "v1.pt"
    payload = _payload(format_version=1)
    payload["rng"] = [{**ck.rng_state(), "numpy": np.random.get_state()}]
    torch.save(payload, path)
    loaded = ck.load_checkpoint(path)
    assert loaded["format_version"] == 1 and loaded["model"]["w"].equal(payload["model"]["w"])
    np.random.seed(5)
    ck.set_rng_state(loaded["rng"][0])
    assert np.random.rand() == (np.random.set_state(payload["rng"][0]["numpy"]), np.random.rand())[1]


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


def test_a_run_saved_before_reward_documents_existed_resumes_with_the_images_count(tmp_path):
    """Older fsgr counted the reward's document frequencies over images and saved no `scst.reward_documents`: such a
    checkpoint resumes with `images` (what it ran) and is refused with the new default, naming both values."""
    itos = ["<unk>", "<pad>", "<bos>", "<eos>", "a"]
    old = _ckpt(Config())
    del old["config"]["scst"]["reward_documents"]
    now = Config()
    with pytest.raises(CheckpointError, match=r"scst\.reward_documents: checkpoint 'images', now 'captions'"):
        ck.check_resumable(old, tmp_path / "last.pt", to_dict(now), itos, "abc")
    now.scst.reward_documents = "images"
    ck.check_resumable(old, tmp_path / "last.pt", to_dict(now), itos, "abc")
