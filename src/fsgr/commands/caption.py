"""`fsgr caption --checkpoint CKPT IMAGE...`: one `path<TAB>caption` line per decodable image.

A path holding a tab, a newline or a leading double quote is written as a JSON string ("a\tb.jpg"), so every line
still splits into exactly two fields at its one tab. A file that cannot be used is named on stderr with the reason;
the exit status is 1 if any failed.

Bulk mode (`--out captions.jsonl`, fsgr.serving.bulk): folders are walked, images decoded in worker processes, one JSON
line per image (`path`, `caption`, `logprob`, `length`, or `path`, `error`) flushed as it goes, a progress bar with
images/s; `--resume` continues a cut-off file, `--shard I/N` takes one deterministic part of the work.
`--coco-results NAME` / `--nocaps-results FILE --nocaps-info INFO` write the evaluation servers' files
(fsgr.evaluation.coco_files); in bulk mode from every row of `--out`, resumed ones included.
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
    parser.add_argument("--workers", type=int, default=2, help="image-decoding worker processes (0: in the main one)")
    bulk = parser.add_argument_group("bulk captioning")
    bulk.add_argument("--out", default=None, metavar="FILE.jsonl", help="write one JSON line per image here")
    bulk.add_argument("--resume", action="store_true", help="continue --out: skip the images already written")
    bulk.add_argument("--shard", default=None, metavar="I/N", help="caption only shard I of N (0 <= I < N)")
    bulk.add_argument("--no-progress", action="store_true", help="no progress bar")
    server = parser.add_argument_group("evaluation servers' results files (written when every image was captioned)")
    server.add_argument("--coco-results", default=None, metavar="NAME", help="also write captions_{val2014|test2014}_"
                        "NAME_results.json (ids from the COCO file names) for the COCO server into --results-dir")
    server.add_argument("--nocaps-results", default=None, metavar="FILE",
                        help="also write the nocaps submission (ids from --nocaps-info) to FILE")
    server.add_argument("--nocaps-info", default=None, metavar="INFO.json",
                        help="nocaps_val_image_info.json / nocaps_test_image_info.json")
    server.add_argument("--results-dir", default=".", metavar="DIR", help="where --coco-results goes (.)")
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
    if bool(args.nocaps_results) != bool(args.nocaps_info):
        raise ConfigError("--nocaps-results and --nocaps-info go together (the info file gives the image ids)")
    checks.output_file("--out", args.out, inputs=[args.checkpoint])
    from fsgr.serving import bulk

    shard = bulk.parse_shard(args.shard) if args.shard else None
    paths = bulk.list_images(args.images)
    if shard is not None:
        paths = [p for p in paths if bulk.shard_of(p, shard[1]) == shard[0]]
    if args.coco_results:  # refuse a bad NAME, non-COCO file names and an unwritable folder before decoding anything
        from fsgr.evaluation.coco_files import check_results_name, coco_results

        check_results_name(args.coco_results)
        coco_results({p: "" for p in paths})
        checks.output_folder("--results-dir", args.results_dir)
    checks.output_file("--nocaps-results", args.nocaps_results, inputs=[args.nocaps_info, *paths])
    captioner = load_captioner(args)
    checks.beam_within_vocab(args.beam, len(captioner.vocab))
    if args.batch_size is None:
        args.batch_size = captioner.cfg.eval.batch_images
    settings = captioner.settings(**decoding_overrides(args))
    if not args.out:
        return _print_captions(bulk.caption_rows(captioner, paths, settings, args.batch_size, args.workers,
                                                 progress=False), args)
    from pathlib import Path

    out = Path(args.out)
    written, failed, skipped = bulk.caption_to_jsonl(captioner, paths, out, settings, args.batch_size, args.workers,
                                                     resume=args.resume, progress=not args.no_progress)
    print(f"wrote {written} row(s) to {out} ({failed} failed, {skipped} already there)", file=sys.stderr)
    if failed:
        print(f"fsgr caption: {failed} image(s) failed", file=sys.stderr)
        return 1
    if args.coco_results or args.nocaps_results:     # from every row of the file, resumed ones included
        rows = bulk.read_rows(out)
        if any("error" in r for r in rows):
            raise ConfigError(f"{out} holds error rows: the servers' files need a caption for every image")
        write_server_files(args, {r["path"]: r["caption"] for r in rows})
    return 0


def _print_captions(rows, args) -> int:
    """The plain mode: `path<TAB>caption` on stdout, bad files on stderr, in input order, as the rows come (the bulk
    mode's decoding: images read in worker processes, a batch at a time in memory)."""
    import sys

    done: dict[str, str] = {}
    failed = 0
    for row in rows:
        if "error" in row:
            failed += 1
            print(f"{_field(row['path'])}: {row['error']}", file=sys.stderr)   # a newline in a path is quoted
            continue
        print(f"{_field(row['path'])}\t{row['caption']}", flush=True)
        done[row["path"]] = row["caption"]
    if failed:
        print(f"fsgr caption: {failed} of {failed + len(done)} image(s) failed", file=sys.stderr)
        return 1
    write_server_files(args, done)
    return 0


def _field(path: str) -> str:
    """The path as is, or JSON-quoted when it would break the line format."""
    import json

    return json.dumps(path, ensure_ascii=False) if any(c in path for c in "\t\n\r") or path.startswith('"') else path


def write_server_files(args, captions: dict[str, str]) -> None:
    """The official servers' results files asked for (fsgr.evaluation.coco_files)."""
    import sys

    from fsgr.evaluation.coco_files import write_server_files as write

    for line in write(captions, args.coco_results, args.results_dir, args.nocaps_results, args.nocaps_info):
        print(line, file=sys.stderr)
