"""`fsgr compare --refs REFS.json --preds A.json B.json [C.json ...] [--metrics ...] [--bootstrap 1000] [--seed 0]
[--json OUT]`: every system's scores (those of `fsgr score`), and each system against the first (the baseline):
the difference per metric with a paired-bootstrap 95% confidence interval over images and a p-value; caption
diagnostics per system; the images where the two systems' CIDEr-D differs most; the signature.

JSON: {"systems": {NAME: {METRIC: value}}, "comparisons": [{"baseline", "system", "metric", "delta", "ci_low",
"ci_high", "p_value", "exact_resampling"}], "signature", "diagnostics", "largest_differences", "unavailable",
and "domains": {domain: {NAME: {METRIC: value}}} for nocaps references}.
"""

from __future__ import annotations

from pathlib import Path

from fsgr.errors import DataError, format_ids


def add_arguments(parser) -> None:
    from fsgr.commands.score import add_metric_arguments

    parser.add_argument("--refs", required=True, metavar="REFS.json", help="references, COCO captions format")
    parser.add_argument("--preds", required=True, nargs="+", metavar="PREDS.json",
                        help="two or more systems' predictions (COCO results format); the first is the baseline")
    parser.add_argument("--names", default=None, metavar="A,B,...",
                        help="system names (default: the file names without .json)")
    add_metric_arguments(parser)
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap samples (1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0): the same seed, the same intervals")
    parser.add_argument("--top", type=int, default=5, metavar="K",
                        help="show the K images whose per-image CIDEr-D differs most from the baseline's (5)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write everything to this JSON file")


def system_names(paths: list[str], names: str | None) -> list[str]:
    if names is not None:
        out = [n.strip() for n in names.split(",")]
        if len(out) != len(paths) or len(set(out)) != len(out) or not all(out):
            raise DataError(f"--names {names!r}: give {len(paths)} distinct names, one per --preds file")
        return out
    stems = [Path(p).name.removesuffix(".json") for p in paths]
    return stems if len(set(stems)) == len(stems) else list(paths)


def main(args) -> int:
    from fsgr.commands.score import (print_diagnostics, print_table, print_unavailable, read_domains,
                                     read_file_names, read_preds, read_refs, result_keys, write_json)
    from fsgr.evaluation.extras import build_extra_metrics, split_metrics
    from fsgr.metrics.compare import compare_systems

    from fsgr.commands.checks import output_file

    output_file("--json", args.json, inputs=[args.refs, *args.preds, args.train_refs])
    if len(args.preds) < 2:
        raise DataError("fsgr compare needs at least two --preds files (the first is the baseline)")
    if args.bootstrap < 1:
        raise DataError(f"--bootstrap {args.bootstrap}: give at least 1 sample (1000 is usual)")
    names, extra_names = split_metrics(args.metrics)
    refs = read_refs(args.refs)
    labels = system_names(args.preds, args.names)
    systems = {}
    for label, path in zip(labels, args.preds):
        preds = read_preds(path)
        no_refs = [i for i in preds if i not in refs]
        if no_refs:
            raise DataError(f"{path}: predictions for images without references in {args.refs}: {format_ids(no_refs)}")
        no_preds = [i for i in refs if i not in preds]
        if no_preds:
            raise DataError(f"{path}: no prediction for images of {args.refs}: {format_ids(no_preds)} "
                            "(every system must caption the same images)")
        systems[label] = preds
    extra_metrics = build_extra_metrics(extra_names, args, refs, read_file_names(args.refs))
    train_refs = read_refs(args.train_refs) if args.train_refs else None
    result = compare_systems(refs, systems, names, args.bootstrap, args.seed, diagnostics=True,
                             train_refs=train_refs, top=args.top, extra_metrics=extra_metrics)
    domains = read_domains(args.refs)
    if domains is not None:  # (the whole set is scored once per system above: only the domains here)
        from fsgr.commands.score import score_domains

        result["domains"] = {domain: {label: dict(scores) for label, scores in by_system.items()}
                             for domain, by_system in score_domains(refs, systems, names, extra_metrics,
                                                                    domains).items()}

    print(f"{len(refs)} images, {sum(len(r) for r in refs.values())} references, {len(systems)} systems")
    keys = result_keys(names, extra_metrics)
    print_table(result["systems"], keys)
    print(f"\n{labels[0]} (baseline) vs each system: delta, 95% CI (paired bootstrap, {args.bootstrap} samples, "
          f"seed {args.seed}), p")
    for row in result["comparisons"]:
        approx = "" if row["exact_resampling"] else "  (per-image scores resampled)"
        print(f"  {row['system']:<12} {row['metric']:<12} {row['delta']:+.4f}  "
              f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]  p={row['p_value']:.4f}{approx}")
    for label, rows in result.get("largest_differences", {}).items():
        print(f"\nlargest per-image CIDEr-D differences, {label} vs {labels[0]}:")
        for r in rows:
            print(f"  {r['image_id']}  {r['delta']:+.3f}  {labels[0]}: {r['baseline']!r}  {label}: {r['system']!r}")
    print_diagnostics(result["diagnostics"])
    for domain, table in result.get("domains", {}).items():
        print(f"\n{domain}")
        print_table(table, keys)
    print(f"\nsignature: {result['signature']}")
    print_unavailable(result["unavailable"], "compare")
    if args.json:
        write_json(args.json, result)
    return 1 if args.metrics is not None and result["unavailable"] else 0
