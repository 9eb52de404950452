"""Our CLIP against OpenAI's own model code: same weights (TorchScript archive or state dict) -> same features."""

import copy
import warnings

import pytest
import torch

from fsgr.errors import CheckpointError
from fsgr.models.clip import (CLIP, build_clip, clip_config_from_state_dict, load_clip, save_clip,
                              weights_fingerprint)
from fsgr.models.config import ClipConfig

from openai_reference import SIZES, openai_tokenize, random_openai_clip



@pytest.fixture(scope="module")
def reference():
    return random_openai_clip()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, 32, 32, generator=g)
    tokens = openai_tokenize(["a photo of a dog.", "two cats on a red sofa", "x"])
    return images, tokens


@pytest.fixture(scope="module")
def torchscript_archive(reference, inputs, tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "ViT-tiny.pt"
    images, tokens = inputs
    # OpenAI's archives are traced modules whose state dicts also carry three scalars (build_model deletes them)
    reference = copy.deepcopy(reference)
    for name, value in (("input_resolution", 32), ("context_length", 77), ("vocab_size", 49408)):
        reference.__dict__.pop(name, None)  # OpenAI's CLIP keeps context_length/vocab_size as plain attributes
        reference.register_buffer(name, torch.tensor(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and TorchScript deprecation chatter
        traced = torch.jit.trace(reference, (images, tokens), check_trace=False)
        torch.jit.save(traced, str(path))
    return path


def _assert_same_features(ours: CLIP, reference, inputs):
    images, tokens = inputs
    with torch.no_grad():
        assert torch.allclose(ours.encode_image(images), reference.encode_image(images), atol=1e-4, rtol=0)
        assert torch.allclose(ours.encode_text(tokens), reference.encode_text(tokens), atol=1e-4, rtol=0)
        ref_logits, _ = reference(images, tokens)
        our_logits, _ = ours(images, tokens)
        assert torch.allclose(our_logits, ref_logits, atol=1e-3, rtol=0)


def test_load_torchscript_archive_matches_openai(torchscript_archive, reference, inputs):
    ours = load_clip(torchscript_archive)
    assert isinstance(ours, CLIP) and not ours.training
    assert ours.visual.grid_size == 4 and ours.embed_dim == 48
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in ours.parameters())
    _assert_same_features(ours, reference, inputs)


def test_load_fp16_state_dict_keeps_fp32_values(reference, inputs, tmp_path):
    # OpenAI's released archives hold fp16 weights: the values come back as fp32 copies of the fp16 numbers
    sd = {k: v.half() if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    path = tmp_path / "fp16.pt"
    torch.save(sd, path)
    ours = load_clip(path)
    assert ours.visual.proj.dtype == torch.float32
    assert torch.equal(ours.visual.proj, sd["visual.proj"].float())


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module"])
def test_load_plain_state_dict_matches_openai(reference, inputs, tmp_path, wrap):
    sd = reference.state_dict()
    sd = {"plain": sd, "state_dict": {"state_dict": sd, "epoch": 3}, "model": {"model": sd},
          "module": {f"module.{k}": v for k, v in sd.items()}}[wrap]
    path = tmp_path / "clip.pt"
    torch.save(sd, path)
    _assert_same_features(load_clip(path), reference, inputs)


def test_config_inferred_from_weights(reference):
    cfg = clip_config_from_state_dict(reference.state_dict())
    expected = dict(SIZES, vision_heads=2)
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_missing_unexpected_and_misshaped_keys_are_named(reference, tmp_path):
    sd = dict(reference.state_dict())
    del sd["visual.ln_post.weight"]
    sd["visual.extra.weight"] = torch.zeros(2)
    sd["transformer.resblocks.1.mlp.c_fc.bias"] = torch.zeros(7)
    path = tmp_path / "broken.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        load_clip(path)
    msg = str(err.value)
    assert str(path) in msg and "visual.ln_post.weight" in msg and "visual.extra.weight" in msg
    assert "transformer.resblocks.1.mlp.c_fc.bias file (7,) vs model (512,)" in msg


def test_not_a_clip_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="no 'visual.proj'"):
        load_clip(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_clip(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_clip(tmp_path / "absent.pt")


def test_save_clip_round_trip_keeps_head_counts(tmp_path):
    # 3 vision heads of width 96 is not OpenAI's width // 64 convention: only the saved config can tell
    cfg = ClipConfig(**dict(SIZES, vision_width=96, vision_heads=3, transformer_heads=4, vocab_size=500))
    torch.manual_seed(0)
    model = build_clip(cfg).eval()
    path = tmp_path / "tiny.pt"
    save_clip(model, path)
    loaded = load_clip(path)
    assert loaded.cfg.vision_heads == 3 and loaded.cfg.transformer_heads == 4
    images = torch.randn(2, 3, 32, 32)
    tokens = torch.tensor([[1, 5, 499, 0], [1, 499, 0, 0]])
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), model.encode_image(images))
        assert torch.equal(loaded.encode_text(tokens), model.encode_text(tokens))


def test_huggingface_layout_is_converted(reference, inputs, tmp_path):
    sd = reference.state_dict()
    hf = {"logit_scale": sd["logit_scale"], "visual_projection.weight": sd["visual.proj"].t(),
          "text_projection.weight": sd["text_projection"].t(),
          "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
          "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
          "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
          "vision_model.embeddings.position_ids": torch.arange(17)[None],
          "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
          "text_model.embeddings.position_embedding.weight": sd["positional_embedding"]}
    for kind in ("weight", "bias"):
        hf[f"vision_model.pre_layrnorm.{kind}"] = sd[f"visual.ln_pre.{kind}"]
        hf[f"vision_model.post_layernorm.{kind}"] = sd[f"visual.ln_post.{kind}"]
        hf[f"text_model.final_layer_norm.{kind}"] = sd[f"ln_final.{kind}"]
    for hf_tower, tower in (("vision_model", "visual.transformer"), ("text_model", "transformer")):
        for i in range(2):
            src, dst = f"{tower}.resblocks.{i}", f"{hf_tower}.encoder.layers.{i}"
            for kind in ("weight", "bias"):
                q, k, v = sd[f"{src}.attn.in_proj_{kind}"].chunk(3)
                hf.update({f"{dst}.self_attn.q_proj.{kind}": q, f"{dst}.self_attn.k_proj.{kind}": k,
                           f"{dst}.self_attn.v_proj.{kind}": v,
                           f"{dst}.self_attn.out_proj.{kind}": sd[f"{src}.attn.out_proj.{kind}"],
                           f"{dst}.layer_norm1.{kind}": sd[f"{src}.ln_1.{kind}"],
                           f"{dst}.layer_norm2.{kind}": sd[f"{src}.ln_2.{kind}"],
                           f"{dst}.mlp.fc1.{kind}": sd[f"{src}.mlp.c_fc.{kind}"],
                           f"{dst}.mlp.fc2.{kind}": sd[f"{src}.mlp.c_proj.{kind}"]})
    path = tmp_path / "hf.pt"
    torch.save(hf, path)
    _assert_same_features(load_clip(path), reference, inputs)


def test_weights_fingerprint_is_stable_and_sensitive(reference):
    sd = reference.state_dict()
    fp = weights_fingerprint(reference)
    assert len(fp) == 16 and fp == weights_fingerprint(sd) == weights_fingerprint(reference.visual)
    assert fp == weights_fingerprint({k: v.clone() for k, v in sd.items()})
    # the text tower does not enter (a captioner only keeps the image tower); any image-tower weight does
    assert fp == weights_fingerprint({**sd, "token_embedding.weight": sd["token_embedding.weight"] + 1})
    changed = dict(sd)
    changed["visual.ln_post.bias"] = sd["visual.ln_post.bias"].clone()
    changed["visual.ln_post.bias"][0] += 1e-6
    assert weights_fingerprint(changed) != fp


def test_text_shorter_than_context_and_bad_shapes():
    model = build_clip(ClipConfig(**dict(SIZES, vision_heads=2, vocab_size=300))).eval()
    tokens = torch.tensor([[1, 7, 299] + [0] * 74])
    with torch.no_grad():
        full = model.encode_text(tokens)
        short = model.encode_text(tokens[:, :5])  # causal: padding after EOT cannot change the EOT feature
    assert torch.allclose(full, short, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model.encode_image(torch.zeros(1, 3, 48, 48))
