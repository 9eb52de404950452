"""Tiny real data and a tiny real model for the end-to-end training tests.

The data: 32x32 JPEGs of one coloured shape on a plain background, each with 5 captions that describe it, in the
Karpathy json format. The model: CLIP width 64, 2 layers, patch 8 (a 4x4 grid), 1-layer encoder/decoder of width 64.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 210, 30)}
SHAPES = ("square", "circle")
REPO = Path(__file__).resolve().parents[2]
# per-image noise (dropout -- model.dropout covers the prompts' --, Gumbel) cannot match between 1 and N processes
NO_NOISE = ["model.dropout=0.0", "model.semantic.gumbel=false", "train.contrastive_weight=0"]
TEMPLATES = ("a {c} {s}", "a {c} {s} on a plain background", "the {s} is {c}", "one {c} {s}", "a small {c} {s}")


def make_dataset(root: Path, n_train: int = 24, n_val: int = 6, n_test: int = 6, seed: int = 0) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    images = []
    sentid = 0
    for i in range(n_train + n_val + n_test):
        split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
        colour = rng.choice(list(COLOURS))
        shape = rng.choice(SHAPES)
        img = Image.new("RGB", (32, 32), (245, 245, 245))
        d = ImageDraw.Draw(img)
        x, y = rng.randint(2, 14), rng.randint(2, 14)
        box = [x, y, x + 14, y + 14]
        (d.rectangle if shape == "square" else d.ellipse)(box, fill=COLOURS[colour])
        name = f"img_{i:04d}.jpg"
        img.save(root / name, quality=92)
        sentences = []
        for t in TEMPLATES:
            sentences.append({"raw": t.format(c=colour, s=shape), "sentid": sentid})
            sentid += 1
        images.append({"filename": name, "imgid": 1000 + i, "split": split, "sentences": sentences})
    path = root / "dataset_tiny.json"
    path.write_text(json.dumps({"dataset": "tiny", "images": images}))
    return path


def tiny_config(data_json: Path, run_dir: Path, **sections) -> dict:
    cfg = {
        "run": {"dir": str(run_dir)},
        "data": {"format": "karpathy", "annotations": str(data_json), "images": str(data_json.parent),
                 "min_freq": 1, "max_len": 12, "batching": "image", "image_size": 32, "workers": 0,
                 "pin_memory": False, "persistent_workers": False},
        "model": {"dropout": 0.1,
                  "clip": {"embed_dim": 32, "image_resolution": 32, "vision_layers": 2, "vision_width": 64,
                           "vision_patch_size": 8, "vision_heads": 4, "context_length": 16, "vocab_size": 49408,
                           "transformer_width": 32, "transformer_heads": 2, "transformer_layers": 1},
                  "backbone": {"prompts": {"num_tokens": 2}, "adapters": {"first_block": 0, "last_block": 1}},
                  "semantic": {"codebook_size": 12, "topk": 4},
                  "encoder": {"layers": 1, "d_model": 64, "heads": 4, "d_ff": 128},
                  "decoder": {"layers": 1, "d_model": 64, "heads": 4, "d_ff": 128, "max_len": 20}},
        "train": {"seed": 7, "batch_size": 10, "max_epochs": 2, "log_every": 1, "lr": 1e-3,
                  "lr_warmup_epochs": 0, "xe_least": 1, "xe_most": 2, "patience": 1},
        "scst": {"enabled": False, "batch_images": 4, "max_epochs": 1, "max_len": 8, "num_samples": 3},
        "eval": {"beam_size": 2, "max_len": 8, "batch_images": 8, "metrics": "bleu,cider", "test_at_end": True},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def synthetic_config(root: Path, run_dir: Path, synthetic: dict, **sections) -> dict:
    """The tiny model on a 32 px synthetic world generated under `root` (`synthetic`: its data.synthetic keys), with
    the world's 30-concept codebook size."""
    cfg = tiny_config(root / "unused.json", run_dir,
                      data={"format": "synthetic", "annotations": "", "images": "",
                            "synthetic": {"root": str(root), "image_size": 32, **synthetic}}, **sections)
    cfg["model"]["semantic"].update(codebook_size=30, topk=4)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def tiny_run_config(tiny_data):
    """A factory: (directory, name="run", **sections) -> the YAML config of a tiny run in directory/name, with each
    section's keys updated from `sections` (e.g. train={"max_epochs": 1}, model={"pma": {...}})."""
    def make(directory: Path, name: str = "run", **sections) -> Path:
        return write_config(directory / f"{name}.yaml", tiny_config(tiny_data, directory / name, **sections))

    return make


@pytest.fixture(scope="session")
def tiny_kit():
    """The builders themselves, for tests that lay out their own data or config (relative paths, other sizes):
    kit.make_dataset(root, n_train=..), kit.config(data_json, run_dir, **sections) -> dict, kit.write(path, dict),
    kit.synthetic_config(world_root, run_dir, {synthetic keys}, **sections) -> dict."""
    return SimpleNamespace(make_dataset=make_dataset, config=tiny_config, write=write_config,
                           synthetic_config=synthetic_config)


def subprocess_env() -> dict:
    """This tree's sources first, one thread, no torchrun variables inherited."""
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_command(config: Path, overrides, processes: int = 1, resume: bool = False, torchrun=()) -> list[str]:
    """`fsgr train` in one process, or under torchrun with `processes` (gloo on the CPU) and `torchrun` options."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
                     "127.0.0.1", "--master_port", str(free_port()), *torchrun]
    return [*launcher, "-m", "fsgr", "train", str(config), *overrides, "--no-progress",
            *(["--resume"] if resume else [])]


def run_train(config: Path, overrides, processes: int = 1, resume: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(train_command(config, overrides, processes, resume), env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def launch():
    """Runs fsgr in other processes: .env(), .free_port(), .command(config, overrides, processes=1, resume=False,
    torchrun=()),
    .train(...) (the same, run to a zero exit), .no_noise (the overrides under which 1 and N processes match)."""
    return SimpleNamespace(env=subprocess_env, free_port=free_port, command=train_command, train=run_train,
                           no_noise=NO_NOISE)
