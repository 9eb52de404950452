"""`fsgr ablate` on the tiny real model and data: 2 variants x 3 seeds x one short epoch, resumed after a stop,
skipped when finished, tabulated with mean/std over seeds, a paired bootstrap over images and a paired t over seeds
against the first variant."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from fsgr.cli import main as cli_main
from fsgr.errors import ConfigError
from fsgr.config import load_config
from fsgr.metrics.resample import paired_t, t_quantile
from fsgr.models.captioner import FSGRCaptioner
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
    args = ["ablate", str(config), *VARIANTS, "--seeds", "3", "--out", str(out), "--no-progress",
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
    runs = {(v, s): out / v / f"seed-{s}" for v in ("full", "plain") for s in (7, 8, 9)}
    for d in runs.values():
        assert json.loads((d / "summary.json").read_text())["status"] == "finished"
        assert len(json.loads((d / "predictions" / "test_best.json").read_text())) == 6
    plain_cfg = (runs["plain", 8] / "config.yaml").read_text()
    assert "enabled: false" in plain_cfg and "seed: 8" in plain_cfg

    table = json.loads((out / "ablation.json").read_text())
    assert [v["variant"] for v in table["variants"]] == ["full", "plain"] and table["seeds"] == [7, 8, 9]
    test_scores = {k: json.loads((d / "summary.json").read_text())["test"] for k, d in runs.items()}
    for row in table["variants"]:
        cider = [test_scores[row["variant"], s]["CIDEr"] for s in (7, 8, 9)]
        assert row["scores"]["CIDEr"]["mean"] == pytest.approx(statistics.fmean(cider))
        assert row["scores"]["CIDEr"]["std"] == pytest.approx(statistics.stdev(cider))
    comps = {c["metric"]: c for c in table["comparisons"]}
    assert {c["system"] for c in table["comparisons"]} == {"plain"} and "CIDEr" in comps
    for metric, c in comps.items():
        assert c["baseline"] == "full" and c["ci_low"] <= c["delta"] <= c["ci_high"]
        # retraining variance: one delta per seed from the runs' own scores, and a paired t over those deltas
        deltas = [test_scores["plain", s][metric] - test_scores["full", s][metric] for s in (7, 8, 9)]
        assert c["seed_deltas"] == pytest.approx(deltas)
        mean, half = statistics.fmean(deltas), t_quantile(0.95, 2) * statistics.stdev(deltas) / 3 ** 0.5
        assert (c["seed_ci_low"], c["seed_ci_high"]) == pytest.approx((mean - half, mean + half))
        assert 0 <= c["seed_p_value"] <= 1
    assert table["seed_interval"]["method"] == "paired Student t over seeds"
    md = (out / "ablation.md").read_text()
    assert "| plain |" in md and "model.semantic.enabled=false" in md and "images: 95% CI" in md
    assert "seeds: 95% CI" in md and f"{comps['CIDEr']['seed_ci_low']:+.3f}" in md

    # --table-only over the seeds every variant has finished: here both
    assert cli_main([*args, "--table-only"]) == 0
    assert json.loads((out / "ablation.json").read_text())["seeds"] == [7, 8, 9]

    # a second sweep trains nothing: every run is skipped, checkpoints untouched
    stamps = {k: (d / "checkpoints" / "best.pt").stat().st_mtime_ns for k, d in runs.items()}
    assert cli_main(args) == 0
    assert capsys.readouterr().err.count("finished already, skipped") == 6
    assert stamps == {k: (d / "checkpoints" / "best.pt").stat().st_mtime_ns for k, d in runs.items()}

    # a sweep cut short: --table-only keeps the seeds every variant has finished
    summary = runs["plain", 9] / "summary.json"
    summary.rename(summary.with_suffix(".bak"))
    try:
        assert cli_main([*args, "--table-only"]) == 0
        assert json.loads((out / "ablation.json").read_text())["seeds"] == [7, 8]
    finally:
        summary.with_suffix(".bak").rename(summary)


def test_a_run_made_with_another_config_is_refused(ablation, capsys):
    config, out, args = ablation
    # same folder, another learning rate: mixing it into the table would be wrong
    assert cli_main([*args, "train.lr=0.5"]) == 2
    assert "holds a run with another config" in capsys.readouterr().err


def test_paired_t_matches_the_t_table():
    # two-sided 95% quantiles of Student's t (any statistics table) and a p-value by hand
    for df, q in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)):
        assert t_quantile(0.95, df) == pytest.approx(q, abs=1e-4)
    t = paired_t([0.1, 0.2, 0.15])           # t = 0.15 / (0.05 / sqrt 3) = 5.196, df 2: p = 1 - t / sqrt(t^2 + 2)
    assert t["p_value"] == pytest.approx(1 - 5.196152 / (5.196152 ** 2 + 2) ** 0.5, rel=1e-5)
    assert t["ci_low"] == pytest.approx(0.15 - 4.302653 * 0.05 / 3 ** 0.5, rel=1e-5)
    assert paired_t([0.3])["ci_low"] is None and paired_t([0.0, 0.0])["p_value"] == 1.0


def _built(seed: int, *overrides: str) -> dict:
    cfg = load_config("configs/demo.yaml", ["model.clip.path=null", "model.semantic.codebook=null", *overrides])
    torch.manual_seed(seed)
    return FSGRCaptioner(cfg.model, vocab_size=40).state_dict()


def test_variants_start_shared_modules_from_the_same_weights():
    """Seed i of two variants: every module they share starts equal, whatever the other builds before it."""
    full = _built(42)
    no_semantic = _built(42, "model.semantic.enabled=false")
    no_prompts = _built(42, "model.backbone.prompts.num_tokens=0")
    for other in (no_semantic, no_prompts):
        # pixel_embed embeds S (E-d) in one and F^ (W-d) in the other: another module, whatever its bias's shape
        shared = [k for k in full if k in other and full[k].shape == other[k].shape
                  and not k.startswith("encoder.pixel_embed")]
        assert any(k.startswith("decoder.") for k in shared) and any(k.startswith("encoder.layers") for k in shared)
        for k in shared:
            assert torch.equal(full[k], other[k]), k
    assert any(k.startswith("backbone.adapters") for k in no_prompts)
    # and another seed is another draw
    other_seed = _built(43)
    assert not torch.equal(full["decoder.word_emb.weight"], other_seed["decoder.word_emb.weight"])
    assert not torch.equal(full["backbone.adapters.4.fc1.weight"], other_seed["backbone.adapters.4.fc1.weight"])


def test_a_users_file_where_the_table_goes_is_refused_before_any_training(tmp_path, tiny_data, tiny_kit, capsys):
    config = tiny_kit.write(tmp_path / "tiny.yaml", tiny_kit.config(tiny_data, tmp_path / "unused"))
    for name in ("ablation.md", "ablation.json"):
        out = tmp_path / f"out_{name}"
        out.mkdir()
        (out / name).write_text("my own notes\n")
        assert cli_main(["ablate", str(config), *VARIANTS, "--seeds", "1", "--out", str(out), "--no-progress"]) == 2
        assert f"{out / name}: exists and was not written by fsgr ablate" in capsys.readouterr().err
        assert (out / name).read_text() == "my own notes\n" and sorted(p.name for p in out.iterdir()) == [name]


def test_extra_metrics_get_seed_values_and_pooled_intervals(ablation, tmp_path):
    """tabulate(extra_metrics=...): a closed concept world over the tiny data (each image's colour-shape phrase),
    scored per seed from the runs' own captions and resampled over (seed, image) units like CIDEr."""
    from fsgr.data.readers import read_records
    from fsgr.metrics.concepts import ConceptWorld, concept_scores
    from fsgr.training.ablate import tabulate

    config, out, args = ablation
    assert cli_main(args) == 0          # the sweep finished here too (under xdist this test may run on its own)
    cfg = load_config(config)
    test = [r for r in read_records(cfg.data) if r.split == "test"]
    names = [f"{c} {s}" for c in ("red", "green", "blue", "yellow") for s in ("square", "circle")]
    truth = {int(r.image_id): {n for n in names if n in r.captions[0]} for r in test}
    world = ConceptWorld(names, truth, groups={"reds": ["red square", "red circle"]})
    variants = [parse_variant(v) for v in VARIANTS[1::2]]
    table = tabulate(config, variants, 3, out, samples=200, extra_metrics=[world])
    ids = sorted(truth)
    for row in table["variants"]:
        for seed in (7, 8, 9):
            preds = {r["image_id"]: r["caption"] for r in json.loads(
                (out / row["variant"] / f"seed-{seed}" / "predictions" / "test_best.json").read_text())}
            own = concept_scores(world, ids, [preds[i] for i in ids])[0]
            assert row["per_seed"][seed]["concept-recall"] == pytest.approx(own["concept-recall"])
        assert set(world.keys) <= set(row["pooled"]) and set(world.keys) <= set(row["scores"])
    comps = {c["metric"]: c for c in table["comparisons"]}
    for key in ("concept-recall", "concept-CHAIR-i", "binding-swaps"):
        c = comps[key]
        assert c["ci_low"] <= c["delta"] + 1e-12 and c["delta"] <= c["ci_high"] + 1e-12 and len(c["seed_deltas"]) == 3
        pooled = [r["pooled"][key] for r in table["variants"]]
        assert c["delta"] == pytest.approx(pooled[1] - pooled[0])
    assert "concept-recall" in (out / "ablation.md").read_text()


def test_a_synthetic_world_sweep_reports_its_concept_metrics(tmp_path, tiny_kit):
    cfg = tiny_kit.synthetic_config(tmp_path / "world", tmp_path / "unused",
                                    {"world": "longtail", "num_train": 30, "num_val": 3, "num_test": 12, "seed": 1},
                                    train={"max_epochs": 1, "xe_least": 1, "xe_most": 1})
    config = tiny_kit.write(tmp_path / "world.yaml", cfg)
    assert cli_main(["ablate", str(config), *VARIANTS, "--seeds", "2", "--out", str(tmp_path / "out"),
                     "--no-progress", "--bootstrap", "100"]) == 0
    table = json.loads((tmp_path / "out" / "ablation.json").read_text())
    from fsgr.demo.mechanism import concept_world

    keys = set(concept_world(tmp_path / "world").keys)     # the groups some test image holds: 4 tail images hold
    assert {"recall:head", "recall:tail_k1", "recall:tail_k3", "recall:novel", "concept-CHAIR-i"} <= keys  # k=1, 3
    assert keys <= set(table["variants"][0]["scores"])
    assert keys <= {c["metric"] for c in table["comparisons"]}
