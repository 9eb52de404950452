"""`fsgr summary CONFIG [key=value ...]`: parameter counts of a config's model, as JSON.

The architecture is built from the config alone (random CLIP weights, a random codebook of the configured size, a
vocabulary of `model.decoder.vocab_size` words): nothing is read or downloaded, so it works before any download.
"""

from __future__ import annotations

import json

from fsgr.commands.config_args import add_config_arguments


def add_arguments(parser):
    add_config_arguments(parser, "config overrides, e.g. model.decoder.layers=4")
    parser.add_argument("--depth", type=int, default=2, help="module nesting shown in the per-module table (default 2)")


def count_parameters(module, depth: int = 2) -> dict:
    """{'total', 'trainable', 'frozen', 'buffers', 'modules': {dotted name: {total, trainable, frozen}}}.
    The table lists sub-modules down to `depth` levels and the parameters held directly by modules above that level
    (e.g. the prompt embeddings). `buffers` counts saved buffers (the frozen codebook, CLIP's logit scale) apart:
    they are state, not parameters; non-persistent caches (grid tables) are left out."""
    def counts(params) -> dict:
        params = list(params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        total = sum(p.numel() for p in params)
        return {"total": total, "trainable": trainable, "frozen": total - trainable}

    table = {}
    buffers = 0
    for name, sub in module.named_modules():
        level = name.count(".") + 1 if name else 0
        if 1 <= level <= depth:
            row = counts(sub.parameters())
            if row["total"]:
                table[name] = row
        if level < depth:
            for pname, param in sub.named_parameters(recurse=False):
                table[f"{name}.{pname}" if name else pname] = counts([param])
        buffers += sum(b.numel() for bname, b in sub.named_buffers(recurse=False)
                       if bname not in sub._non_persistent_buffers_set)
    out = counts(module.parameters())
    out["buffers"] = buffers
    out["modules"] = table
    return out


def main(args) -> int:
    import torch

    from fsgr.config import load_config
    from fsgr.models.captioner import FSGRCaptioner

    cfg = load_config(args.config, args.overrides)
    torch.manual_seed(0)
    model = FSGRCaptioner(cfg.model, vocab_size=cfg.model.decoder.vocab_size)
    report = {"config": str(args.config), "vocab_size": cfg.model.decoder.vocab_size,
              "codebook_size": cfg.model.semantic.codebook_size}
    report.update(count_parameters(model, depth=args.depth))
    print(json.dumps(report, indent=2))
    return 0
