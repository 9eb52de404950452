"""`fsgr demo [--out DIR] [--config FILE] [key=value ...]`: FSGR end to end on the embedded synthetic shapes dataset
with the shipped tiny CLIP: generate, train (XE then SCST), score the test split against the human ceiling, caption a
few test images, draw explain.png, write DIR/metrics.json and DIR/checkpoints/best.pt. CPU, minutes (docs/demo.md).
"""

from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("--out", default="runs/demo", metavar="DIR", help="run directory (default: %(default)s)")
    parser.add_argument("--config", default=None,
                        help="demo config, a path or a packaged name (default: the packaged demo config)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.max_epochs=2 data.synthetic.num_train=500")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: a GPU if present, else CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def main(args) -> int:
    from fsgr.commands.checks import output_folder
    from fsgr.demo.run import run_demo

    output_folder("--out", args.out)

    run_demo(args.out, config=args.config, overrides=args.overrides, device=args.device,
             progress=not args.no_progress)
    return 0
