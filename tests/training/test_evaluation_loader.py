"""Evaluation decodes its JPEGs in `data.workers` loader processes: the same captions and scores as in-process."""

from __future__ import annotations

from dataclasses import replace

import torch

from fsgr.config import load_config
from fsgr.core.build import build_model
from fsgr.training import setup
from fsgr.training.evaluation import evaluate_split


def test_evaluation_with_worker_processes_matches_in_process(tmp_path, tiny_run_config):
    cfg = load_config(tiny_run_config(tmp_path))
    data = setup.build_data(cfg)
    torch.manual_seed(0)
    model, _, _ = build_model(cfg, data.vocab)
    results = {}
    for workers in (0, 2):
        c = replace(cfg, data=replace(cfg.data, workers=workers))
        results[workers] = evaluate_split(model, data.split("val"), data.vocab, c, torch.device("cpu"),
                                          with_loss=True, predictions_path=tmp_path / f"p{workers}.json",
                                          encoded=data.encoded("val"))
    assert (tmp_path / "p0.json").read_text() == (tmp_path / "p2.json").read_text()
    assert results[0]["scores"] == results[2]["scores"] and results[0]["loss"] == results[2]["loss"]
    assert results[0]["num_images"] == 6
    # the run's encoded captions give the val loss that tokenising the split here gives
    fresh = evaluate_split(model, data.split("val"), data.vocab, cfg, torch.device("cpu"), with_loss=True)
    assert fresh["loss"] == results[0]["loss"]
