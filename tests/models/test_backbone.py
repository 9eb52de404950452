"""FSGR backbone: against a plain loop written from the spec (section 2), identities, freezing and parameter counts."""

import math

import pytest
import torch
import torch.nn.functional as F

from fsgr.errors import ConfigError
from fsgr.models.backbone import BackboneOutput, FSGRBackbone
from fsgr.models.clip import VisionTransformer
from fsgr.models.config import AdapterConfig, BackboneConfig, PromptConfig

# a tiny ViT: 48 px, patch 12 -> 4x4 grid, width 64, 3 blocks, 2 heads, 32-d embedding
TINY = dict(input_resolution=48, patch_size=12, width=64, layers=3, heads=2, output_dim=32)


def _visual(seed=0):
    torch.manual_seed(seed)
    visual = VisionTransformer(**TINY)
    with torch.no_grad():  # move LayerNorms and biases off their trivial init
        for name, p in visual.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return visual


def _cfg(num_tokens=5, deep=True, first=1, last=2, zero_init=True, aligned="csa", dropout=0.1):
    return BackboneConfig(prompts=PromptConfig(num_tokens=num_tokens, deep=deep, dropout=dropout),
                          adapters=AdapterConfig(first_block=first, last_block=last, zero_init=zero_init),
                          aligned_patches=aligned)


def _images(b=2, seed=1):
    return torch.randn(b, 3, 48, 48, generator=torch.Generator().manual_seed(seed))


def _attention(block, y, csa=False):
    """Plain-matmul multi-head attention with the block's weights; csa: softmax(qq^T/sqrt d) + softmax(kk^T/sqrt d)."""
    B, L, W = y.shape
    h = block.attn.heads
    q, k, v = F.linear(y, block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(B, L, h, W // h).transpose(1, 2) for t in (q, k, v))
    scale = 1 / math.sqrt(W // h)
    if csa:
        attn = torch.softmax(q @ q.transpose(-1, -2) * scale, -1) + torch.softmax(k @ k.transpose(-1, -2) * scale, -1)
    else:
        attn = torch.softmax(q @ k.transpose(-1, -2) * scale, -1)
    o = (attn @ v).transpose(1, 2).reshape(B, L, W)
    return block.attn.out_proj(o)


def _spec_forward(bb: FSGRBackbone, images):
    """Section 2 step by step, in eval mode (no dropout)."""
    vis, n, cfg = bb.visual, bb.num_prompts, bb.cfg
    x = vis.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([vis.class_embedding.expand(x.shape[0], 1, -1), x], 1) + vis.positional_embedding
    x = vis.ln_pre(x)
    P = x.shape[1] - 1

    def prompts(i):
        e = bb.prompt_embeddings[0] if i == 0 else bb.deep_prompt_embeddings[i - 1]
        return (e @ bb.prompt_proj.weight.t() + bb.prompt_proj.bias).expand(x.shape[0], -1, -1)

    if n:
        x = torch.cat([x[:, :1], prompts(0), x[:, 1:]], 1)
    blocks = vis.transformer.resblocks
    for i, blk in enumerate(blocks):
        if i >= 1 and n and cfg.prompts.deep:
            x = torch.cat([x[:, :1], prompts(i), x[:, 1 + n:]], 1)
        if i == len(blocks) - 1:
            z = x[:, 1 + n:]
            z = z + _attention(blk, blk.ln_1(z), csa=True)
            z = z + blk.mlp(blk.ln_2(z))
        a = _attention(blk, blk.ln_1(x))
        if cfg.adapters.first_block <= i <= cfg.adapters.last_block:
            ad = bb.adapters[str(i)]
            a = a + ad.fc2(F.gelu(ad.fc1(a)))
        x = x + a
        x = x + blk.mlp(blk.ln_2(x))
    norm = bb.prompt_norm if n else (lambda t: t)
    h = norm(x)
    g = vis.ln_post(h[:, 0]) @ vis.proj
    f = h[:, -P:]
    a = norm(z) @ vis.proj if cfg.aligned_patches == "csa" else f @ vis.proj
    return F.normalize(f, dim=-1), F.normalize(g, dim=-1), F.normalize(a, dim=-1)


@pytest.mark.parametrize("deep,aligned", [(True, "csa"), (False, "csa"), (True, "ref")])
def test_matches_spec_loop(deep, aligned):
    torch.manual_seed(3)
    bb = FSGRBackbone(_visual(), _cfg(deep=deep, zero_init=False, aligned=aligned)).eval()  # adapters not identity
    images = _images()
    with torch.no_grad():
        out = bb(images)
        f, g, a = _spec_forward(bb, images)
    assert isinstance(out, BackboneOutput)
    assert out.patch_tokens.shape == (2, 16, 64) and out.global_embed.shape == (2, 32)
    assert out.aligned_patches.shape == (2, 16, 32) and bb.grid_size == (4, 4)
    for ours, ref in ((out.patch_tokens, f), (out.global_embed, g), (out.aligned_patches, a)):
        assert torch.allclose(ours, ref, atol=1e-5)
        assert torch.allclose(ours.norm(dim=-1), torch.ones(ours.shape[:-1]), atol=1e-5)


def test_csa_and_ref_aligned_patches_differ():
    visual, images = _visual(), _images()
    torch.manual_seed(0)
    csa = FSGRBackbone(visual, _cfg(aligned="csa")).eval()
    torch.manual_seed(0)
    ref = FSGRBackbone(visual, _cfg(aligned="ref")).eval()
    with torch.no_grad():
        a, b = csa(images), ref(images)
    assert torch.equal(a.global_embed, b.global_embed) and torch.equal(a.patch_tokens, b.patch_tokens)
    assert (a.aligned_patches - b.aligned_patches).abs().max() > 1e-2


def test_zero_init_adapters_are_identity():
    visual, images = _visual(), _images()
    outs = {}
    for name, (first, last, zero) in {"adapters": (1, 2, True), "none": (3, 2, True), "ref_init": (1, 2, False)}.items():
        torch.manual_seed(0)  # same prompts in each
        bb = FSGRBackbone(visual, _cfg(first=first, last=last, zero_init=zero)).eval()
        with torch.no_grad():
            outs[name] = bb(images)
    assert len(FSGRBackbone(visual, _cfg(first=3, last=2)).adapters) == 0
    for field in ("patch_tokens", "global_embed", "aligned_patches"):
        assert torch.equal(getattr(outs["adapters"], field), getattr(outs["none"], field))
        # B8's REF init (fc2 trunc_normal) is not an identity: the check above can fail
        assert not torch.allclose(getattr(outs["ref_init"], field), getattr(outs["none"], field), atol=1e-4)


def test_without_prompts_global_embed_is_clip_image_embedding():
    visual, images = _visual(), _images()
    bb = FSGRBackbone(visual, _cfg(num_tokens=0)).eval()
    assert not hasattr(bb, "prompt_norm") and not hasattr(bb, "prompt_proj")
    with torch.no_grad():
        out = bb(images)
        clip_embed = visual(images)
        tokens = visual.transformer(visual.embed(images))
    assert torch.allclose(out.global_embed, F.normalize(clip_embed, dim=-1), atol=1e-6)
    assert torch.allclose(out.patch_tokens, F.normalize(tokens[:, 1:], dim=-1), atol=1e-6)


def test_clip_frozen_and_trainable_set_exact():
    bb = FSGRBackbone(_visual(), _cfg())
    assert all(not p.requires_grad for p in bb.visual.parameters())
    trainable = {n for n, p in bb.named_parameters() if p.requires_grad}
    assert trainable == {"prompt_embeddings", "deep_prompt_embeddings", "prompt_proj.weight", "prompt_proj.bias",
                         "prompt_norm.weight", "prompt_norm.bias"} | {
        f"adapters.{i}.fc{j}.{k}" for i in (1, 2) for j in (1, 2) for k in ("weight", "bias")}
    assert {id(p) for p in bb.trainable_parameters()} == {id(p) for p in bb.parameters() if p.requires_grad}
    out = bb.train()(_images())
    (out.patch_tokens.sum() + out.global_embed.sum() + out.aligned_patches.pow(2).sum()).backward()
    assert all(p.grad is None for p in bb.visual.parameters())
    for name in ("prompt_embeddings", "deep_prompt_embeddings", "prompt_proj.weight", "adapters.2.fc2.weight"):
        assert dict(bb.named_parameters())[name].grad.abs().sum() > 0, name


def test_prompt_dropout_only_in_training():
    torch.manual_seed(0)
    bb = FSGRBackbone(_visual(), _cfg(dropout=0.5))
    images = _images()
    with torch.no_grad():
        a, b = bb.train()(images).global_embed, bb(images).global_embed
        c, d = bb.eval()(images).global_embed, bb(images).global_embed
    assert not torch.allclose(a, b) and torch.equal(c, d)


def test_prompt_dropout_mask_is_drawn_per_image():
    """VPT lineage: Dropout(prompt_proj(E).expand(B, ...)), so each image gets its own dropout mask; one mask shared
    by the whole batch would make the noise fully correlated across images."""
    torch.manual_seed(0)
    bb = FSGRBackbone(_visual(), _cfg(dropout=0.5)).train()
    images = _images(b=1).expand(3, -1, -1, -1)          # three copies of one image
    with torch.no_grad():
        g = bb(images).global_embed
    assert not torch.allclose(g[0], g[1]) and not torch.allclose(g[1], g[2])
    with torch.no_grad():
        g = bb.eval()(images).global_embed
    assert torch.allclose(g[0], g[1]) and torch.allclose(g[1], g[2])


def test_prompt_init_follows_spec():
    torch.manual_seed(0)
    bb = FSGRBackbone(_visual(), _cfg(num_tokens=50))
    bound = math.sqrt(6 / (3 * 12 * 12 + 64))
    e = torch.cat([bb.prompt_embeddings.flatten(), bb.deep_prompt_embeddings.flatten()])
    assert bb.deep_prompt_embeddings.shape == (2, 50, 64)
    assert e.abs().max() <= bound and e.abs().max() > 0.9 * bound
    assert abs(bb.prompt_proj.weight.std().item() - math.sqrt(2 / 64)) < 0.02
    assert torch.equal(bb.prompt_norm.weight, torch.ones(64)) and bb.prompt_norm.eps == 1e-6


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="outside the 3 blocks"):
        FSGRBackbone(_visual(), _cfg(first=1, last=11))
    with pytest.raises(ConfigError, match="aligned_patches"):
        FSGRBackbone(_visual(), _cfg(aligned="mean"))


def test_vit_b16_parameter_counts_match_spec():
    torch.manual_seed(0)
    visual = VisionTransformer(224, 16, 768, 12, 12, 512)
    bb = FSGRBackbone(visual, BackboneConfig())
    count = lambda prefix: sum(p.numel() for n, p in bb.named_parameters() if n.startswith(prefix))  # noqa: E731
    prompts = count("prompt_") + count("deep_prompt_")
    assert prompts == 1_513_728                      # spec section 12: 12x100x768 + prompt_proj + prompt_norm
    assert count("adapters.") == 1_775_232            # 6 x 295,872
    assert count("visual.") == 86_192_640             # frozen ViT-B/16
    assert sum(p.numel() for p in bb.trainable_parameters()) == 1_513_728 + 1_775_232
    assert bb.grid_size == (14, 14) and bb.num_patches == 196


def test_runs_under_autocast_close_to_fp32():
    torch.manual_seed(0)
    bb = FSGRBackbone(_visual(), _cfg()).eval()
    images = _images()
    with torch.no_grad():
        ref = bb(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = bb(images)
    assert all(p.dtype == torch.float32 for p in bb.parameters())   # autocast chooses precision, weights stay fp32
    for field in ("patch_tokens", "global_embed", "aligned_patches"):
        a, b = getattr(low, field).float(), getattr(ref, field)
        assert torch.isfinite(a).all() and F.cosine_similarity(a, b, dim=-1).min() > 0.98



def test_aligned_norm_ln_post_puts_clip_ln_post_before_proj():
    """model.backbone.aligned_norm=ln_post: A = ln_post(z'') @ proj (OpenAI's alignment), else z'' @ proj (REF, no
    prompts: no prompt_norm)."""
    from fsgr.models.backbone import csa_attention

    visual = _visual()
    with torch.no_grad():       # a non-trivial ln_post affine, so the two paths differ
        visual.ln_post.weight.uniform_(0.5, 1.5)
        visual.ln_post.bias.normal_(0, 0.3)
    layers = TINY["layers"]
    bare = dict(prompts=PromptConfig(num_tokens=0), adapters=AdapterConfig(first_block=layers, last_block=layers - 1))
    images = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        ln = FSGRBackbone(visual, BackboneConfig(aligned_norm="ln_post", **bare)).eval()(images).aligned_patches
        raw = FSGRBackbone(visual, BackboneConfig(**bare)).eval()(images).aligned_patches
        x = visual.embed(images)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        last = visual.transformer.resblocks[-1]
        z = x[:, 1:] + csa_attention(last, x[:, 1:])
        z = z + last.mlp(last.ln_2(z))
    torch.testing.assert_close(ln, F.normalize(visual.ln_post(z) @ visual.proj, dim=-1))
    torch.testing.assert_close(raw, F.normalize(z @ visual.proj, dim=-1))
    assert not torch.allclose(ln, raw, atol=1e-3)
    with pytest.raises(ConfigError, match="aligned_norm"):
        FSGRBackbone(visual, BackboneConfig(aligned_norm="ln_pre", **bare))
