"""`fsgr train CONFIG [key=value ...] [--resume] [--fast-dev-run [N]]`: XE (+ patch contrastive), then SCST, in one run
directory. `--print-config` prints the resolved config as YAML and exits (nothing read but the config);
`--list-configs` lists the packaged configs. `--fast-dev-run N` runs N steps of each phase and N eval batches and
projects the real run's times (RUN_DIR/fast_dev_run.json, `fsgr.training.fast_dev_run`); it writes no checkpoint.

Multi-GPU: `torchrun --nproc_per_node N -m fsgr train CONFIG ...` (one process per GPU, DDP); one process needs no
launcher. Prints the run summary as JSON on stdout when the run ends (progress and messages go to stderr).
Exit status: 0 when the run finished or stopped at train.max_steps; 130 / 143 / 138 when SIGINT / SIGTERM / SIGUSR1
stopped it (after saving last.pt; continue with --resume; 138 = SLURM's warning before a time limit or preemption:
requeue); 1 when it failed after it began (a non-finite loss, a full disk); 2 for bad input, before anything is
written. `--resume` may use another number of processes.
"""

from __future__ import annotations

from fsgr.commands.config_args import add_config_arguments


def add_arguments(parser):
    add_config_arguments(parser, "config overrides, e.g. train.max_steps=40 run.dir=runs/x", required=False)
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (CONFIG, then the overrides, every default filled in) as YAML "
                             "and exit, touching no data")
    parser.add_argument("--list-configs", action="store_true", help="list the packaged configs (name and file) and exit")
    parser.add_argument("--resume", action="store_true",
                        help="continue run.dir/checkpoints/last.pt exactly where it stopped (bit-exact on the same "
                             "number of processes; exact in data order on another)")
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

    from fsgr.config import config_yaml, load_config
    from fsgr.errors import ConfigError

    if args.list_configs:
        from fsgr.packaged import packaged_config_path, packaged_configs

        for name in packaged_configs():
            print(f"{name}\t{packaged_config_path(name)}")
        return 0
    if args.config is None:
        raise ConfigError("train: name a config: fsgr train CONFIG [key=value ...] (fsgr train --list-configs lists "
                          "the packaged ones)")
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(config_yaml(cfg), end="")
        return 0
    from fsgr.training.engine import train

    if args.fast_dev_run is not None:
        from fsgr.training.fast_dev_run import fast_dev_run

        if args.resume:
            raise ConfigError("--fast-dev-run and --resume do not go together (a fast dev run resumes nothing)")
        report = fast_dev_run(cfg, steps=args.fast_dev_run, device=args.device, progress=not args.no_progress)
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(report))
        return 0
    summary = train(cfg, resume=args.resume, device=args.device, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    if summary["status"] == "interrupted":
        # saved, but not done: 130 (SIGINT) / 143 (SIGTERM) / 138 (SIGUSR1), as a shell reports a process killed by
        # the signal, so that `fsgr train ... && fsgr evaluate ...` stops here and a requeue wrapper can tell them apart
        return 128 + signal.Signals[summary["signal"] or "SIGTERM"].value
    return 0
