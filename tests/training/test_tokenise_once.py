"""A run tokenises its captions once (train, val, test: one call each), never per epoch; a second run on the same
annotations loads them from the disk cache and tokenises nothing."""

from __future__ import annotations

import numpy as np

from fsgr.config import load_config
from fsgr.data import text
from fsgr.training import setup, train


def test_captions_are_tokenised_once_per_run_and_cached_across_runs(tmp_path, tiny_run_config, monkeypatch):
    calls = []
    real = text.tokenize_captions
    monkeypatch.setattr(text, "tokenize_captions", lambda raws: calls.append(len(raws)) or real(raws))
    cache = str(tmp_path / "cache")
    path = tiny_run_config(tmp_path, data={"cache_dir": cache},
                           train={"max_epochs": 2, "xe_least": 2, "xe_most": 2, "contrastive_weight": 0.0},
                           eval={"val_loss": True, "test_at_end": False})
    summary = train(load_config(path), progress=False)
    assert summary["epoch"] == 2 and summary["phase"] == "done"          # two epochs, each validated with loss
    assert calls == [24 * 5, 6 * 5, 6 * 5]                              # train, val, test: once each
    calls.clear()
    cfg = load_config(path)
    again = setup.build_data(cfg)
    assert calls == [] and all(w.from_cache for w in again.words.values())
    first = setup.build_data(load_config(path, ["data.cache_dir=null"]))  # no cache: tokenised afresh, same result
    assert calls == [24 * 5, 6 * 5, 6 * 5]
    assert first.vocab == again.vocab
    assert np.array_equal(first.encoded("train").flat_ids, again.encoded("train").flat_ids)
