"""`fsgr train CONFIG [key=value ...] [--resume] [--fast-dev-run [N]]`: XE (+ patch contrastive), then SCST, in one run
directory. `--fast-dev-run N` runs N steps of each phase and N eval batches and projects the real run's times
(RUN_DIR/fast_dev_run.json, `fsgr.training.fast_dev_run`); it writes no checkpoint.

Multi-GPU: `torchrun --nproc_per_node N -m fsgr train CONFIG ...` (one process per GPU, DDP); one process needs no
launcher. Prints the run summary as JSON on stdout when the run ends (progress and messages go to stderr).
Exit status: 0 when the run finished or stopped at train.max_steps; 130 / 143 when SIGINT / SIGTERM stopped it (after
saving last.pt; continue with --resume); 2 for bad input, before anything is written.
"""

from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("config", help="a YAML path or a packaged config name (demo, fsgr_coco, fsgr_coco_pma)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.max_steps=40 run.dir=runs/x")
    parser.add_argument("--resume", action="store_true",
                        help="continue run.dir/checkpoints/last.pt exactly where it stopped")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: this process's GPU, else CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    parser.add_argument("--fast-dev-run", type=int, nargs="?", const=3, default=None, metavar="N",
                        help="build everything as the real run, run N XE steps, N SCST steps and N val/test batches "
                             "(default N: 3), write RUN_DIR/fast_dev_run.json with the projected epoch times; no "
                             "checkpoint")


def main(args) -> int:
    import json
    import os
    import signal

    from fsgr.config import load_config
    from fsgr.training.engine import train

    cfg = load_config(args.config, args.overrides)
    if args.fast_dev_run is not None:
        from fsgr.training.fast_dev_run import fast_dev_run

        if args.resume:
            from fsgr.errors import ConfigError

            raise ConfigError("--fast-dev-run and --resume do not go together (a fast dev run resumes nothing)")
        report = fast_dev_run(cfg, steps=args.fast_dev_run, device=args.device, progress=not args.no_progress)
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(report))
        return 0
    summary = train(cfg, resume=args.resume, device=args.device, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    if summary["status"] == "interrupted":
        # saved, but not done: 130 (SIGINT) / 143 (SIGTERM), as a shell reports a process killed by the signal,
        # so that `fsgr train ... && fsgr evaluate ...` stops here
        return 128 + signal.Signals[summary["signal"] or "SIGTERM"].value
    return 0
