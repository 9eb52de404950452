import math

import pytest
import torch

from fsgr.models.attention import MultiHeadAttention
from fsgr.models.config import EncoderConfig
from fsgr.models.encoder import Encoder, GridGeometry, box_relational_embedding, grid_sine_embedding

SMALL = EncoderConfig(layers=2, d_model=32, heads=4, d_ff=64)


def test_grid_sine_matches_detr_formula():
    pe = grid_sine_embedding((14, 14), 512)
    assert pe.shape == (196, 512)
    r, c = 3, 7                                       # 1-based row 3, column 7 -> flat index (r-1)*14 + (c-1)
    y, x = r / (14 + 1e-6) * 2 * math.pi, c / (14 + 1e-6) * 2 * math.pi
    i = 5
    freq = 10000 ** (2 * i / 256)
    row = pe[(r - 1) * 14 + (c - 1)]
    assert row[2 * i].item() == pytest.approx(math.sin(y / freq), abs=1e-6)
    assert row[2 * i + 1].item() == pytest.approx(math.cos(y / freq), abs=1e-6)
    assert row[256 + 2 * i].item() == pytest.approx(math.sin(x / freq), abs=1e-6)
    assert row[256 + 2 * i + 1].item() == pytest.approx(math.cos(x / freq), abs=1e-6)


def test_box_relational_embedding_properties():
    emb = box_relational_embedding((14, 14))
    assert emb.shape == (196, 196, 64)
    # diagonal: |dx| = |dy| = 0 -> clamped to log(1e-3); dw = dh = 0 -> sin 0 / cos 1
    diag = emb[torch.arange(196), torch.arange(196)]
    assert torch.allclose(diag, diag[0:1].expand_as(diag))
    angle = 100 * math.log(1e-3)                      # frequency k = 0 of dx
    assert diag[0, 0].item() == pytest.approx(math.sin(angle), abs=1e-4)
    assert diag[0, 32].item() == pytest.approx(math.cos(angle), abs=1e-4)
    assert torch.allclose(emb[..., 16:32], torch.zeros(())) and torch.allclose(emb[..., 48:64], torch.ones(()))
    # symmetric: only |dx|, |dy| enter
    assert torch.allclose(emb, emb.transpose(0, 1))
    # translation invariant: (0,0)->(0,1) equals (5,5)->(5,6)
    assert torch.allclose(emb[0, 1], emb[5 * 14 + 5, 5 * 14 + 6])
    assert not torch.allclose(emb[0, 1], emb[0, 2])


def test_geometry_bias_is_log_clamped_relu_per_head_and_cached_per_grid():
    geo = GridGeometry(32, 4, (3, 4), geometry=True)
    pos, bias = geo((3, 4), torch.device("cpu"))
    assert pos.shape == (1, 12, 32) and bias.shape == (1, 4, 12, 12)
    g = torch.relu(geo.geometry_weights(box_relational_embedding((3, 4))))     # (P, P, h)
    torch.testing.assert_close(bias[0], torch.log(g.clamp(min=1e-6)).permute(2, 0, 1))
    assert bias.min() >= math.log(1e-6) - 1e-5 and bias.max() < 30
    assert "grid_pos" not in geo.state_dict() and "rel_embed" not in geo.state_dict()   # non-persistent caches
    pos2, bias2 = geo((5, 5), torch.device("cpu"))            # another grid: tables recomputed
    assert pos2.shape == (1, 25, 32) and bias2.shape == (1, 4, 25, 25) and geo.grid == (5, 5)


def test_sdpa_with_float_mask_is_the_geometry_attention_formula():
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, dropout=0.0).eval()
    q, kv = torch.randn(2, 6, 32), torch.randn(2, 6, 32)
    g = torch.rand(1, 4, 6, 6) * (torch.rand(1, 4, 6, 6) > 0.3)        # some zero weights -> clamp at 1e-6
    out = mha(q, kv, kv, torch.log(g.clamp(min=1e-6)))
    qh = mha.split_heads(mha.q_proj(q))
    kh, vh = mha.split_heads(mha.k_proj(kv)), mha.split_heads(mha.v_proj(kv))
    w = torch.softmax(torch.log(torch.clamp(g, min=1e-6)) + qh @ kh.transpose(-1, -2) / math.sqrt(8), dim=-1)
    expected = mha.out_proj((w @ vh).transpose(1, 2).reshape(2, 6, 32))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("double_residual", [True, False])
def test_text_mode_shapes_and_visual_tokens_never_self_attend(double_residual):
    torch.manual_seed(0)
    enc = Encoder(SMALL, in_dim=16, grid=(3, 3), text=True, dropout=0.1, double_residual=double_residual).eval()
    visual, semantic = torch.randn(2, 9, 32), torch.randn(2, 9, 16)
    memory, pos = enc(visual, semantic)
    assert memory.shape == (2, 9, 32) and pos.shape == (1, 9, 32) and torch.isfinite(memory).all()
    # queries only cross-attend the fixed semantic grid: changing visual token 4 leaves every other output unchanged
    visual2 = visual.clone()
    visual2[:, 4] += 3.0 * torch.randn(32)  # a constant shift would vanish in LN_e
    memory2, _ = enc(visual2, semantic)
    others = [i for i in range(9) if i != 4]
    torch.testing.assert_close(memory2[:, others], memory[:, others])
    assert not torch.allclose(memory2[:, 4], memory[:, 4])
    # the semantic grid drives every token
    memory3, _ = enc(visual, semantic + 1.0)
    assert not torch.allclose(memory3, memory)


def test_plain_mode_is_self_attention_over_embedded_patch_tokens():
    torch.manual_seed(0)
    enc = Encoder(SMALL, in_dim=24, grid=(3, 3), text=False, dropout=0.1, double_residual=True).eval()
    feats = torch.randn(2, 9, 24)
    memory, _ = enc(feats)
    assert memory.shape == (2, 9, 32)
    feats2 = feats.clone()
    feats2[:, 4] += 3.0 * torch.randn(24)
    memory2, _ = enc(feats2)
    assert not torch.allclose(memory2[:, 0], memory[:, 0])   # tokens see each other
    with pytest.raises(ValueError, match="does not match"):
        enc(torch.randn(2, 10, 24))


def test_double_residual_adds_one_layernorm_per_attention_and_changes_outputs():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    a = Encoder(SMALL, 16, (3, 3), True, 0.0, double_residual=True)
    b = Encoder(SMALL, 16, (3, 3), True, 0.0, double_residual=False)
    assert count(a) - count(b) == SMALL.layers * 2 * SMALL.d_model
    b.load_state_dict({k: v for k, v in a.state_dict().items() if k in b.state_dict()})
    visual, semantic = torch.randn(1, 9, 32), torch.randn(1, 9, 16)
    assert not torch.allclose(a(visual, semantic)[0], b(visual, semantic)[0])


def test_paper_size_encoder_parameter_count():
    enc = Encoder(EncoderConfig(), in_dim=512, grid=(14, 14), text=True, dropout=0.1, double_residual=True)
    # spec section 12: 2 x 3,153,408 + WGs 520 + LN_e 1,024 + pixel_embed(512->512 + LN) 263,680
    assert sum(p.numel() for p in enc.parameters()) == 6_572_040
