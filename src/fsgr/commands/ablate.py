"""`fsgr ablate CONFIG --variant NAME[=key=value,...] ... --seeds N [--out DIR] [key=value ...]`: train every variant
for N seeds (train + test decode; finished runs are skipped, interrupted ones resumed), then write OUT/ablation.json
and OUT/ablation.md: mean and std over seeds per metric, and each variant against the first with a paired bootstrap
CI over test images pooled across seeds (docs/ablation.md).
"""

from __future__ import annotations

from fsgr.commands.config_args import add_config_arguments


def add_arguments(parser):
    add_config_arguments(parser, "overrides common to every variant (a shortened recipe, a data root), before the "
                                 "variant's")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME[=key=value,...]", required=True,
                        help="one variant: a name and its overrides, comma-separated (repeat; the first is the "
                             "baseline of the comparisons), e.g. full  no_contrastive=train.contrastive_weight=0")
    parser.add_argument("--seeds", type=int, default=3, help="runs per variant; seed i uses train.seed + i (3)")
    parser.add_argument("--out", default="runs/ablate", metavar="DIR", help="where the runs and the table go "
                                                                            "(default: %(default)s)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (1000)")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the resampling (0)")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: tabulate the seeds that every variant has finished")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: a GPU if present, else CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def _world_metrics(config, overrides) -> list:
    """On a synthetic world, its concept metrics (recall per concept group, CHAIR-style hallucination, binding
    swaps: `fsgr.demo.mechanism.concept_world`) beside the config's metrics; none elsewhere."""
    from fsgr.config import load_config

    cfg = load_config(config, list(overrides))
    if cfg.data.format != "synthetic":
        return []
    from fsgr.demo.mechanism import concept_world

    return [concept_world(cfg.data.synthetic.root)]


def main(args) -> int:
    from pathlib import Path

    from fsgr.commands.checks import output_file
    from fsgr.metrics.compare import check_bootstrap
    from fsgr.training.ablate import parse_variant, run_all, tabulate

    check_bootstrap(args.bootstrap, args.bootstrap_seed, "--bootstrap-seed")   # before any training
    for name, kind in (("ablation.json", "signed-json"), ("ablation.md", "ablation-md")):   # a user's file there
        output_file("--out", str(Path(args.out) / name), verb="ablate", kind=kind)
    variants = [parse_variant(v) for v in args.variant]
    if not args.table_only:
        run_all(args.config, variants, args.seeds, args.out, common=args.overrides, device=args.device,
                progress=not args.no_progress)
    result = tabulate(args.config, variants, args.seeds, args.out, common=args.overrides, samples=args.bootstrap,
                      bootstrap_seed=args.bootstrap_seed, finished_only=args.table_only,
                      extra_metrics=_world_metrics(args.config, args.overrides))
    from fsgr.training.ablate import markdown_table

    print(markdown_table(result), end="")
    return 0
