"""`fsgr export --checkpoint CKPT --format onnx|safetensors --out DIR` (fsgr.export).

onnx: encoder.onnx (image -> memory), cross.onnx (memory -> cross-attention K/V), decoder_step.onnx (one step with its
cache), config.json, vocab.json, concepts.json; run with `fsgr caption --model DIR IMAGE...` (onnxruntime).
safetensors: config.json, model.safetensors, vocab.json, concepts.json, README.md; load with
`fsgr.Captioner.from_pretrained(DIR)`, push to a model hub as it is.
"""

from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `fsgr train`")
    parser.add_argument("--format", required=True, choices=["onnx", "safetensors"])
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write (created; files replaced)")


def main(args) -> int:
    import logging
    import sys
    from pathlib import Path

    from fsgr.inference import Captioner

    captioner = Captioner.from_checkpoint(args.checkpoint, device="cpu")
    out = Path(args.out)
    if args.format == "onnx":
        from fsgr.export.onnx import export_onnx

        logging.getLogger("torch.onnx").setLevel(logging.ERROR)   # the exporter's notes on absent torchvision ops
        files = export_onnx(captioner, out)
    else:
        from fsgr.export.hub import export_safetensors

        files = export_safetensors(captioner, out)
    for f in files:
        print(f"{f}\t{f.stat().st_size}")
    print(f"wrote {len(files)} files to {out} ({args.format})", file=sys.stderr)
    return 0
