"""`fsgr pretrain-clip --out PATH [--steps N] [--batch-size B] [--device cpu|cuda] [--seed S] [--log FILE]`: train the
tiny demo CLIP on synthetic shapes (the recipe is `fsgr.demo.pretrain_clip`; docs/demo.md has the shipped run).

Prints one JSON line per logged step / evaluation (also appended to --log); writes OpenAI-layout weights that
`load_clip` reads. Heavy imports happen inside main() so `fsgr --help` stays fast.
"""

from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("--out", required=True, metavar="PATH", help="CLIP weights file to write (.pt)")
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="image-text pairs per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 5%% of --steps, >= 10)")
    parser.add_argument("--pool", type=int, default=20000, help="training images rendered once (default: %(default)s)")
    parser.add_argument("--eval-size", type=int, default=512, help="held-out images for the evaluation (default: %(default)s)")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between evaluations (default: %(default)s)")
    parser.add_argument("--log-every", type=int, default=50, help="steps between loss lines (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="render processes (default: CPU count)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="init / batch sampling seed (default: %(default)s)")
    parser.add_argument("--data-seed", type=int, default=1,
                        help="synthetic seed of the image pool; the demo dataset uses 0 (default: %(default)s)")
    parser.add_argument("--log", default=None, metavar="FILE", help="also append the JSON lines to FILE")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="whole-run budget: after 100 steps the schedule is shortened to fit (default: none)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--dense-weight", type=float, default=0.5,
                        help="weight of the patch-pooled image-text term; 0 = plain CLIP loss (default: %(default)s)")
    parser.add_argument("--init", default=None, metavar="PATH",
                        help="continue from these CLIP weights (e.g. src/fsgr/assets/tiny_clip.pt) instead of a random "
                             "init; the architecture is the file's")
    parser.add_argument("--frac-background", type=float, default=0.0,
                        help="share of pairs 'whole image' + its background texture's text, taken from the crops' "
                             "share (default: %(default)s)")
    parser.add_argument("--patch-weight", type=float, default=0.0,
                        help="weight of the patch-text term (each patch vs every concept text, background patches "
                             "included; CSA and value paths); 0 = off (default: %(default)s)")


def main(args) -> int:
    import os

    import torch

    from fsgr.commands.checks import in_range, output_file
    from fsgr.demo.pretrain_clip import PretrainConfig, json_logger, pretrain
    from fsgr.errors import ConfigError
    from fsgr.fields import UINT32_MAX

    # every number before the image pool is rendered (tens of seconds): a bad one fails now, not after
    for flag in ("--steps", "--batch-size", "--pool", "--eval-size", "--eval-every", "--log-every", "--workers",
                 "--threads"):
        in_range(flag, getattr(args, flag[2:].replace("-", "_")), 1)
    in_range("--warmup", args.warmup, 0)
    in_range("--seed", args.seed, 0, UINT32_MAX)
    in_range("--data-seed", args.data_seed, 0, UINT32_MAX)
    in_range("--lr", args.lr, 0.0, above=True)
    in_range("--time-budget", args.time_budget, 0.0, above=True)
    in_range("--dense-weight", args.dense_weight, 0.0)
    in_range("--patch-weight", args.patch_weight, 0.0)
    in_range("--frac-background", args.frac_background, 0.0, 0.25)      # taken from the crops' share
    if args.init is not None and not os.path.isfile(args.init):
        raise ConfigError(f"--init {args.init}: no such file (CLIP weights to continue from)")
    output_file("--out", args.out, [args.init], verb="pretrain-clip", kind="clip-weights")
    output_file("--log", args.log, verb="pretrain-clip", kind="pretrain-log")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: CUDA is not available here")
    if args.threads:
        torch.set_num_threads(args.threads)
    warmup = args.warmup if args.warmup is not None else max(10, args.steps // 20)
    cfg = PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=warmup,
                         pool_size=args.pool, eval_size=args.eval_size, eval_every=args.eval_every,
                         log_every=args.log_every, seed=args.seed, time_budget=args.time_budget, data_seed=args.data_seed,
                         dense_weight=args.dense_weight, frac_background=args.frac_background,
                         patch_weight=args.patch_weight, init=args.init,
                         workers=args.workers if args.workers is not None else (os.cpu_count() or 1))
    pretrain(cfg, args.out, device=args.device, log=json_logger(args.log))
    return 0
