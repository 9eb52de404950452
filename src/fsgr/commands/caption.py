"""`fsgr caption --checkpoint CKPT IMAGE...`: one `path<TAB>caption` line per decodable image.

A path holding a tab, a newline or a leading double quote is written as a JSON string ("a\tb.jpg"), so every line
still splits into exactly two fields at its one tab. A file that cannot be used is named on stderr with the reason;
the exit status is 1 if any failed.
"""

from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `fsgr train`")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--beam", type=int, default=None, help="beam size (default: the checkpoint's eval.beam_size)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--coco-results", default=None, metavar="NAME", help="also write captions_{val2014|test2014}_"
                        "NAME_results.json (ids from the COCO file names) for the COCO server into --results-dir")
    parser.add_argument("--nocaps-results", default=None, metavar="FILE",
                        help="also write the nocaps submission (ids from --nocaps-info) to FILE")
    parser.add_argument("--nocaps-info", default=None, metavar="INFO.json",
                        help="nocaps_val_image_info.json / nocaps_test_image_info.json")
    parser.add_argument("--results-dir", default=".", metavar="DIR", help="where --coco-results goes (.)")


def main(args) -> int:
    import sys

    import torch

    from fsgr.commands import checks
    from fsgr.errors import DataError
    from fsgr.inference import Captioner

    checks.in_range("--beam", args.beam, 1)
    checks.in_range("--batch-size", args.batch_size, 1)
    if bool(args.nocaps_results) != bool(args.nocaps_info):
        from fsgr.errors import ConfigError

        raise ConfigError("--nocaps-results and --nocaps-info go together (the info file gives the image ids)")
    if args.coco_results:  # refuse non-COCO names and an unwritable folder before decoding anything
        from fsgr.evaluation.server import coco_results

        coco_results({p: "" for p in args.images})
        checks.output_folder("--results-dir", args.results_dir)
    checks.output_file("--nocaps-results", args.nocaps_results, inputs=[args.nocaps_info, *args.images])
    captioner = Captioner.from_checkpoint(args.checkpoint, device=args.device)
    checks.beam_within_vocab(args.beam, len(captioner.vocab))
    done: dict[str, str] = {}
    good: list[tuple[str, torch.Tensor]] = []
    failed = 0
    for path in args.images:
        try:
            good.append((path, captioner.preprocess(path)))
        except DataError as exc:
            failed += 1
            msg = str(exc)
            print(msg if msg.startswith(path) else f"{path}: {msg}", file=sys.stderr)
    for start in range(0, len(good), args.batch_size):
        chunk = good[start:start + args.batch_size]
        captions = captioner.caption_tensors(torch.stack([t for _, t in chunk]), beam_size=args.beam)
        for (path, _), caption in zip(chunk, captions):
            print(f"{_field(path)}\t{caption}", flush=True)
            done[path] = caption
    if not failed:
        write_server_files(args, done)
    if failed:
        print(f"fsgr caption: {failed} of {len(args.images)} image(s) failed", file=sys.stderr)
        return 1
    return 0


def _field(path: str) -> str:
    """The path as is, or JSON-quoted when it would break the line format."""
    import json

    return json.dumps(path, ensure_ascii=False) if any(c in path for c in "\t\n\r") or path.startswith('"') else path


def write_server_files(args, captions: dict[str, str]) -> None:
    """The official servers' results files asked for (fsgr.evaluation.server)."""
    import sys

    from fsgr.evaluation import server

    if args.coco_results:
        split, rows = server.coco_results(captions)
        path = server.write_results(server.coco_results_path(args.results_dir, split, args.coco_results), rows)
        print(f"wrote {path} ({len(rows)} images, COCO {split} server)", file=sys.stderr)
    if args.nocaps_results:
        rows = server.nocaps_results(captions, args.nocaps_info)
        path = server.write_results(args.nocaps_results, rows)
        print(f"wrote {path} ({len(rows)} images, nocaps server)", file=sys.stderr)
