"""The one model factory: from a config (packaged assets resolved by name) and from a checkpoint (strict)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from fsgr.config import Config, load_config, to_dict
from fsgr.core import checkpoint as ck
from fsgr.core.assets import CLIP_FILE, CODEBOOK_FILE, resolve_clip, resolve_codebook
from fsgr.core.build import build_model, load_model
from fsgr.data.vocab import Vocab
from fsgr.errors import CheckpointError, ConfigError

ITOS = ["<unk>", "<pad>", "<bos>", "<eos>", "a", "red", "circle"]


def _tiny_config() -> Config:
    cfg = load_config(None, [
        "model.clip.embed_dim=32", "model.clip.image_resolution=32", "model.clip.vision_layers=1",
        "model.clip.vision_width=64", "model.clip.vision_patch_size=16", "model.clip.vision_heads=2",
        "model.semantic.codebook_size=5", "model.semantic.topk=2", "model.backbone.prompts.num_tokens=0",
        "model.backbone.adapters.first_block=0", "model.backbone.adapters.last_block=0",
        "model.encoder.layers=1", "model.encoder.d_model=32", "model.encoder.heads=2", "model.encoder.d_ff=32",
        "model.decoder.layers=1", "model.decoder.d_model=32", "model.decoder.heads=2", "model.decoder.d_ff=32"])
    assert cfg.model.clip.path is None and cfg.model.semantic.codebook is None   # random weights: nothing read
    return cfg


def _save(tmp_path, cfg, model, name="m.pt"):
    path = tmp_path / name
    ck.atomic_save({"format_version": ck.FORMAT_VERSION, "config": to_dict(cfg), "vocab_itos": ITOS,
                    "codebook_names": None, "model": model.state_dict()}, path)
    return path


def test_demo_names_resolve_to_packaged_files_and_paths_pass_through():
    assert resolve_clip("demo").endswith(CLIP_FILE) and resolve_codebook("demo").endswith(CODEBOOK_FILE)
    assert resolve_clip("/weights/ViT-B-16.pt") == "/weights/ViT-B-16.pt" and resolve_codebook(None) is None


def test_build_sizes_the_model_from_the_vocabulary():
    torch.manual_seed(0)
    model, names, fingerprint = build_model(_tiny_config(), Vocab(ITOS))
    assert model.decoder.vocab_size == len(ITOS) and (names, fingerprint) == (None, None)


def test_load_model_round_trips_a_checkpoint(tmp_path):
    cfg = _tiny_config()
    torch.manual_seed(0)
    model, _, _ = build_model(cfg, Vocab(ITOS))
    loaded = load_model(_save(tmp_path, cfg, model))
    assert loaded.vocab.itos == ITOS and loaded.cfg == cfg
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k


def test_load_model_refuses_a_state_that_does_not_match_its_config(tmp_path):
    cfg = _tiny_config()
    model, _, _ = build_model(cfg, Vocab(ITOS))
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, decoder=dataclasses.replace(
        cfg.model.decoder, layers=2)))
    with pytest.raises(CheckpointError, match=r"m\.pt: model state does not match its own config"):
        load_model(_save(tmp_path, other, model))


@pytest.mark.parametrize("override,needle", [
    ("model.clip.vision_layers=4", "model.clip.vision_layers=4: the CLIP at demo has vision_layers=6"),
    ("model.clip.vision_width=256", "model.clip.vision_width=256: the CLIP at demo has vision_width=192"),
    ("model.clip.vision_heads=4", "model.clip.vision_heads=4: the CLIP at demo has vision_heads=3"),
])
def test_a_config_that_disagrees_with_its_clip_weights_is_refused_naming_both_values(tmp_path, override, needle):
    # issue 24 item 3: `vision_layers=4` for the demo CLIP (6 blocks) trained, then its checkpoint could not load
    cfg = load_config("demo", [override])
    with pytest.raises(ConfigError, match=re.escape(needle)):
        build_model(cfg, Vocab(ITOS))


def test_the_run_config_holds_the_weights_sizes_and_its_checkpoint_loads_the_same_model(tmp_path):
    cfg = load_config("demo", ["model.semantic.codebook=null", "model.semantic.codebook_size=8"])
    torch.manual_seed(0)
    model, _, _ = build_model(cfg, Vocab(ITOS))
    weights = model.backbone.visual
    assert (cfg.model.clip.vision_layers, cfg.model.clip.vision_width) == (len(weights.transformer.resblocks),
                                                                           weights.conv1.out_channels)
    loaded = load_model(_save(tmp_path, cfg, model))
    assert set(loaded.model.state_dict()) == set(model.state_dict())
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in model.state_dict().items())


def test_permuted_codebook_labels_with_the_true_rows_and_round_trips(tmp_path):
    """model.semantic.permute_codebook: the head keeps the demo codebook as it is (labels) and builds S from the
    permuted rows; a checkpoint of it reloads (load_weights=False builds a placeholder the state fills)."""
    from fsgr.models.codebook import load_codebook, permute_object_rows

    cfg = load_config("demo", ["model.semantic.permute_codebook=0"])
    model, _, _ = build_model(cfg, Vocab(ITOS))
    book = load_codebook(resolve_codebook("demo"))
    assert torch.equal(model.semantic.codebook, book.embeddings.float())
    assert torch.equal(model.semantic.grid_codebook, permute_object_rows(book, 0).embeddings.float())
    assert not torch.equal(model.semantic.grid_codebook, model.semantic.codebook)
    loaded = load_model(_save(tmp_path, cfg, model))
    assert torch.equal(loaded.model.semantic.grid_codebook, model.semantic.grid_codebook)
    plain, _, _ = build_model(load_config("demo"), Vocab(ITOS))
    assert plain.semantic.grid_codebook is None
