"""One factory for the captioner: from a config (training, `fsgr demo`) or from a checkpoint (serving, evaluation).

As open_clip's factory: the architecture is data (`cfg.model`), sizes come from the vocabulary handed in, and a
checkpoint's state must match its own config exactly (strict load, both sides named on a mismatch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from typing import Optional

from fsgr.config import Config, from_dict
from fsgr.core.assets import resolve_clip, resolve_codebook
from fsgr.core.checkpoint import load_checkpoint
from fsgr.data.config import resolved
from fsgr.data.vocab import Vocab
from fsgr.errors import CheckpointError, ConfigError
from fsgr.models.captioner import FSGRCaptioner
from fsgr.models.clip import load_clip, weights_fingerprint
from fsgr.models.codebook import load_codebook, permute_object_rows
from fsgr.models.config import ClipConfig


def codebook_identity(codebook) -> tuple[Optional[list[str]], Optional[str]]:
    """(names, fingerprint) of a loaded codebook: sha256 of its names and fp32 embeddings (16 hex digits), so another
    class list or another CLIP's embeddings are told apart on resume. None, None for the random test codebook."""
    if codebook is None:
        return None, None
    names = getattr(codebook, "names", None)
    emb = getattr(codebook, "embeddings", codebook)
    h = hashlib.sha256(emb.detach().float().cpu().contiguous().numpy().tobytes())
    h.update("\n".join(names or []).encode())
    return (list(names) if names is not None else None), h.hexdigest()[:16]


def check_clip_sizes(stated: ClipConfig, weights: ClipConfig) -> None:
    """The config states the sizes of the CLIP it names. A checkpoint is rebuilt from its config alone (no CLIP file
    read), so a size the weights do not have would train one model and load another: refused, naming both values."""
    for f in dataclasses.fields(ClipConfig):
        if f.name != "path" and getattr(stated, f.name) != getattr(weights, f.name):
            raise ConfigError(f"model.clip.{f.name}={getattr(stated, f.name)}: the CLIP at {stated.path} has "
                              f"{f.name}={getattr(weights, f.name)} (set model.clip.{f.name}="
                              f"{getattr(weights, f.name)}; every model.clip size must be the weights')")


def build_model(cfg: Config, vocab, load_weights: bool = True):
    """The captioner of `cfg.model` with len(vocab) words. load_weights=False skips the CLIP and codebook files
    (the caller loads a checkpoint's full state next). Returns (model, codebook names, codebook fingerprint)."""
    mcfg = cfg.model
    clip = codebook = None
    if load_weights and mcfg.clip.path:
        clip = load_clip(resolve_clip(mcfg.clip.path))   # 'demo' = the shipped tiny CLIP
        check_clip_sizes(mcfg.clip, clip.cfg)
    if load_weights and mcfg.semantic.enabled and mcfg.semantic.codebook:
        # the codebook must come from this CLIP's text tower
        expected_fp = weights_fingerprint(clip) if clip is not None else None
        codebook = load_codebook(resolve_codebook(mcfg.semantic.codebook), expected_size=mcfg.semantic.codebook_size,
                                 expected_fingerprint=expected_fp)
    # the ablation's "permuted": patches labelled with the true rows, S built from permuted ones
    grid_codebook = (permute_object_rows(codebook, mcfg.semantic.permute_codebook)
                     if codebook is not None and mcfg.semantic.permute_codebook is not None else None)
    model = FSGRCaptioner(mcfg, vocab_size=len(vocab), clip=clip, codebook=codebook, pad_id=vocab.pad_id,
                          bos_id=vocab.bos_id, eos_id=vocab.eos_id, grid_codebook=grid_codebook)
    names, fingerprint = codebook_identity(codebook)
    return model, names, fingerprint


@dataclass
class LoadedModel:
    model: FSGRCaptioner              # on the CPU, in the mode torch left it (train): callers choose eval/device
    vocab: Vocab
    cfg: Config
    codebook_names: Optional[list[str]]


def model_from_state(config: dict, itos: list[str], state: dict, codebook_names=None,
                     source: str = "") -> LoadedModel:
    """A saved config, vocabulary and model state -> the model. It is built from the config without reading CLIP or
    codebook files, then the full state (CLIP weights and codebook buffer included) is loaded; the config's data
    paths are resolved against run.base_dir, so the run's data is found from any directory."""
    cfg = from_dict(Config, config)
    cfg.data = resolved(cfg.data, cfg.run.base_dir)
    vocab = Vocab(itos, source=source)
    model, _, _ = build_model(cfg, vocab, load_weights=False)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{source}: model state does not match its own config ({len(missing)} missing keys "
                              f"e.g. {missing[:2]}, {len(unexpected)} unexpected e.g. {unexpected[:2]})")
    return LoadedModel(model=model, vocab=vocab, cfg=cfg, codebook_names=codebook_names or None)


def load_model(path: str | os.PathLike) -> LoadedModel:
    """A checkpoint -> its model, vocabulary and config (`model_from_state`)."""
    ckpt = load_checkpoint(path)
    return model_from_state(ckpt["config"], ckpt["vocab_itos"], ckpt["model"], ckpt.get("codebook_names"),
                            source=str(path))
