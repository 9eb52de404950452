"""`fsgr codebook --clip CKPT --classes FILE|ram|coco80 --out FILE [--template T | --templates maskclip|FILE]`:
embed a class list with a CLIP text tower, with one prompt template or a prompt ensemble (MaskCLIP's 85, shipped).

The file records the class names, the prompt template(s) and a fingerprint of the CLIP weights; a model refuses a
codebook whose size or fingerprint does not match its own. Heavy imports happen inside main() so `fsgr --help` stays fast.
"""

from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("--clip", required=True, metavar="CKPT",
                        help="CLIP weights: OpenAI TorchScript archive (ViT-B-16.pt), OpenAI-key state dict, or HF CLIPModel")
    parser.add_argument("--classes", required=True, metavar="FILE|ram|coco80",
                        help="class names, one per line; 'ram' (4,585 RAM tags) and 'coco80' name the shipped lists")
    parser.add_argument("--out", required=True, metavar="FILE", help="codebook file to write (.pt)")
    parser.add_argument("--template", default="a photo of a {}.",
                        help="prompt template; '{}' is replaced by the class name (default: %(default)r)")
    parser.add_argument("--templates", default=None, metavar="maskclip|FILE",
                        help="a prompt ensemble instead of --template: 'maskclip' (the 85 templates of MaskCLIP's "
                             "codebooks) or a file with one template per line; each class is the renormalised mean "
                             "of its normalised embeddings")
    parser.add_argument("--batch-size", type=int, default=256, help="texts per text-tower batch (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device for the text tower, e.g. cuda (default: cpu)")


def main(args) -> int:
    import json

    import torch

    from fsgr.errors import ConfigError
    from fsgr.models.clip import load_clip
    from fsgr.models.codebook import DEFAULT_TEMPLATE, build_codebook, read_class_names, read_templates, save_codebook

    from fsgr.commands.checks import output_file

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.templates and args.template != DEFAULT_TEMPLATE:
        raise ConfigError("give --template or --templates, not both")
    output_file("--out", args.out, inputs=[args.clip, args.classes], verb="codebook", kind="codebook")
    names = read_class_names(args.classes)
    templates = read_templates(args.templates) if args.templates else None
    clip = load_clip(args.clip)
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise ConfigError(f"--device {args.device!r}: {exc}") from exc
    clip = clip.to(device)
    codebook = build_codebook(clip, names, template=args.template, batch_size=args.batch_size, templates=templates)
    save_codebook(codebook, args.out)
    print(json.dumps({"out": str(args.out), "classes": codebook.size, "embed_dim": codebook.embed_dim,
                      "template": codebook.template, "templates": len(codebook.templates or []),
                      "clip_fingerprint": codebook.clip_fingerprint}))
    return 0
