"""Ablations: train every variant of a config for N seeds, decode the test split, and tabulate with significance.

    OUT/NAME/seed-S/        one ordinary run directory per (variant, seed) (`fsgr train` layout; test_best.json)
    OUT/ablation.json       per variant: per-seed scores, mean and std over seeds; each variant vs the first
    OUT/ablation.md         the same as a Markdown table

A variant is a list of `key=value` overrides on top of the config (and of the overrides common to all variants).
Seed i of every variant trains with train.seed = (the config's train.seed) + i, so seed i of two variants shares the
data order and differs only in the variant. A run that finished (summary.json status "finished" with test scores and
predictions/test_best.json) is skipped; one that stopped half way is resumed from its last.pt; a run directory made
with another config is refused rather than mixed into the table.

Significance, two kinds side by side, each variant against the first:
- over test images: the evaluation suite's paired bootstrap (`fsgr.metrics.compare.compare_systems`) over images
  pooled across seeds; the unit is (seed i, image), variant and baseline paired on it. Each seed's model is held
  fixed, so this interval is about which test images were drawn, not about retraining.
- over retraining: `seed_deltas` (seed i's test score of the variant minus the first variant's) and a paired Student-t
  interval and p-value over them (`seed_ci_low`, `seed_ci_high`, `seed_p_value`; `fsgr.metrics.resample.paired_t`).
  With 3 seeds it has 2 degrees of freedom: wide, and honest about it.
Seed i of two variants also starts the modules they share from the same weights (`FSGRCaptioner` seeds each module's
initialisation by its name), so a seed delta is the variant's effect, not another draw of the shared modules.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from fsgr.config import load_config, to_dict
from fsgr.core.checkpoint import SAME_RUN_CHANGES, config_differences
from fsgr.data.readers import read_records
from fsgr.errors import ConfigError, FsgrError
from fsgr.files import atomic_write_text
from fsgr.logs import get_logger
from fsgr.metrics.compare import compare_systems
from fsgr.metrics.resample import paired_t
from fsgr.metrics.score import parse_metrics
from fsgr.training.engine import Trainer

# a comma starts the next override only when a `key=` follows it, so `train.lr_milestones=[2,3]` stays one override
_OVERRIDE_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w.]*\s*=)")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...] = ()


def parse_variant(text: str) -> Variant:
    """'NAME=key=value[,key=value...]' or 'NAME' (the config as it is) -> Variant."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not _NAME.match(name):
        raise ConfigError(f"--variant {text!r}: the name must be letters, digits, '_', '-', '.', '+' (it names the "
                          f"run folder), e.g. no_contrastive=train.contrastive_weight=0")
    overrides = tuple(o.strip() for o in _OVERRIDE_SPLIT.split(rest) if o.strip()) if sep else ()
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"--variant {text!r}: {o!r} is not key=value")
    return Variant(name, overrides)


def train_seeds(config: str | Path, common: Sequence[str], seeds: int) -> list[int]:
    """train.seed of seed 0..N-1: the config's train.seed (after the common overrides) + i."""
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: need at least one seed")
    base = load_config(config, list(common)).train.seed
    return [base + i for i in range(seeds)]


def run_dir(out: Path, variant: Variant, seed: int) -> Path:
    return Path(out) / variant.name / f"seed-{seed}"


def run_config(config: str | Path, variant: Variant, seed: int, out: Path, common: Sequence[str] = ()):
    """The resolved config of one (variant, seed) run: config + common overrides + the variant's + seed and place."""
    return load_config(config, [*common, *variant.overrides, f"train.seed={seed}",
                                f"run.dir={run_dir(out, variant, seed)}", "eval.test_at_end=true"])


def _finished(directory: Path) -> Optional[dict]:
    """The summary of a finished run with test predictions, else None."""
    summary = directory / "summary.json"
    if not summary.is_file() or not (directory / "predictions" / "test_best.json").is_file():
        return None
    s = json.loads(summary.read_text())
    return s if s.get("status") == "finished" and s.get("test") else None


def _train_to_the_end(cfg, directory: Path, resume: bool, device: Optional[str], progress: bool) -> dict:
    """Train (or resume) one run through its test decode; its summary.json gains `ablate_seconds`."""
    t0 = time.time()
    trainer = Trainer(cfg, resume=resume, device=device, progress=progress)
    try:
        trainer.setup()
        status = trainer.train()["status"]
        if status != "finished":
            raise FsgrError(f"{directory}: the run stopped with status {status!r} before its test decode; rerun "
                            f"`fsgr ablate` to resume it (an ablation run must finish: shorten it with epochs, not "
                            f"train.max_steps)")
        if trainer.test_result is None:
            raise FsgrError(f"{directory}: finished but wrote no test predictions (predictions/test_best.json); "
                            f"does the config's data have a test split?")
        return trainer.save_summary(ablate_seconds=time.time() - t0)
    finally:
        trainer.cleanup()


def _check_same_config(directory: Path, cfg) -> None:
    """Refuse a run directory whose saved config is not this run's: a stale run would corrupt the table."""

    saved = directory / "config.yaml"
    if not saved.is_file():
        return
    diffs = config_differences(yaml.safe_load(saved.read_text()), to_dict(cfg), allowed=SAME_RUN_CHANGES)
    if diffs:
        more = f" (and {len(diffs) - 2} more)" if len(diffs) > 2 else ""
        raise ConfigError(f"{directory}: holds a run with another config ({'; '.join(diffs[:2])}{more}); remove it "
                          f"or choose another --out")


def run_all(config: str | Path, variants: Sequence[Variant], seeds: int, out: str | Path,
            common: Sequence[str] = (), device: Optional[str] = None, progress: bool = True,
            say=get_logger(__name__).info) -> dict[tuple[str, int], dict]:
    """Train + test every (variant, seed) not finished yet. -> {(variant name, seed): run summary}."""
    if not variants:
        raise ConfigError("no variants: give at least one --variant NAME[=key=value,...]")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"variant names must differ: {names}")
    out = Path(out)
    summaries: dict[tuple[str, int], dict] = {}
    # seed-major: a sweep cut short has the same seeds for every variant
    todo = [(seed, v) for seed in train_seeds(config, common, seeds) for v in variants]
    for k, (seed, variant) in enumerate(todo, 1):
        cfg = run_config(config, variant, seed, out, common)
        directory = run_dir(out, variant, seed)
        _check_same_config(directory, cfg)
        done = _finished(directory)
        if done is None:
            resume = (directory / "checkpoints" / "last.pt").is_file()
            say(f"[ablate {k}/{len(todo)}] {variant.name} seed {seed}: {'resuming' if resume else 'training'} in "
                f"{directory}")
            done = _train_to_the_end(cfg, directory, resume, device, progress)
        else:
            say(f"[ablate {k}/{len(todo)}] {variant.name} seed {seed}: finished already, skipped")
        summaries[(variant.name, seed)] = done
    return summaries


def _mean_std(values: list[float]) -> tuple[float, Optional[float]]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _unit_stride(refs: dict[int, list[str]]) -> int:
    """Pooled unit key = seed index * stride + image id."""
    return max(refs) + 1


def _pooled(preds_by_seed: dict[int, dict[int, str]], refs: dict[int, list[str]], seeds: list[int]):
    """(refs, preds) keyed by one int per (seed index, image): image ids repeat across seeds, units must not.
    Every image's references repeat once per seed, which leaves CIDEr's document frequencies (a ratio) unchanged."""
    stride = _unit_stride(refs)
    pooled_refs, pooled_preds = {}, {}
    for i, seed in enumerate(seeds):
        preds = preds_by_seed[seed]
        for image_id, caps in refs.items():
            pooled_refs[i * stride + image_id] = caps
            pooled_preds[i * stride + image_id] = preds[image_id]
    return pooled_refs, pooled_preds


class _OnPooledUnits:
    """An extra metric scored on pooled (seed, image) units: each unit's image id back from its pooled key."""

    def __init__(self, metric, stride: int):
        self.metric, self.stride, self.name, self.keys = metric, stride, metric.name, metric.keys

    def __call__(self, unit_ids, captions):
        return self.metric([u % self.stride for u in unit_ids], captions)


def tabulate(config: str | Path, variants: Sequence[Variant], seeds: int, out: str | Path,
             common: Sequence[str] = (), samples: int = 1000, bootstrap_seed: int = 0,
             finished_only: bool = False, extra_metrics: Sequence = ()) -> dict[str, Any]:
    """Read every run's test predictions and write OUT/ablation.json and OUT/ablation.md. -> the JSON object.
    finished_only: tabulate the seeds that every variant has finished (a sweep cut short or still running); else
    every seed must be. extra_metrics: callables (image_ids, captions) -> (scores, {name: PerImage}) keyed by test
    image id (`fsgr.metrics.compare.score_system`'s; e.g. a synthetic world's `ConceptWorld`), scored per seed and
    in the pooled bootstrap like the config's metrics."""

    out = Path(out)
    first = load_config(config, list(common))      # data and metrics every variant shares (pairing needs that)
    metrics = parse_metrics(first.eval.metrics)
    test = [r for r in read_records(first.data) if r.split == "test"]
    if first.eval.max_images is not None:
        test = test[: first.eval.max_images]
    refs = {int(r.image_id): list(r.captions) for r in test}
    seed_list = train_seeds(config, common, seeds)
    if finished_only:
        seed_list = [s for s in seed_list if all(_finished(run_dir(out, v, s)) for v in variants)]
        if not seed_list:
            raise FsgrError(f"{out}: no seed has a finished run of every variant yet")

    rows, preds = [], {}
    for v in variants:
        preds[v.name], per_seed, seconds = {}, {}, []
        for seed in seed_list:
            directory = run_dir(out, v, seed)
            summary = _finished(directory)
            if summary is None:
                raise FsgrError(f"{directory}: no finished run to tabulate; run `fsgr ablate` to train it")
            rows_json = json.loads((directory / "predictions" / "test_best.json").read_text())
            p = {int(r["image_id"]): r["caption"] for r in rows_json}
            missing = set(refs) - set(p)
            if missing:
                raise FsgrError(f"{directory}/predictions/test_best.json: no caption for {len(missing)} test images "
                                f"(e.g. {sorted(missing)[:3]}); was the run made on other data?")
            preds[v.name][seed] = p
            per_seed[seed] = {m: float(summary["test"][m]) for m in summary["test"]}
            for metric in extra_metrics:
                per_seed[seed].update(metric(list(refs), [p[i] for i in refs])[0])
            seconds.append(summary.get("ablate_seconds"))
        stats = {}
        for m in per_seed[seed_list[0]]:
            mean, std = _mean_std([per_seed[s][m] for s in seed_list])
            stats[m] = {"mean": mean, "std": std}
        rows.append({"variant": v.name, "overrides": list(v.overrides), "seeds": seed_list, "per_seed": per_seed,
                     "scores": stats, "seconds": seconds})

    pooled_refs = _pooled(preds[variants[0].name], refs, seed_list)[0]
    stride = _unit_stride(refs)
    compared = compare_systems(pooled_refs, {v.name: _pooled(preds[v.name], refs, seed_list)[1] for v in variants},
                               metrics=metrics, samples=samples, seed=bootstrap_seed, diagnostics=False, top=0,
                               extra_metrics=[_OnPooledUnits(m, stride) for m in extra_metrics])
    for row in rows:
        row["pooled"] = compared["systems"][row["variant"]]
    per_seed = {row["variant"]: row["per_seed"] for row in rows}
    for c in compared["comparisons"]:
        c.update(_seed_statistics(per_seed[c["baseline"]], per_seed[c["system"]], c["metric"], seed_list))
    result = {"config": str(config), "common_overrides": list(common), "seeds": seed_list,
              "test_images": len(refs), "bootstrap": {"samples": samples, "seed": bootstrap_seed,
                                                      "unit": "(seed, test image), paired across variants"},
              "seed_interval": {"method": "paired Student t over seeds", "level": 0.95, "unit": "training seed"},
              "variants": rows, "comparisons": compared["comparisons"],
              "signature": compared["signature"]}
    atomic_write_text(out / "ablation.json", json.dumps(result, indent=2))
    atomic_write_text(out / "ablation.md", markdown_table(result))
    return result


def _seed_statistics(baseline: dict, system: dict, metric: str, seeds: list[int]) -> dict:
    """The comparison's seed-level fields: one delta per seed (system - baseline, same seed) and the paired t."""
    missing = [s for s in seeds if metric not in baseline[s] or metric not in system[s]]
    if missing:
        raise FsgrError(f"ablation: seed {missing[0]} has no test {metric} in its summary.json; the runs were scored "
                        f"with other metrics than the config's eval.metrics")
    deltas = [system[s][metric] - baseline[s][metric] for s in seeds]
    t = paired_t(deltas)
    return {"seed_deltas": deltas, "seed_ci_low": t["ci_low"], "seed_ci_high": t["ci_high"],
            "seed_p_value": t["p_value"]}


def _fmt(x: Optional[float], digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown_table(result: dict[str, Any]) -> str:
    """Mean ± std over seeds per metric; then each variant's delta vs the first with both intervals: the pooled
    paired bootstrap over (seed, image) and the paired t over seeds."""
    metrics = list(result["variants"][0]["scores"])
    head = "| variant | overrides | " + " | ".join(metrics) + " |"
    lines = [f"{len(result['seeds'])} seeds ({', '.join(map(str, result['seeds']))}), {result['test_images']} test "
             f"images; mean ± std over seeds", "", head, "|" + "---|" * (len(metrics) + 2)]
    for row in result["variants"]:
        cells = [f"{_fmt(row['scores'][m]['mean'])} ± {_fmt(row['scores'][m]['std'])}" for m in metrics]
        lines.append(f"| {row['variant']} | {' '.join(row['overrides']) or '(config)'} | " + " | ".join(cells) + " |")
    if result["comparisons"]:
        b = result["bootstrap"]
        lines += ["", f"vs {result['variants'][0]['variant']}: delta = variant - baseline. Images: paired bootstrap "
                      f"over {b['unit']} ({b['samples']} resamples, seed {b['seed']}), each seed's model held fixed. "
                      f"Seeds: paired Student t over the per-seed deltas (retraining variance; "
                      f"{len(result['seeds']) - 1} degrees of freedom).",
                  "", "| variant | metric | delta | images: 95% CI | images: p | per-seed deltas | seeds: 95% CI "
                      "| seeds: p |", "|---|---|---|---|---|---|---|---|"]
        for c in result["comparisons"]:
            seed_ci = ("–" if c["seed_ci_low"] is None else f"[{c['seed_ci_low']:+.3f}, {c['seed_ci_high']:+.3f}]")
            deltas = " ".join(f"{d:+.3f}" for d in c["seed_deltas"])
            lines.append(f"| {c['system']} | {c['metric']} | {c['delta']:+.3f} | [{c['ci_low']:+.3f}, "
                         f"{c['ci_high']:+.3f}] | {_fmt(c.get('p_value'))} | {deltas} | {seed_ci} | "
                         f"{_fmt(c['seed_p_value'])} |")
    return "\n".join(lines) + "\n"
