"""The ablation's `oracle` (model.semantic.oracle + data.patch_labels=synthetic): S built from the synthetic world's
own concept maps in training (XE and SCST), validation and the test decode; refused where no labels exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fsgr.config import load_config
from fsgr.data.synthetic import PatchLabels
from fsgr.errors import ConfigError
from fsgr.inference import Captioner
from fsgr.training import train
from fsgr.training.setup import load_patch_labels

ORACLE = ["model.semantic.oracle=true", "data.patch_labels=synthetic"]


def _world_config(tmp_path: Path, tiny_kit) -> Path:
    cfg = tiny_kit.synthetic_config(tmp_path / "world", tmp_path / "run",
                                    {"num_train": 20, "num_val": 4, "num_test": 4, "seed": 3},
                                    scst={"enabled": True, "batch_images": 4, "max_epochs": 1, "max_len": 6,
                                          "num_samples": 2})
    cfg["train"].update(max_epochs=1, xe_least=1, xe_most=1)
    return tiny_kit.write(tmp_path / "world.yaml", cfg)


def test_oracle_trains_validates_and_tests_on_the_worlds_own_labels(tmp_path, tiny_kit):
    cfg = load_config(_world_config(tmp_path, tiny_kit), ORACLE)
    summary = train(cfg, progress=False)       # every encode (XE, SCST, val loss, decodes) must receive the labels
    assert summary["status"] == "finished" and summary["test"]["CIDEr"] >= 0
    assert len(json.loads((tmp_path / "run" / "predictions" / "test_best.json").read_text())) == 4

    labels = load_patch_labels(cfg)
    assert isinstance(labels, PatchLabels) and labels.grid == 4 and labels.textures
    truth = torch.stack([labels(i) for i in range(20)])                        # training images 0..19
    assert truth.shape == (20, 16) and int(truth.max()) < 30
    assert bool((truth >= 25).any())           # background patches carry the image's texture concept (rows 25-29)

    cap = Captioner.from_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", device="cpu")
    images = torch.randn(2, 3, 32, 32)
    enc = cap.model.encode(images, patch_concepts=truth[:2])
    assert torch.equal(enc.concept_ids, truth[:2])
    other = cap.model.encode(images, patch_concepts=truth[2:4])
    assert not torch.allclose(enc.memory, other.memory)       # the grid, hence the memory, follows the labels
    with pytest.raises(ConfigError, match="oracle"):          # a user's photo has no true labels
        cap.model.encode(images)


def test_oracle_without_patch_labels_or_off_the_synthetic_world_is_refused(tmp_path, tiny_kit, tiny_run_config):
    with pytest.raises(ConfigError, match="data.patch_labels"):
        train(load_config(_world_config(tmp_path, tiny_kit), ["model.semantic.oracle=true"]), progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="data.format=synthetic"):
        train(load_config(tiny_run_config(tmp_path), ORACLE), progress=False)
