"""Scoring COCO-format files as `fsgr score` and `fsgr compare` do (nocaps domains each scored as their own corpus),
and the text of their reports (tables, unavailable metrics, diagnostics): the verbs print what these return."""

from __future__ import annotations

from fsgr.errors import DataError, format_ids
from fsgr.evaluation.coco_files import DOMAINS
from fsgr.metrics.compare import score_system
from fsgr.metrics.score import ALL_METRICS, METRIC_KEYS, tokenize_refs


def score_file(refs: dict, preds: dict, names: list[str], extra_metrics=(), domains: dict | None = None,
               tolerate_failures: bool = False) -> dict:
    """{"overall": ScoredSystem, "domains": {domain: Scores}} with each nocaps domain scored as its own corpus.
    `tolerate_failures`: a metric whose process crashes is reported unavailable ("failed: ...") and the others kept."""
    image_ids, ref_tok = tokenize_refs(refs)
    overall = score_system(image_ids, ref_tok, preds, names, extra_metrics, tolerate_failures=tolerate_failures)
    per_domain = score_domains(refs, {"": preds}, names, extra_metrics, domains, tolerate_failures) \
        if domains is not None else {}
    return {"overall": overall, "domains": {domain: by_system[""] for domain, by_system in per_domain.items()}}


def score_domains(refs: dict, systems: dict[str, dict], names: list[str], extra_metrics, domains: dict,
                  tolerate_failures: bool = False) -> dict:
    """domain -> system -> Scores: each nocaps domain scored as its own corpus (as the nocaps evaluation does), its
    references tokenised once for all the systems."""
    missing = [i for i in refs if i not in domains]
    if missing:
        raise DataError(f"images of the references without a nocaps domain: {format_ids(missing)}")
    out = {}
    for domain in DOMAINS:
        sub = {i: refs[i] for i in refs if domains[i] == domain}
        if sub:
            image_ids, ref_tok = tokenize_refs(sub)
            out[domain] = {label: score_system(image_ids, ref_tok, preds, names, extra_metrics,
                                               tolerate_failures=tolerate_failures).scores
                           for label, preds in systems.items()}
    return out


def failed(unavailable: dict[str, str]) -> bool:
    """True when a metric did not merely lack what it needs but crashed or timed out while running (exit 1)."""
    return any(why.startswith("failed:") for why in unavailable.values())


def result_keys(names: list[str], extra_metrics) -> list[str]:
    """The toolkit's metric keys in their usual order (as the JSON has them), then the extra metrics' as asked."""
    return [k for name in ALL_METRICS if name in names for k in METRIC_KEYS[name]] + \
        [k for m in extra_metrics for k in m.keys]


def table(columns: dict[str, dict], keys: list[str]) -> str:
    """One row per metric key, one column per system (or domain); "unavailable" where a value is missing."""
    width = max([len(k) for k in keys] + [6])
    names = list(columns)
    col = max([len(n) for n in names] + [8])
    lines = []
    if len(names) > 1:
        lines.append(f"{'':<{width}}  " + "  ".join(f"{n:>{col}}" for n in names))
    for key in keys:
        cells = [f"{columns[n][key]:.4f}" if key in columns[n] else "unavailable" for n in names]
        if len(names) == 1:
            lines.append(f"{key:<{width}}  {cells[0]}")
        else:
            lines.append(f"{key:<{width}}  " + "  ".join(f"{c:>{col}}" for c in cells))
    return "\n".join(lines)


def unavailable_lines(unavailable: dict[str, str], verb: str) -> list[str]:
    """`fsgr VERB: METEOR and SPICE unavailable: why`, each distinct reason once (no Java makes both METEOR and SPICE
    unavailable for the same reason)."""
    reasons: dict[str, list[str]] = {}
    for key, why in unavailable.items():
        reasons.setdefault(why, []).append(key)
    return [f"fsgr {verb}: {' and '.join(keys)} unavailable: {why}" for why, keys in reasons.items()]


def diagnostics_table(diagnostics: dict[str, dict]) -> str:
    rows = [("captions", "{:d}"), ("mean_length", "{:.2f}"), ("median_length", "{:.1f}"), ("vocabulary", "{:d}"),
            ("distinct_1", "{:.4f}"), ("distinct_2", "{:.4f}"), ("repeated_ngram_share", "{:.4f}"),
            ("function_word_ending_share", "{:.4f}"), ("copied_from_training_share", "{:.4f}")]
    names = list(diagnostics)
    lines = ["\ndiagnostics" + ("" if len(names) == 1 else "  " + "  ".join(f"{n:>12}" for n in names))]
    for key, fmt in rows:
        if key in diagnostics[names[0]]:
            lines.append(f"  {key:<28}" + "  ".join(f"{fmt.format(diagnostics[n][key]):>12}" for n in names))
    for n in names:
        hist = " ".join(f"{k}:{v}" for k, v in diagnostics[n]["length_histogram"].items())
        lines.append(f"  length histogram{'' if len(names) == 1 else ' ' + n}: {hist}")
    return "\n".join(lines)
