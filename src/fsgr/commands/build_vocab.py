"""`fsgr build-vocab`: build a vocabulary JSON from training captions, or import an M2/FSGR `vocab.pkl`.

Built: specials <unk>=0 <pad>=1 <bos>=2 <eos>=3, then words with count >= --min-freq by frequency (ties alphabetical),
words from the PTB tokenizer with the reference's punctuation dropped. `--vocab-splits train,val` reproduces M2's choice
(it built from train + val); the default is train only.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["m2", "karpathy", "coco", "synthetic"],
                        help="annotation layout (not needed with --from-m2-pkl)")
    parser.add_argument("--annotations", help="M2 folder / Karpathy json / COCO captions json(s) (synthetic: root)")
    parser.add_argument("--images", default="", help="image root (only used to resolve paths; not opened)")
    parser.add_argument("--splits", dest="coco_splits", default="",
                        help="coco format: JSON {split: [image ids]} or a Karpathy json")
    parser.add_argument("--vocab-splits", dest="vocab_splits", default="train",
                        help="caption splits to count words in, comma-separated (default train; M2: train,val)")
    parser.add_argument("--min-freq", type=int, default=5, help="keep words seen at least this often (default 5)")
    parser.add_argument("--from-m2-pkl", dest="m2_pkl", default=None, metavar="VOCAB_PKL",
                        help="import an M2/RSTNet/FSGR vocab.pkl instead (read without M2's code)")
    parser.add_argument("--out", required=True, help="output vocabulary JSON")


def main(args) -> int:
    from fsgr.commands.checks import in_range, output_file
    from fsgr.data.vocab import Vocab, vocab_from_records
    from fsgr.errors import DataError

    in_range("--min-freq", args.min_freq, 1)
    output_file("--out", args.out, inputs=[args.m2_pkl, *(args.annotations or "").split(",")], verb="build-vocab",
                kind="vocab-json")

    if args.m2_pkl:
        vocab = Vocab.load(args.m2_pkl)
    else:
        if not args.format or not args.annotations:
            raise DataError("give --format and --annotations (or --from-m2-pkl VOCAB_PKL)")
        from fsgr.data.config import DataConfig
        from fsgr.data.readers import read_records
        from fsgr.data.synthetic import config_from_root

        if args.format == "synthetic":
            cfg = DataConfig(format="synthetic", synthetic=config_from_root(args.annotations))
        else:
            cfg = DataConfig(format=args.format, annotations=args.annotations, images=args.images,
                             splits=args.coco_splits, full_coco="off")
        splits = tuple(s.strip() for s in args.vocab_splits.split(",") if s.strip())
        bad = [s for s in splits if s not in ("train", "val", "test")]
        if bad:
            raise DataError(f"--vocab-splits {args.vocab_splits!r}: {bad[0]!r} is not train/val/test")
        vocab = vocab_from_records(read_records(cfg), splits=splits, min_freq=args.min_freq)
    vocab.save(args.out)
    print(f"{args.out}: {len(vocab):,} words ({vocab.source}); first words: {' '.join(vocab.itos[4:14])}")
    return 0
