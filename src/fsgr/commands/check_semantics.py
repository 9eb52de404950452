"""`fsgr check-semantics CONFIG [key=value ...] [--split test] [--n 200] [--json OUT]` (the config's synthetic world,
its generator's exact concept maps) or `... --instances instances_val2014.json --images DIR` (COCO masks, pycocotools):
how well the config's frozen CLIP and codebook label patches zero-shot, per labelling path (the semantic head as
configured, the whole-codebook aligned path, MaskCLIP's value path; with and without ln_post), for background/stuff
and for objects, per concept. The pre-flight check before a run (fsgr.evaluation.semantics; docs/demo.md).
"""

from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("config", help="YAML config (or a packaged one: demo, fsgr_coco, ...)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--split", default="test", help="synthetic split to check (default: %(default)s)")
    parser.add_argument("--n", type=int, default=200, help="images to check (default: %(default)s)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON")
    parser.add_argument("--instances", default=None, metavar="JSON",
                        help="COCO instances (or stuff) annotations: check on their masks instead of the synthetic "
                             "world (needs --images and pycocotools: pip install 'fsgr[coco]')")
    parser.add_argument("--images", default=None, metavar="DIR", help="folder holding the --instances images")


def main(args) -> int:
    import json

    from fsgr.commands import checks
    from fsgr.config import load_config
    from fsgr.errors import ConfigError
    from fsgr.evaluation.semantics import check_semantics, coco_truth, load_clip_and_codebook, synthetic_truth, table
    from fsgr.files import atomic_write_text

    checks.in_range("--n", args.n, 1)
    checks.output_file("--json", args.json, verb="check-semantics", kind="signed-json")
    if (args.instances is None) != (args.images is None):
        raise ConfigError("--instances and --images go together (COCO masks and the folder of their images)")
    cfg = load_config(args.config, args.overrides)
    clip, names, codebook = load_clip_and_codebook(cfg)
    if args.instances is not None:
        truth = coco_truth(cfg, args.instances, args.images, args.n, names)
    else:
        if cfg.data.format != "synthetic":
            raise ConfigError(f"{args.config}: data.format is {cfg.data.format!r}; give COCO masks with --instances "
                              f"and --images, or a synthetic config")
        truth = synthetic_truth(cfg, args.split, args.n, names)
    result = check_semantics(cfg, truth, names, clip, codebook)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    print(f"{result['images']} images ({truth.source}); patch labels right, per path:")
    print(table(result), end="")
    return 0
