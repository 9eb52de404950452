"""`fsgr ablate` on the tiny real model and data: 2 variants x 2 seeds x one short epoch, resumed after a stop,
skipped when finished, tabulated with mean/std over seeds and a paired bootstrap against the first variant."""

from __future__ import annotations

import json
import statistics

import pytest

from fsgr.cli import main as cli_main
from fsgr.errors import ConfigError
from fsgr.training.ablate import Variant, parse_variant

VARIANTS = ["--variant", "full",
            "--variant", "plain=model.semantic.enabled=false,train.contrastive_weight=0"]


def test_parse_variant():
    assert parse_variant("full") == Variant("full", ())
    assert parse_variant("a=train.lr=0.1, model.semantic.topk=3") == \
        Variant("a", ("train.lr=0.1", "model.semantic.topk=3"))
    # a comma inside a value stays in it: only ',key=' starts the next override
    assert parse_variant("m=train.lr_milestones=[2,3],train.seed=1") == \
        Variant("m", ("train.lr_milestones=[2,3]", "train.seed=1"))
    for bad in ("../x=train.lr=1", "a=train.lr", "=train.lr=1"):
        with pytest.raises(ConfigError):
            parse_variant(bad)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, tiny_data, tiny_kit):
    tmp = tmp_path_factory.mktemp("ablate")
    config = tiny_kit.write(tmp / "tiny.yaml", tiny_kit.config(
        tiny_data, tmp / "unused", train={"max_epochs": 1, "xe_least": 1, "xe_most": 1, "contrastive_weight": 0.25}))
    out = tmp / "out"
    args = ["ablate", str(config), *VARIANTS, "--seeds", "2", "--out", str(out), "--no-progress",
            "--bootstrap", "200"]
    # the first sweep stops its first run at a step cap: the runner must say so and write no table
    assert cli_main([*args, "train.max_steps=3"]) == 2
    first = out / "full" / "seed-7"
    assert (first / "checkpoints" / "last.pt").is_file() and not (out / "ablation.json").exists()
    assert cli_main([*args, "--table-only"]) == 2          # no seed is finished for every variant yet
    return config, out, args


def test_runs_resume_finish_and_tabulate(ablation, capsys):
    config, out, args = ablation
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert "full seed 7: resuming" in err and "plain seed 8: training" in err
    runs = {(v, s): out / v / f"seed-{s}" for v in ("full", "plain") for s in (7, 8)}
    for d in runs.values():
        assert json.loads((d / "summary.json").read_text())["status"] == "finished"
        assert len(json.loads((d / "predictions" / "test_best.json").read_text())) == 6
    plain_cfg = (runs["plain", 8] / "config.yaml").read_text()
    assert "enabled: false" in plain_cfg and "seed: 8" in plain_cfg

    table = json.loads((out / "ablation.json").read_text())
    assert [v["variant"] for v in table["variants"]] == ["full", "plain"] and table["seeds"] == [7, 8]
    for row in table["variants"]:
        cider = [json.loads((runs[row["variant"], s] / "summary.json").read_text())["test"]["CIDEr"] for s in (7, 8)]
        assert row["scores"]["CIDEr"]["mean"] == pytest.approx(statistics.fmean(cider))
        assert row["scores"]["CIDEr"]["std"] == pytest.approx(statistics.stdev(cider))
    comps = {c["metric"]: c for c in table["comparisons"]}
    assert {c["system"] for c in table["comparisons"]} == {"plain"} and "CIDEr" in comps
    for c in comps.values():
        assert c["baseline"] == "full" and c["ci_low"] <= c["delta"] <= c["ci_high"]
    md = (out / "ablation.md").read_text()
    assert "| plain |" in md and "model.semantic.enabled=false" in md and "95% CI" in md

    # --table-only over the seeds every variant has finished: here both
    assert cli_main([*args, "--table-only"]) == 0
    assert json.loads((out / "ablation.json").read_text())["seeds"] == [7, 8]

    # a second sweep trains nothing: every run is skipped, checkpoints untouched
    stamps = {k: (d / "checkpoints" / "best.pt").stat().st_mtime_ns for k, d in runs.items()}
    assert cli_main(args) == 0
    assert capsys.readouterr().err.count("finished already, skipped") == 4
    assert stamps == {k: (d / "checkpoints" / "best.pt").stat().st_mtime_ns for k, d in runs.items()}

    # a sweep cut short: --table-only keeps the seeds every variant has finished
    summary = runs["plain", 8] / "summary.json"
    summary.rename(summary.with_suffix(".bak"))
    try:
        assert cli_main([*args, "--table-only"]) == 0
        assert json.loads((out / "ablation.json").read_text())["seeds"] == [7]
    finally:
        summary.with_suffix(".bak").rename(summary)


def test_a_run_made_with_another_config_is_refused(ablation, capsys):
    config, out, args = ablation
    # same folder, another learning rate: mixing it into the table would be wrong
    assert cli_main([*args, "train.lr=0.5"]) == 2
    assert "holds a run with another config" in capsys.readouterr().err
