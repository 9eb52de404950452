"""`fsgr explain --checkpoint CKPT IMAGE --out map.png`: the patch-to-concept map of the semantic head drawn over the
image (each patch tinted by the concept it is assigned to), a legend of the top concepts and the caption (PIL only)."""

from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `fsgr train`")
    parser.add_argument("image", metavar="IMAGE", help="image file")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--top", type=int, default=8, help="concepts in the legend (by patch count)")
    parser.add_argument("--width", type=int, default=448, help="width of the drawn image in pixels")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")


def main(args) -> int:
    import sys
    from pathlib import Path

    from fsgr.inference import Captioner, draw_explanation

    captioner = Captioner.from_checkpoint(args.checkpoint, device=args.device)
    exp = captioner.explain(args.image)
    canvas = draw_explanation(exp, top=args.top, width=args.width)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, format="PNG")
    gh, gw = exp.concept_ids.shape
    print(f"{args.image}\t{exp.caption}")
    print(f"wrote {out} ({gh}x{gw} patches, {len(exp.concept_names)} concepts)", file=sys.stderr)
    return 0
