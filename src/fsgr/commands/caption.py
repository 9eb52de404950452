"""`fsgr caption --checkpoint CKPT IMAGE...`: one `path<TAB>caption` line per decodable image.

A path holding a tab, a newline or a leading double quote is written as a JSON string ("a\tb.jpg"), so every line
still splits into exactly two fields at its one tab. A file that cannot be used is named on stderr with the reason;
the exit status is 1 if any failed.

Bulk mode (`--out captions.jsonl`, fsgr.serving.bulk): folders are walked, images decoded in worker processes, one JSON
line per image (`path`, `caption`, `logprob`, `length`, or `path`, `error`) flushed as it goes, a progress bar with
images/s; `--resume` continues a cut-off file, `--shard I/N` takes one deterministic part of the work.
`--coco-results FILE` writes the COCO results format (`[{"image_id", "caption"}]`, ids from the file names).
`--model DIR` runs an exported model (`fsgr export`: ONNX on onnxruntime, or a safetensors folder) instead of a
checkpoint.
"""

from __future__ import annotations

from fsgr.commands.decoding_args import add_decoding_arguments, decoding_overrides


def add_arguments(parser):
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint written by `fsgr train`")
    source.add_argument("--model", metavar="DIR", help="a folder written by `fsgr export` (onnx or safetensors)")
    parser.add_argument("images", nargs="+", metavar="PATH_OR_DIR", help="image files (JPEG, PNG, ...) or folders")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images decoded together (default: the checkpoint's eval.batch_images)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (checkpoints and safetensors)")
    bulk = parser.add_argument_group("bulk captioning")
    bulk.add_argument("--out", default=None, metavar="FILE.jsonl", help="write one JSON line per image here")
    bulk.add_argument("--resume", action="store_true", help="continue --out: skip the images already written")
    bulk.add_argument("--shard", default=None, metavar="I/N", help="caption only shard I of N (0 <= I < N)")
    bulk.add_argument("--coco-results", default=None, metavar="FILE",
                      help="write COCO results JSON (image ids from the file names), after --out if given")
    bulk.add_argument("--workers", type=int, default=2, help="image-decoding worker processes (0: in the main one)")
    bulk.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_decoding_arguments(parser)


def load_captioner(args):
    """The PyTorch Captioner of --checkpoint, or the model of an exported --model folder."""
    if args.checkpoint:
        from fsgr.inference import Captioner

        return Captioner.from_checkpoint(args.checkpoint, device=args.device)
    from fsgr.export import load_exported

    return load_exported(args.model, device=args.device)


def main(args) -> int:
    import sys

    from fsgr.commands import checks
    from fsgr.errors import ConfigError

    checks.in_range("--beam", args.beam, 1)
    checks.in_range("--batch-size", args.batch_size, 1)
    checks.in_range("--workers", args.workers, 0)
    if args.resume and not args.out:
        raise ConfigError("--resume continues an --out file: give --out")
    checks.output_file("--out", args.out, inputs=[args.checkpoint])
    checks.output_file("--coco-results", args.coco_results, inputs=[args.checkpoint])
    from fsgr.serving import bulk

    shard = bulk.parse_shard(args.shard) if args.shard else None
    captioner = load_captioner(args)
    checks.beam_within_vocab(args.beam, len(captioner.vocab))
    if args.batch_size is None:
        args.batch_size = captioner.cfg.eval.batch_images
    settings = captioner.settings(**decoding_overrides(args))
    paths = bulk.list_images(args.images)
    if shard is not None:
        paths = [p for p in paths if bulk.shard_of(p, shard[1]) == shard[0]]
    if not (args.out or args.coco_results):
        return _print_captions(captioner, paths, settings, args)
    from pathlib import Path

    progress = not args.no_progress
    if args.out:
        out = Path(args.out)
        written, failed, skipped = bulk.caption_to_jsonl(captioner, paths, out, settings, args.batch_size,
                                                         args.workers, resume=args.resume, progress=progress)
        rows = bulk.read_rows(out) if args.coco_results else []
        print(f"wrote {written} row(s) to {out} ({failed} failed, {skipped} already there)", file=sys.stderr)
    else:
        rows = list(bulk.caption_rows(captioner, paths, settings, args.batch_size, args.workers, progress))
        failed = sum("error" in r for r in rows)
        for row in rows:
            if "error" in row:
                print(f"{row['path']}: {row['error']}", file=sys.stderr)
    if args.coco_results:
        count = bulk.write_coco_results(rows, Path(args.coco_results))
        print(f"wrote {count} caption(s) to {args.coco_results} (COCO results format)", file=sys.stderr)
    if failed:
        print(f"fsgr caption: {failed} image(s) failed", file=sys.stderr)
        return 1
    return 0


def _print_captions(captioner, paths, settings, args) -> int:
    """The plain mode: `path<TAB>caption` on stdout, bad files on stderr, in input order."""
    import sys

    import torch

    from fsgr.errors import DataError

    good: list[tuple[str, torch.Tensor]] = []
    failed = 0
    for path in paths:
        try:
            good.append((path, captioner.preprocess(path)))
        except DataError as exc:
            failed += 1
            msg = str(exc)
            print(msg if msg.startswith(path) else f"{path}: {msg}", file=sys.stderr)
    for start in range(0, len(good), args.batch_size):
        chunk = good[start:start + args.batch_size]
        captions = captioner.generate(torch.stack([t for _, t in chunk]), settings)
        for (path, _), caption in zip(chunk, captions):
            print(f"{_field(path)}\t{caption.text}", flush=True)
    if failed:
        print(f"fsgr caption: {failed} of {len(paths)} image(s) failed", file=sys.stderr)
        return 1
    return 0


def _field(path: str) -> str:
    """The path as is, or JSON-quoted when it would break the line format."""
    import json

    return json.dumps(path, ensure_ascii=False) if any(c in path for c in "\t\n\r") or path.startswith('"') else path
