import dataclasses

import pytest
import torch
import torch.nn.functional as F

from fsgr.errors import CheckpointError
from fsgr.models.captioner import FSGRCaptioner
from fsgr.models.config import (AdapterConfig, BackboneConfig, ClipConfig, DecoderConfig, EncoderConfig, ModelConfig,
                                PromptConfig, SemanticConfig)
from fsgr.models.decoding import beam_search, greedy

V, PAD, BOS, EOS = 31, 1, 2, 3


def tiny_config(**semantic) -> ModelConfig:
    clip = ClipConfig(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                      vision_heads=4, context_length=16, vocab_size=300, transformer_width=32, transformer_heads=2,
                      transformer_layers=1)
    backbone = BackboneConfig(prompts=PromptConfig(num_tokens=4), adapters=AdapterConfig(first_block=1, last_block=1))
    return ModelConfig(clip=clip, backbone=backbone,
                       semantic=SemanticConfig(codebook_size=12, topk=5, **semantic),
                       encoder=EncoderConfig(layers=1, d_model=32, heads=4, d_ff=64),
                       decoder=DecoderConfig(layers=2, d_model=32, heads=4, d_ff=64, max_len=24))


@pytest.fixture(scope="module")
def clip():
    from fsgr.models.clip import build_clip

    torch.manual_seed(0)
    return build_clip(tiny_config().clip)


def _model(clip, cfg=None, **kw):
    torch.manual_seed(1)
    codebook = F.normalize(torch.randn(12, 32), dim=-1)
    return FSGRCaptioner(cfg or tiny_config(), vocab_size=V, clip=clip, codebook=codebook, pad_id=PAD, bos_id=BOS,
                         eos_id=EOS, **kw)


def _batch():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 32, 32, generator=g)
    tokens = torch.randint(4, V, (5, 7), generator=g)
    tokens[:, 0] = BOS
    tokens[:, -1] = EOS
    tokens[1, 4:] = PAD
    tokens[1, 3] = EOS
    return images, tokens, torch.tensor([0, 0, 1, 1, 1])


def test_forward_shapes_and_image_level_batching(clip):
    model = _model(clip).eval()
    images, tokens, index = _batch()
    out = model(images, tokens, index)
    assert out.logprobs.shape == (5, 7, V) and out.concept_ids.shape == (2, 16) and out.contrast_feats.shape == (2, 16, 32)
    assert out.concept_ids.dtype == torch.long and 0 <= out.concept_ids.min() and out.concept_ids.max() < 12
    # image-level batching (backbone once per image) == caption-level batching (one image row per caption)
    per_caption = model(images[index], tokens)
    torch.testing.assert_close(out.logprobs, per_caption.logprobs, atol=1e-5, rtol=1e-5)
    enc = model.encode(images)
    assert enc.memory.shape == (2, 16, 32) and enc.memory_pos.shape == (1, 16, 32) and enc.global_embed.shape == (2, 32)
    assert torch.equal(enc.concept_ids, out.concept_ids)


def test_decoding_through_the_captioner(clip):
    model = _model(clip).eval()
    images, _, _ = _batch()
    enc = model.encode(images)
    g = greedy(model, enc, max_len=10)
    b1 = beam_search(model, enc, beam_size=1, max_len=10)
    b3 = beam_search(model, enc, beam_size=3, max_len=10, return_all=True)
    assert g.shape == (2, 10) and torch.equal(b1.tokens, g) and b3.tokens.shape == (2, 3, 10)


def test_gradients_parameter_groups_and_backbone_grad_switch(clip):
    model = _model(clip).train()
    images, tokens, index = _batch()
    groups = model.parameter_groups()
    names = {id(p): n for n, p in model.named_parameters()}
    backbone_names = [names[id(p)] for p in groups["backbone"]]
    assert backbone_names and all(n.startswith("backbone.") for n in backbone_names)
    assert all(("prompt" in n) or ("adapter" in n.lower()) for n in backbone_names)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in groups["backbone"]} | {id(p) for p in groups["captioner"]} == trainable
    assert not {id(p) for p in groups["backbone"]} & {id(p) for p in groups["captioner"]}
    assert any(not p.requires_grad for p in model.backbone.parameters())           # CLIP itself is frozen
    assert "semantic.codebook" in model.state_dict() and "semantic.codebook" not in dict(model.named_parameters())

    out = model(images, tokens, index)
    loss = -out.logprobs[:, :-1].gather(2, tokens[:, 1:, None]).mean() + out.contrast_feats.square().mean()
    loss.backward()
    assert all(p.grad is not None for p in groups["backbone"] if p.numel() and "prompt" in names[id(p)])
    assert model.decoder.word_emb.weight.grad.abs().sum() > 0 and model.att_embed[0].weight.grad.abs().sum() > 0
    assert model.encoder.pixel_embed[0].weight.grad.abs().sum() > 0       # S reaches the encoder keys/values
    model.zero_grad(set_to_none=True)

    out = model(images, tokens, index, backbone_grad=False)                # SCST with train_in_scst = False
    (-out.logprobs.mean()).backward()
    assert all(p.grad is None for p in groups["backbone"])
    assert model.att_embed[0].weight.grad.abs().sum() > 0


def test_plain_encoder_mode(clip):
    model = _model(clip, tiny_config(enabled=False)).eval()
    images, tokens, index = _batch()
    assert model.encoder.pixel_embed[0].in_features == 64                   # F^ (vision width), REF text=False
    assert model(images, tokens, index).logprobs.shape == (5, 7, V)


def test_codebook_and_vocabulary_mismatches_are_refused_with_both_sizes(clip):
    with pytest.raises(CheckpointError, match=r"13 concepts.*codebook_size is 12"):
        FSGRCaptioner(tiny_config(), V, clip=clip, codebook=torch.randn(13, 32))
    with pytest.raises(CheckpointError, match=r"16-d.*32-d"):
        FSGRCaptioner(tiny_config(), V, clip=clip, codebook=torch.randn(12, 16))
    with pytest.raises(CheckpointError, match=r"<eos> id 40 .* 31 words"):
        FSGRCaptioner(tiny_config(), V, clip=clip, codebook=torch.randn(12, 32), eos_id=40)
    model = _model(clip)
    state = model.state_dict()
    other = FSGRCaptioner(tiny_config(), V + 5, clip=clip, codebook=torch.randn(12, 32))
    with pytest.raises(CheckpointError, match=r"31 words but the vocabulary has 36"):
        other.load_state_dict(state)
    bigger = FSGRCaptioner(dataclasses.replace(tiny_config(), semantic=SemanticConfig(codebook_size=14, topk=5)), V,
                           clip=clip)
    with pytest.raises(CheckpointError, match=r"12 concepts but model.semantic.codebook_size is 14"):
        bigger.load_state_dict(state)
    from fsgr.models.clip import weights_fingerprint
    from fsgr.models.codebook import Codebook

    emb = F.normalize(torch.randn(12, 32), dim=-1)
    names = [f"c{i}" for i in range(12)]
    ok = Codebook(names=names, embeddings=emb, template="a photo of a {}.", clip_fingerprint=weights_fingerprint(clip))
    FSGRCaptioner(tiny_config(), V, clip=clip, codebook=ok)
    stale = Codebook(names=names, embeddings=emb, template="a photo of a {}.", clip_fingerprint="0123456789abcdef")
    with pytest.raises(CheckpointError, match="0123456789abcdef.*" + weights_fingerprint(clip)):
        FSGRCaptioner(tiny_config(), V, clip=clip, codebook=stale)
    fresh = _model(clip)
    fresh.load_state_dict(state)                                           # same sizes load fine
    assert torch.equal(fresh.decoder.out.weight, model.decoder.out.weight)


def test_bf16_autocast_forward_and_beam(clip):
    model = _model(clip).eval()
    images, tokens, index = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images, tokens, index)
        enc = model.encode(images)
        res = beam_search(model, enc, beam_size=2, max_len=6)
    assert out.logprobs.dtype == torch.float32 and torch.isfinite(out.logprobs).all()
    ref = model(images, tokens, index)
    g, a = F.normalize(torch.randn(2, 32), dim=-1), F.normalize(torch.randn(2, 16, 32), dim=-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sem_amp = model.semantic(g, a, model.logit_scale)
    sem = model.semantic(g, a, model.logit_scale)
    assert sem_amp.grid.dtype == torch.float32 and torch.equal(sem_amp.logits, sem.logits)   # fp32 under autocast
    assert (out.logprobs.exp() - ref.logprobs.exp()).abs().max() < 0.05
    assert res.tokens.shape == (2, 6)


def test_model_dropout_also_sets_the_prompt_dropout_unless_given(clip):
    # `model.dropout=0` is the one switch the DDP-equality recipe names: it must reach the prompts too
    cfg = dataclasses.replace(tiny_config(), dropout=0.0)
    assert _model(clip, cfg).backbone.prompt_dropout.p == 0.0
    cfg.backbone.prompts.dropout = 0.3
    assert _model(clip, cfg).backbone.prompt_dropout.p == 0.3


def test_supcon_labels_from_the_value_path_are_the_maps_dense_labels(clip):
    """model.semantic.labels_from=dense: the ids that label SupCon in training are the whole-codebook dense labels of
    the value path (what maps show); S is unchanged (same weights, same head assignment)."""
    images, tokens, index = _batch()
    head = _model(clip).eval()
    dense = _model(clip, tiny_config(labels_from="dense")).eval()
    dense.load_state_dict(head.state_dict())
    with torch.no_grad():
        maps = head.encode(images, concept_map=True)
        out = dense(images, tokens, index)
        ref = head(images, tokens, index)
    assert torch.equal(out.concept_ids, maps.map_ids) and not torch.equal(ref.concept_ids, maps.map_ids)
    torch.testing.assert_close(out.logprobs, ref.logprobs)
