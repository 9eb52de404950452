"""`fsgr evaluate CKPT|--checkpoint CKPT [key=value ...] [--split val|test] [--beam 5] [--out preds.json]`.

Decodes every image of the split (beam search) with the checkpoint's model and prints the COCO scores as JSON.
`--out` writes the captions in COCO results format and the scores beside them (`<out>.scores.json`).
The data paths come from the checkpoint's config; override them with `data.images=/new/place` if moved
(`key=value` overrides as every verb's, `fsgr.config.apply_overrides`; `--set key=value` is a deprecated alias).
Precision: by default the trainer's own (`train.amp` resolved on this device: bf16 on a bf16 GPU, fp32 on the CPU),
so `fsgr evaluate` of best.pt reproduces the trainer's final test; `--precision fp32` decodes in full precision. The
precision used is in the printed scores (`precision`).
Sharded: `torchrun --nproc_per_node N -m fsgr evaluate ...` decodes 1/N of the split in each process (one GPU each,
NCCL; gloo on CPUs) with the trainer's own sharded evaluation; rank 0 gathers the captions, scores them, prints and
writes everything: the same captions and scores as one process. The report records `"processes": N`.
Exit status 0; 1 when a metric crashed or one named in --metrics could not run (the others are printed and written,
the missing one under "unavailable" with the reason); 2 for input refused before any decoding.
"""

from __future__ import annotations

import os

from fsgr.commands.decoding_args import add_decoding_arguments, add_precision_argument, decoding_settings
from fsgr.logs import get_logger

log = get_logger(__name__)


def add_arguments(parser):
    parser.add_argument("overrides", nargs="*", metavar="[CHECKPOINT] key=value",
                        help="the checkpoint (unless --checkpoint names it), then config overrides of the checkpoint's "
                             "config, e.g. data.images=/new/place eval.batch_images=8")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint written by `fsgr train` (best.pt, last.pt)")
    parser.add_argument("--split", default="test", choices=["val", "test", "train"], help="split to score (test)")
    parser.add_argument("--out", default=None, help="write predictions here (COCO results JSON) and the scores to "
                                                    "OUT.scores.json")
    parser.add_argument("--metrics", default=None, help="comma-separated metrics (default: the config's eval.metrics)")
    parser.add_argument("--set", action="append", default=[], metavar="key=value",
                        help="deprecated: pass key=value after the checkpoint instead")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")
    add_precision_argument(parser)
    parser.add_argument("--coco-results", default=None, metavar="NAME",
                        help="also write captions_val2014_NAME_results.json for the COCO server (COCO images only)")
    parser.add_argument("--results-dir", default=".", metavar="DIR", help="where --coco-results goes (.)")
    add_decoding_arguments(parser, sampling=False)     # the scores are of one searched caption per image


def main(args) -> int:
    from fsgr.commands import checks
    from fsgr.core.device import pick_device
    from fsgr.core.distributed import init_distributed, shutdown

    checkpoint, overrides = _checkpoint_and_overrides(args)
    checks.output_file("--out", args.out, inputs=[checkpoint], verb="evaluate", kind="predictions")
    if args.out:
        checks.output_file("--out", args.out + ".scores.json", inputs=[checkpoint], verb="evaluate", kind="signed-json")
    if args.coco_results:
        from fsgr.evaluation.coco_files import check_results_name

        check_results_name(args.coco_results)
        checks.output_folder("--results-dir", args.results_dir)
    # under torchrun: one process per GPU (LOCAL_RANK's), each decoding its shard of the split
    dist = init_distributed(pick_device(args.device, int(os.environ.get("LOCAL_RANK", "0"))))
    try:
        return _evaluate(args, checkpoint, overrides, dist)
    finally:
        shutdown(dist)


def _evaluate(args, checkpoint: str, overrides: list[str], dist) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from fsgr.commands import checks
    from fsgr.config import Config, apply_overrides, from_dict, to_dict
    from fsgr.core.device import pick_device
    from fsgr.errors import DataError
    from fsgr.evaluation import coco_files
    from fsgr.evaluation.scoring import failed, unavailable_lines
    from fsgr.inference import Captioner
    from fsgr.training.evaluation import evaluate_split
    from fsgr.training.setup import load_patch_labels

    device = pick_device(args.device, dist.local_rank)
    if device.type == "cuda":        # NCCL's object collectives run on the current device: this process's GPU
        import torch

        torch.cuda.set_device(device)
    captioner = Captioner.from_checkpoint(checkpoint, device=device)
    cfg = from_dict(Config, apply_overrides(to_dict(captioner.cfg), overrides))
    # a new Captioner around the same model: the overridden eval.* values are the defaults of the decoding flags,
    # the overridden train.amp that of --precision
    captioner = Captioner(captioner.model, captioner.vocab, cfg, captioner.device, captioner.codebook_names,
                          args.precision)
    settings = decoding_settings(captioner, args)
    from fsgr.data.readers import read_records

    records = [r for r in read_records(cfg.data) if r.split == args.split]
    if not records:
        raise DataError(f"{cfg.data.annotations or cfg.data.format}: no images in split {args.split!r}")
    preds_path = Path(args.out) if args.out else None
    server_path = None
    if args.coco_results:
        split = coco_files.coco_server_split({r.path: r.image_id for r in records})
        server_path = coco_files.coco_results_path(args.results_dir, split, args.coco_results)
        checks.output_file("--coco-results", str(server_path), verb="evaluate", kind="server-results")
        if preds_path is None:       # the results file is also the predictions, with its .scores.json beside it
            preds_path = server_path
            checks.output_file("--coco-results", f"{server_path}.scores.json", verb="evaluate", kind="signed-json")
    result = evaluate_split(captioner.model, records, captioner.vocab, cfg, captioner.device, dist, with_loss=False,
                            predictions_path=preds_path, beam_size=settings.beam_size, max_len=settings.max_len,
                            amp_dtype=captioner.amp_dtype, controls=settings.controls(),
                            tolerate_metric_failures=True,
                            patch_labels=load_patch_labels(cfg) if cfg.model.semantic.grid_from_given_labels else None)
    report = {"checkpoint": str(checkpoint), "split": args.split, "beam": settings.beam_size,
              "decoding": asdict(settings), "num_images": result["num_images"], "processes": dist.world_size,
              "precision": captioner.precision, **result["scores"],
              "signature": result.get("signature")}
    unavailable = result.get("unavailable", {})
    if unavailable:                  # a metric that could not run or crashed: absent, with the reason
        report["unavailable"] = unavailable
    if not dist.is_main:             # rank 0 reports and writes
        return 0
    print(json.dumps(report))
    for line in unavailable_lines(unavailable, "evaluate"):
        log.warning(line)
    if preds_path is not None:
        scores_path = coco_files.write_json(preds_path.with_name(preds_path.name + ".scores.json"), report)
        log.info(f"wrote {preds_path} and {scores_path}")
    if server_path is not None and server_path != preds_path:
        from fsgr.files import atomic_write_bytes

        atomic_write_bytes(server_path, preds_path.read_bytes())
    if server_path is not None:
        log.info(f"wrote {server_path} (COCO server results)")
    return 1 if (args.metrics is not None and unavailable) or failed(unavailable) else 0


def _checkpoint_and_overrides(args) -> tuple[str, list[str]]:
    """The checkpoint (`--checkpoint C` or the first positional word) and the overrides: the positional ones, the
    deprecated `--set` ones, then `--metrics` as eval.metrics. The model is the checkpoint's: model.* is refused."""

    from fsgr.errors import ConfigError

    words = list(args.overrides)
    checkpoint = args.checkpoint
    if checkpoint is None:
        if not words or ("=" in words[0] and not os.path.exists(words[0])):
            raise ConfigError("evaluate: name a checkpoint: fsgr evaluate CKPT [key=value ...] "
                              "(or --checkpoint CKPT)")
        checkpoint = words.pop(0)
    if args.set:
        log.warning("fsgr: warning: evaluate --set is deprecated: pass key=value after the checkpoint "
                    f"(fsgr evaluate {checkpoint} {' '.join(args.set)})")
    overrides = [*words, *args.set, *([f"eval.metrics={args.metrics}"] if args.metrics else [])]
    model_keys = [item for item in overrides if item.strip().startswith("model.")]
    if model_keys:
        raise ConfigError(f"evaluate: {model_keys[0].partition('=')[0]}: the model is the checkpoint's as it was "
                          "trained; model.* cannot be overridden")
    return checkpoint, overrides
