"""`fsgr check-data`: validate annotations, images and vocabulary before training.

Checks: every image file exists and decodes (parallel process pool, progress bar); every caption is non-empty and
within max_len; token ids are inside the vocabulary; splits do not overlap; counts match (ids listed = captions
read; the Karpathy COCO split is 113,287/5,000/5,000 when the file is full COCO, or --expect-counts). Exit 0 only when
all is well; otherwise every problem is listed (kind, file, image id, annotation id, reason), then a summary.
"""

from __future__ import annotations

import argparse

# light imports only: `fsgr --help` imports every command module


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=["m2", "karpathy", "coco", "synthetic"],
                        help="annotation layout: m2 folder, Karpathy json, COCO captions json (+ --splits)")
    parser.add_argument("--annotations", required=True,
                        help="M2 folder / Karpathy json / COCO captions json(s), comma-separated (synthetic: root)")
    parser.add_argument("--images", default="", help="image root (COCO/M2: holds train2014/ and val2014/)")
    parser.add_argument("--splits", default="", help="coco format: JSON {split: [image ids]}, a Karpathy json, "
                                                     "or one split name for every image")
    parser.add_argument("--vocab", default=None, help="vocabulary JSON or M2 vocab.pkl: check token ids and OOV")
    parser.add_argument("--max-len", type=int, default=54, help="max tokens incl. <bos>/<eos> (default 54)")
    parser.add_argument("--length-policy", choices=["truncate", "refuse"], default="truncate",
                        help="over-long captions: truncate (counted, not a problem) or refuse (a problem)")
    parser.add_argument("--full-coco", choices=["auto", "require", "off"], default="auto",
                        help="check the Karpathy COCO split counts 113,287/5,000/5,000 (auto: when full COCO)")
    parser.add_argument("--expect-counts", default=None, metavar="TRAIN,VAL,TEST",
                        help="required image counts per split, e.g. 113287,5000,5000")
    parser.add_argument("--workers", type=int, default=0, help="decode processes (default: all CPUs)")
    parser.add_argument("--no-images", action="store_true", help="skip the image existence/decode checks")
    parser.add_argument("--max-list", type=int, default=0, help="list at most N problems per kind (0: all)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the problems and counts as JSON")


def main(args) -> int:
    import json
    import os
    import sys

    from fsgr.commands.checks import in_range, output_file
    from fsgr.data.check import check_dataset
    from fsgr.data.config import DataConfig
    from fsgr.data.synthetic import config_from_root
    from fsgr.errors import DataError
    from fsgr.files import atomic_write_text

    in_range("--max-len", args.max_len, 3)        # <bos>, one word, <eos>
    in_range("--workers", args.workers, 0)
    in_range("--max-list", args.max_list, 0)
    output_file("--json", args.json, inputs=[*args.annotations.split(","), args.splits, args.vocab], verb="check-data",
                kind="check-data-json")

    if args.format == "synthetic":
        cfg = DataConfig(format="synthetic", synthetic=config_from_root(args.annotations))
    else:
        if not args.images and not args.no_images:
            raise DataError("--images is required (the image root), or pass --no-images")
        cfg = DataConfig(format=args.format, annotations=args.annotations, images=args.images, splits=args.splits,
                         full_coco=args.full_coco, max_len=args.max_len, length_policy=args.length_policy)
    expect = None
    if args.expect_counts:
        parts = args.expect_counts.split(",")
        if len(parts) != 3 or not all(x.strip().isdigit() for x in parts):
            raise DataError(f"--expect-counts {args.expect_counts!r}: expected TRAIN,VAL,TEST integers")
        expect = tuple(int(x) for x in parts)
    workers = args.workers if args.workers > 0 else (os.cpu_count() or 1)
    report = check_dataset(cfg, vocab_path=args.vocab, check_images=not args.no_images, workers=workers,
                           expect_counts=expect, progress=not getattr(args, "quiet", False))   # --quiet: no progress bar

    by_kind: dict[str, list] = {}
    for p in report.problems:
        by_kind.setdefault(p.kind, []).append(p)
    for kind, items in by_kind.items():
        shown = items if args.max_list <= 0 else items[:args.max_list]
        for p in shown:
            print(f"PROBLEM {p.line()}")
        if len(shown) < len(items):
            print(f"PROBLEM {kind}: ... and {len(items) - len(shown)} more")
    for line in report.summary_lines():
        print(line)
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=1))
    sys.stdout.flush()
    return 0 if report.ok else 1
