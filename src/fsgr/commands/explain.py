"""`fsgr explain --checkpoint CKPT IMAGE --out map.png`: the patch-to-concept map of the semantic head drawn over the
image (a smooth overlay at image resolution, background patches left as background, each object region labelled with
its concept), a legend of the top concepts and the caption; `--words` adds, per generated word, where the decoder's
cross-attention looked (PIL only, fsgr.serving.maps)."""

from __future__ import annotations

from fsgr.commands.decoding_args import add_decoding_arguments, add_precision_argument, decoding_settings
from fsgr.logs import get_logger

log = get_logger(__name__)

MIN_WIDTH, MAX_WIDTH = 64, 8192


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `fsgr train`")
    parser.add_argument("image", metavar="IMAGE", help="image file")
    parser.add_argument("--out", required=True,
                        help="image to write; the extension picks the format (.png, .jpg, ...)")
    parser.add_argument("--top", type=int, default=8, help="concepts in the legend (by patch count, >= 1)")
    parser.add_argument("--width", type=int, default=448, help=f"width of the drawn image in pixels "
                                                               f"({MIN_WIDTH}..{MAX_WIDTH})")
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help="draw patches whose concept probability (over the whole codebook) is below this as "
                             "background (default 0: only the codebook's background concept)")
    parser.add_argument("--words", action="store_true", help="add one cross-attention map per generated word")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")
    add_precision_argument(parser)
    add_decoding_arguments(parser)


def own_mark(image_format: str) -> dict:
    """Save options that mark the picture as explain's (fsgr/outputs.py recognises it, so a re-run may replace it):
    a PNG text chunk, a JPEG/GIF comment; other formats carry none."""
    from fsgr.outputs import EXPLAIN_MARK

    if image_format == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Software", EXPLAIN_MARK)
        return {"pnginfo": info}
    if image_format in ("JPEG", "GIF"):
        return {"comment": EXPLAIN_MARK}
    return {}


def main(args) -> int:
    from pathlib import Path

    from PIL import Image

    from fsgr.commands import checks
    from fsgr.errors import ConfigError
    from fsgr.files import atomic_write
    from fsgr.inference import Captioner, draw_explanation

    checks.in_range("--width", args.width, MIN_WIDTH, MAX_WIDTH)
    checks.in_range("--top", args.top, 1)
    if not 0.0 <= args.min_confidence <= 1.0:
        raise ConfigError(f"--min-confidence {args.min_confidence}: must be between 0 and 1")
    checks.output_file("--out", args.out, inputs=[args.checkpoint, args.image], verb="explain", kind="explain-image")
    out = Path(args.out)
    image_format = Image.registered_extensions().get(out.suffix.lower())
    if image_format not in Image.SAVE:       # the bytes must be what the name says (no PNG under a .jpg name)
        raise ConfigError(f"--out {out}: cannot tell an image format from the extension {out.suffix!r}; use .png "
                          f"or .jpg")
    captioner = Captioner.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision)
    exp = captioner.explain(args.image, words=args.words, settings=decoding_settings(captioner, args))
    canvas = draw_explanation(exp, top=args.top, width=args.width, min_confidence=args.min_confidence)
    atomic_write(out, lambda f: canvas.save(f, format=image_format, **own_mark(image_format)))
    gh, gw = exp.concept_ids.shape
    print(f"{args.image}\t{exp.caption}")
    log.info(f"wrote {out} ({gh}x{gw} patches, {len(exp.concept_names)} concepts, decoded in {captioner.precision})")
    return 0
