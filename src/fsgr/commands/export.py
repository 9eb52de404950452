"""`fsgr export --checkpoint CKPT --format onnx|safetensors --out DIR` (fsgr.export).

onnx: encoder.onnx (image -> memory), cross.onnx (memory -> cross-attention K/V), decoder_step.onnx (one step with its
cache), config.json, vocab.json, concepts.json; run with `fsgr caption --model DIR IMAGE...` (onnxruntime).
safetensors: config.json, model.safetensors, vocab.json, concepts.json, README.md (a model card with the run's test
scores); load with `fsgr.Captioner.from_pretrained(DIR)`, push to a model hub as it is.
Both: fsgr-manifest.json, every file's SHA-256, checked when the folder is loaded. DIR must be new, empty or an
earlier export: a folder holding anything else is refused before any work (fsgr.core.export_folder).
"""

from __future__ import annotations

from fsgr.logs import get_logger

log = get_logger(__name__)


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `fsgr train`")
    parser.add_argument("--format", required=True, choices=["onnx", "safetensors"])
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder to write: new, empty, or an earlier export (whose files are replaced)")
    parser.add_argument("--license", default="other",
                        help="the model card's license (a model hub's identifier, e.g. mit, cc-by-4.0; safetensors)")


def main(args) -> int:
    import logging
    from pathlib import Path

    from fsgr.commands import checks
    from fsgr.core.export_folder import claim_folder
    from fsgr.inference import Captioner

    out = Path(args.out)
    claim_folder(out)                                   # before any work: never into a folder that holds user files
    checks.output_folder("--out", args.out)
    captioner = Captioner.from_checkpoint(args.checkpoint, device="cpu")
    if args.format == "onnx":
        from fsgr.export.onnx import export_onnx

        logging.getLogger("torch.onnx").setLevel(logging.ERROR)   # the exporter's notes on absent torchvision ops
        files = export_onnx(captioner, out)
    else:
        files = captioner.save_pretrained(out, license=args.license)
    for f in files:
        print(f"{f}\t{f.stat().st_size}")
    log.info(f"wrote {len(files)} files to {out} ({args.format})")
    return 0
