"""A tiny trained checkpoint (seconds) for the serving, bulk-captioning and export tests: the training tests' tiny
model and data (tests/training/conftest.py), one XE epoch, no SCST, no evaluation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_training_conftest",
                                               Path(__file__).resolve().parents[1] / "training" / "conftest.py")
training_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(training_conftest)


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> list[Path]:
    """36 small JPEGs of one coloured shape each (the training tests' data)."""
    data = training_conftest.make_dataset(tmp_path_factory.mktemp("serving_data"))
    return sorted(data.parent.glob("img_*.jpg"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_images) -> Path:
    from fsgr.config import load_config
    from fsgr.training import train

    tmp = tmp_path_factory.mktemp("serving_ckpt")
    data_json = tiny_images[0].parent / "dataset_tiny.json"
    cfg = training_conftest.tiny_config(
        data_json, tmp / "run", train={"max_epochs": 1, "xe_most": 1},
        eval={"beam_size": 3, "max_len": 10, "val_loss": False, "test_at_end": False, "metrics": "cider"})
    train(load_config(training_conftest.write_config(tmp / "tiny.yaml", cfg)), progress=False)
    return tmp / "run" / "checkpoints" / "last.pt"
