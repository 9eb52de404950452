"""`fsgr compare --refs REFS.json --preds A.json B.json [C.json ...] [--metrics ...] [--bootstrap 1000] [--seed 0]
[--json OUT]`: every system's scores (those of `fsgr score`), and each system against the first (the baseline):
the difference per metric with a paired-bootstrap 95% confidence interval over images and a p-value; caption
diagnostics per system; the images where the two systems' CIDEr-D differs most; the signature.

The same file given twice (under any spelling of its path) is refused: a system compared with itself says nothing.
`--bootstrap` takes 1..10,000 samples and `--seed` an integer >= 0, checked before anything is read.
Exit status as `fsgr score`'s.

JSON: {"systems": {NAME: {METRIC: value}}, "comparisons": [{"baseline", "system", "metric", "delta", "ci_low",
"ci_high", "p_value", "exact_resampling"}], "signature", "diagnostics", "largest_differences", "unavailable",
and "domains": {domain: {NAME: {METRIC: value}}} for nocaps references}.
"""

from __future__ import annotations


from fsgr.commands.metric_args import add_metric_arguments


def add_arguments(parser) -> None:
    parser.add_argument("--refs", required=True, metavar="REFS.json", help="references, COCO captions format")
    parser.add_argument("--preds", required=True, nargs="+", metavar="PREDS.json",
                        help="two or more systems' predictions (COCO results format); the first is the baseline")
    parser.add_argument("--names", default=None, metavar="A,B,...",
                        help="system names (default: the file names without .json)")
    add_metric_arguments(parser)
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap samples (1000; at most "
                                                                                 "10000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0): the same seed, the same intervals")
    parser.add_argument("--top", type=int, default=5, metavar="K",
                        help="show the K images whose per-image CIDEr-D differs most from the baseline's (5)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write everything to this JSON file")


def main(args) -> int:
    from fsgr.commands.checks import output_file
    from fsgr.errors import DataError
    from fsgr.evaluation import coco_files, scoring
    from fsgr.evaluation.extras import build_extra_metrics, split_metrics
    from fsgr.metrics.compare import check_bootstrap, compare_systems

    output_file("--json", args.json, inputs=[args.refs, *args.preds, args.train_refs], verb="compare",
                kind="signed-json")
    if len(args.preds) < 2:
        raise DataError("fsgr compare needs at least two --preds files (the first is the baseline)")
    check_bootstrap(args.bootstrap, args.seed)
    names, extra_names = split_metrics(args.metrics)
    refs = coco_files.read_refs(args.refs)
    systems = coco_files.read_systems(refs, args.refs, args.preds, args.names)
    labels = list(systems)
    domains = coco_files.read_domains(args.refs)
    extra_metrics = build_extra_metrics(extra_names, args, refs, coco_files.read_file_names(args.refs))
    train_refs = coco_files.read_refs(args.train_refs) if args.train_refs else None
    result = compare_systems(refs, systems, names, args.bootstrap, args.seed, diagnostics=True,
                             train_refs=train_refs, top=args.top, extra_metrics=extra_metrics, tolerate_failures=True)
    if domains is not None:  # (the whole set is scored once per system above: only the domains here)
        result["domains"] = {domain: {label: dict(scores) for label, scores in by_system.items()}
                             for domain, by_system in scoring.score_domains(refs, systems, names, extra_metrics,
                                                                            domains, tolerate_failures=True).items()}

    print(f"{len(refs)} images, {sum(len(r) for r in refs.values())} references, {len(systems)} systems")
    keys = scoring.result_keys(names, extra_metrics)
    print(scoring.table(result["systems"], keys))
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
    print(scoring.diagnostics_table(result["diagnostics"]))
    for domain, table in result.get("domains", {}).items():
        print(f"\n{domain}")
        print(scoring.table(table, keys))
    print(f"\nsignature: {result['signature']}")
    for line in scoring.unavailable_lines(result["unavailable"], "compare"):
        from fsgr.logs import get_logger   # (only when a metric is unavailable: `logging` costs a plain score)

        get_logger(__name__).warning(line)
    if args.json:
        coco_files.write_json(args.json, result)
    return 1 if (args.metrics is not None and result["unavailable"]) or scoring.failed(result["unavailable"]) else 0
