"""The files every export carries beside its weights: config.json (the resolved config, the decoding settings, the
special ids, the format), vocab.json (the vocabulary's itos) and concepts.json (the codebook's concept names).
Written by both exporters, read by both runners."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from fsgr.errors import CheckpointError


def write_metadata(captioner, out: Path, fmt: str) -> dict:
    """config.json (the resolved config, the decoding settings, the special ids), vocab.json, concepts.json."""
    from dataclasses import asdict

    from fsgr.config import to_dict

    model = captioner.model
    attn = model.decoder.layers[0].self_attention.attn
    meta = {"model_type": "fsgr", "format": fmt, "architectures": ["FSGRCaptioner"],
            "image_size": captioner.image_size, "resize": captioner.resize,
            "vocab_size": len(captioner.vocab.itos), "pad_id": model.pad_id, "bos_id": model.bos_id,
            "eos_id": model.eos_id, "decoder_max_len": model.decoder.max_len,
            "decoder_layers": len(model.decoder.layers),
            "heads": attn.heads, "d_head": attn.d_head, "decoding": asdict(captioner.settings()),
            "config": to_dict(captioner.cfg)}
    (out / "config.json").write_text(json.dumps(meta, indent=2))
    (out / "vocab.json").write_text(json.dumps(captioner.vocab.itos))
    (out / "concepts.json").write_text(json.dumps(captioner.codebook_names or []))
    return meta


def read_metadata(folder: Path, files: Sequence[str], what: str) -> tuple[dict, list[str], list[str]]:
    """(config.json, the vocabulary's itos, the concept names) of an export folder; CheckpointError naming the folder
    when one of `files` (its format's weights or graphs) or the metadata is missing, or it is not an fsgr model."""
    missing = [n for n in (*files, "config.json", "vocab.json") if not (folder / n).is_file()]
    if missing:
        raise CheckpointError(f"{folder}: not {what} (missing {', '.join(missing)})")
    meta = json.loads((folder / "config.json").read_text())
    if meta.get("model_type") != "fsgr" or "config" not in meta:
        raise CheckpointError(f"{folder / 'config.json'}: not an fsgr model config (model_type "
                              f"{meta.get('model_type')!r})")
    names = folder / "concepts.json"
    return (meta, json.loads((folder / "vocab.json").read_text()),
            json.loads(names.read_text()) if names.is_file() else [])
