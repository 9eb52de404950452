"""`fsgr caption --checkpoint CKPT IMAGE...`: one `path<TAB>caption` line per decodable image.

A path holding a tab, a newline or a leading double quote is written as a JSON string ("a\tb.jpg"), so every line
still splits into exactly two fields at its one tab. A file that cannot be used is named on stderr with the reason;
the exit status is 1 if any failed.

Bulk mode (`--out captions.jsonl`, fsgr.serving.bulk): folders are walked, images decoded in worker processes, one JSON
line per image (`path`, `caption`, `logprob`, `length`, or `path`, `error`) under fsgr's header row, a progress bar
with images/s; `--resume` makes a cut-off or partly failed file complete, `--shard I/N` takes one deterministic part
of the work, `--files-from FILE|-` lists images, `--merge DIR --out FILE` joins shard/part files. Under torchrun each
rank captions every N-th image into `OUT.parts/` and rank 0 merges them into `--out` (fsgr.serving.bulk_torchrun).
`--engine ray --out DIR`
(fsgr.serving.bulk_ray) runs the job on a Ray cluster.
`--coco-results NAME` / `--nocaps-results FILE --nocaps-info INFO` write the evaluation servers' files
(fsgr.evaluation.coco_files); in bulk mode from every row of `--out`, resumed ones included.
`--model DIR` runs an exported model (`fsgr export`: ONNX on onnxruntime, or a safetensors folder) instead of a
checkpoint.
"""

from __future__ import annotations

from fsgr.commands.decoding_args import (add_decoding_arguments, add_precision_argument, decoding_overrides,
                                         decoding_settings, flag_refusal)
from fsgr.logs import get_logger

log = get_logger(__name__)


def add_arguments(parser):
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="a checkpoint written by `fsgr train`")
    source.add_argument("--model", metavar="DIR", help="a folder written by `fsgr export` (onnx or safetensors)")
    parser.add_argument("images", nargs="*", metavar="PATH_OR_DIR", help="image files (JPEG, PNG, ...) or folders")
    parser.add_argument("--files-from", default=None, metavar="FILE",
                        help="also caption the paths listed in FILE, one per line (-: stdin)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images decoded together (default: the checkpoint's eval.batch_images)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (checkpoints and safetensors)")
    add_precision_argument(parser)
    parser.add_argument("--workers", type=int, default=2, help="image-decoding worker processes (0: in the main one)")
    bulk = parser.add_argument_group("bulk captioning")
    bulk.add_argument("--out", default=None, metavar="FILE.jsonl", help="write one JSON line per image here")
    bulk.add_argument("--resume", action="store_true",
                      help="complete --out: skip the images already captioned, retry the failed ones")
    bulk.add_argument("--other-checkpoint", action="store_true",
                      help="let --resume add captions of another checkpoint than the one that began --out")
    bulk.add_argument("--shard", default=None, metavar="I/N", help="caption only shard I of N (0 <= I < N)")
    bulk.add_argument("--merge", default=None, metavar="DIR",
                      help="join the shard/part files (*.jsonl) in DIR into --out, checking every image is there once")
    bulk.add_argument("--engine", choices=("local", "ray"), default="local",
                      help="ray: caption on a Ray cluster (RAY_ADDRESS, else a local one) into part files in --out DIR "
                           "(pip install fsgr[ray])")
    bulk.add_argument("--part-size", type=int, default=1000, help="--engine ray: images per part file (1000)")
    bulk.add_argument("--ray-actors", type=int, default=None,
                      help="--engine ray: Captioners (default: one per GPU of the cluster, else 2 on CPUs)")
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


def load_captioner(args, device=None):
    """The PyTorch Captioner of --checkpoint, or the model of an exported --model folder, on `device` (default:
    --device)."""
    device = device or args.device
    if args.checkpoint:
        from fsgr.inference import Captioner

        return Captioner.from_checkpoint(args.checkpoint, device=device, precision=args.precision)
    from fsgr.export import load_exported

    return load_exported(args.model, device=device, precision=args.precision)


def model_sha256(args) -> str:
    """The identity of --checkpoint (its file's SHA-256) or of an exported --model folder (SHA-256 over each file's
    name and SHA-256), recorded in bulk outputs."""
    from pathlib import Path

    from fsgr.core.checkpoint import checkpoint_sha256
    from fsgr.core.export_folder import folder_sha256

    return checkpoint_sha256(args.checkpoint) if args.checkpoint else folder_sha256(Path(args.model))


def main(args) -> int:
    from pathlib import Path

    from fsgr.commands import checks
    from fsgr.core.distributed import launched_world_size
    from fsgr.errors import ConfigError
    from fsgr.serving import bulk

    checks.in_range("--batch-size", args.batch_size, 1)
    checks.in_range("--workers", args.workers, 0)
    checks.in_range("--part-size", args.part_size, 1)
    checks.in_range("--ray-actors", args.ray_actors, 1)
    if args.resume and not args.out:
        raise ConfigError("--resume continues an --out file: give --out")
    if args.merge:
        return _merge(args)
    if not (args.checkpoint or args.model):
        raise ConfigError("give --checkpoint CKPT or --model DIR (or --merge DIR --out FILE)")
    if bool(args.nocaps_results) != bool(args.nocaps_info):
        raise ConfigError("--nocaps-results and --nocaps-info go together (the info file gives the image ids)")
    sources = [*args.images, *(bulk.read_listing(args.files_from) if args.files_from else [])]
    if not sources:
        raise ConfigError("no images: give image files or folders, or --files-from FILE")
    if args.engine == "ray":
        return _ray(args, sources)
    checks.output_file("--out", args.out, inputs=[args.checkpoint], verb="caption", kind=None)  # bulk: header row
    world = launched_world_size()
    if args.out and world > 1 and args.shard:
        raise ConfigError("--shard under torchrun: each rank already takes its own part; drop --shard")
    shard = bulk.parse_shard(args.shard) if args.shard else None
    paths = bulk.list_images(sources, shard)
    check_server_files(args, paths)
    if not args.out:
        captioner, settings, batch_size = _captioner(args)
        return _print_captions(bulk.caption_rows(captioner, paths, settings, batch_size, args.workers,
                                                 progress=False), args)
    keys = [bulk.path_key(p) for p in paths]
    sha = model_sha256(args)
    meta = {"checkpoint_sha256": sha, "sources_sha256": bulk.sources_sha256(sources)}
    out = Path(args.out)
    if world > 1:
        from fsgr.serving.bulk_torchrun import caption_under_torchrun

        outcome = caption_under_torchrun(lambda device: _captioner(args, device), keys, out, meta, device=args.device,
                                         workers=args.workers, resume=args.resume,
                                         other_checkpoint=args.other_checkpoint, progress=not args.no_progress)
        if not outcome.is_main:
            return 1 if outcome.failed else 0
        return _finish(args, out, outcome.failed)
    bulk.check_output(out, args.resume, sha, args.other_checkpoint)        # refused before the model loads
    captioner, settings, batch_size = _captioner(args)
    counts = bulk.caption_to_jsonl(captioner, keys, out, settings, batch_size, args.workers, args.resume,
                                   not args.no_progress, bulk.header(settings=settings, part=shard, inputs=len(keys),
                                                                     precision=captioner.precision, **meta),
                                   args.other_checkpoint)
    log.info(counts.describe(out))
    return _finish(args, out, counts.failed)


def _captioner(args, device=None):
    """The captioner (on `device`, default --device), its decoding settings (the flags checked against its model) and
    the batch size (--batch-size, default its eval.batch_images)."""
    captioner = load_captioner(args, device)
    settings = decoding_settings(captioner, args)
    batch_size = captioner.cfg.eval.batch_images if args.batch_size is None else args.batch_size
    return captioner, settings, batch_size


def _finish(args, out, failed: int) -> int:
    """Exit status 1 when images failed; else the servers' files from every row of `out`, resumed ones included."""
    from fsgr.errors import WorkFailed
    from fsgr.serving import bulk

    if failed:
        log.warning(f"fsgr caption: {failed} image(s) failed")
        return 1
    if args.coco_results or args.nocaps_results:
        rows = bulk.read_caption_file(out).rows
        bad = [p for p, r in rows.items() if "error" in r]
        if bad:
            raise WorkFailed(f"{out} holds {len(bad)} error row(s) (e.g. {bad[0]}): the servers' files need a "
                              f"caption for every image; --resume retries them")
        write_server_files(args, {p: r["caption"] for p, r in rows.items()})
    return 0


def _merge(args) -> int:
    """`--merge DIR --out FILE`: the shard/part files in DIR joined into FILE (fsgr.serving.bulk.merge_parts)."""
    from pathlib import Path

    from fsgr.commands import checks
    from fsgr.errors import ConfigError
    from fsgr.serving import bulk

    if not args.out:
        raise ConfigError("--merge DIR needs --out FILE (the merged caption file)")
    if args.images or args.files_from or args.checkpoint or args.model:
        raise ConfigError("--merge joins files already written: give no images, --checkpoint or --model")
    folder, out = Path(args.merge), Path(args.out)
    if not folder.is_dir():
        raise ConfigError(f"--merge {folder}: not a folder")
    checks.output_file("--out", args.out, verb="caption", kind=None)   # merge_parts: header row
    parts = sorted(p for p in folder.glob("*.jsonl") if p.resolve() != out.resolve())
    merged = bulk.merge_parts(parts, out, replace=args.resume)
    check_server_files(args, list(merged.rows))    # their paths are known once the parts are read
    log.info(f"merged {len(parts)} part(s), {len(merged.rows)} image(s), into {out}")
    return _finish(args, out, len(merged.errors))


def _ray(args, sources: list[str]) -> int:
    """`--engine ray --checkpoint CKPT --out DIR SOURCES...` (fsgr.serving.bulk_ray)."""
    from pathlib import Path

    from fsgr.errors import ConfigError
    from fsgr.serving import bulk

    if not (args.checkpoint and args.out):
        raise ConfigError("--engine ray needs --checkpoint CKPT and --out DIR (the part files go there)")
    if args.shard or args.coco_results or args.nocaps_results:
        raise ConfigError("--engine ray: --shard, --coco-results and --nocaps-results are for one --out file; "
                          "merge the parts (fsgr caption --merge DIR --out FILE) and use them there")
    from fsgr.models.decoding import DecodingValueError
    from fsgr.serving.bulk_ray import caption_with_ray

    try:
        counts = caption_with_ray(args.checkpoint, bulk.list_images(sources), Path(args.out),
                                  decoding=decoding_overrides(args), batch_size=args.batch_size,
                                  part_size=args.part_size, actors=args.ray_actors, resume=args.resume,
                                  other_checkpoint=args.other_checkpoint, sources=sources, device=args.device,
                                  workers=args.workers, progress=not args.no_progress, precision=args.precision)
    except DecodingValueError as exc:     # refused before the job started (fsgr.serving.bulk_ray.check_decoding)
        raise flag_refusal(exc) from None
    log.info(counts.describe(args.out))
    if counts.failed:
        log.warning(f"fsgr caption: {counts.failed} image(s) failed")
        return 1
    return 0


def _print_captions(rows, args) -> int:
    """The plain mode: `path<TAB>caption` on stdout, bad files on stderr, in input order, as the rows come (the bulk
    mode's decoding: images read in worker processes, a batch at a time in memory)."""

    done: dict[str, str] = {}
    failed = 0
    for row in rows:
        if "error" in row:
            failed += 1
            log.warning(f"{_field(row['path'])}: {row['error']}")   # a newline in a path is quoted
            continue
        for caption in row.get("captions", [row]):     # num_return_sequences > 1: a line for each
            print(f"{_field(row['path'])}\t{caption['caption']}", flush=True)
        done[row["path"]] = row["caption"]
    if failed:
        log.warning(f"fsgr caption: {failed} of {failed + len(done)} image(s) failed")
        return 1
    write_server_files(args, done)
    return 0


def _field(path: str) -> str:
    """The path as is, or JSON-quoted when it would break the line format."""
    import json

    return json.dumps(path, ensure_ascii=False) if any(c in path for c in "\t\n\r") or path.startswith('"') else path


def check_server_files(args, paths: list[str]) -> None:
    """Refuse a bad --coco-results NAME, non-COCO file names, an unwritable folder and a results file fsgr did not
    write, before decoding anything."""
    from fsgr.commands import checks

    if args.coco_results:
        from fsgr.evaluation.coco_files import check_results_name, coco_results, coco_results_path

        check_results_name(args.coco_results)
        split, _ = coco_results({p: "" for p in paths})
        checks.output_folder("--results-dir", args.results_dir)
        checks.output_file("--coco-results", str(coco_results_path(args.results_dir, split, args.coco_results)),
                           verb="caption", kind="server-results")
    checks.output_file("--nocaps-results", args.nocaps_results, inputs=[args.nocaps_info, *paths], verb="caption",
                       kind="server-results")


def write_server_files(args, captions: dict[str, str]) -> None:
    """The official servers' results files asked for (fsgr.evaluation.coco_files)."""

    from fsgr.evaluation.coco_files import write_server_files as write

    for line in write(captions, args.coco_results, args.results_dir, args.nocaps_results, args.nocaps_info):
        log.info(line)
