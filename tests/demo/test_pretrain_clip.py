"""The tiny-CLIP recipe: reproducible, saved in a form `load_clip` reads, and its batch/loss logic is right."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from fsgr.demo.pretrain_clip import (PretrainConfig, concept_texts, make_batch, multi_positive_clip_loss, pretrain,
                                     render_pool)
from fsgr.models.clip import load_clip
from fsgr.models.config import ClipConfig

MICRO = ClipConfig(embed_dim=16, image_resolution=48, vision_layers=2, vision_width=32, vision_patch_size=12,
                   vision_heads=2, context_length=32, transformer_width=32, transformer_heads=2, transformer_layers=1)


def micro_cfg(**kw) -> PretrainConfig:
    base = dict(clip=dataclasses.replace(MICRO), steps=3, batch_size=8, warmup_steps=1, pool_size=12, eval_size=6,
                image_size=48, log_every=1, eval_every=0)
    return PretrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pools():
    cfg = micro_cfg()
    return (render_pool(0, cfg.pool_size, cfg.data_seed, 48, 32), render_pool(cfg.pool_size, cfg.eval_size,
                                                                               cfg.data_seed, 48, 32))


def test_same_seed_same_weights_and_losses(pools, tmp_path):
    pool, eval_pool = pools
    out = tmp_path / "a.pt"
    m1, rows1 = pretrain(micro_cfg(), out, log=lambda r: None, pool=pool, eval_pool=eval_pool)
    m2, rows2 = pretrain(micro_cfg(), None, log=lambda r: None, pool=pool, eval_pool=eval_pool)
    losses1 = [r["loss"] for r in rows1 if "loss" in r]
    losses2 = [r["loss"] for r in rows2 if "loss" in r]
    assert len(losses1) == 3 and losses1 == losses2
    sd1, sd2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    m3, rows3 = pretrain(micro_cfg(seed=1), None, log=lambda r: None, pool=pool, eval_pool=eval_pool)
    assert [r["loss"] for r in rows3 if "loss" in r] != losses1           # the seed matters

    # the file goes through the same loader as OpenAI's archives, with every size (and head count) recovered
    loaded = load_clip(out)
    assert dataclasses.replace(loaded.cfg, path=None) == MICRO
    for k, v in loaded.state_dict().items():   # stored as fp16, read back as fp32
        assert v.dtype == torch.float32 and torch.equal(v, sd1[k].half().float()), k
    final = [r for r in rows1 if "eval_step" in r][-1]
    assert 0.0 <= final["retrieval_top1"] <= 1.0 and final["object_patches"] > 0
    assert {"dense_acc", "dense_colour_acc", "dense_shape_acc"} <= set(final)


def test_pool_is_a_function_of_seed_and_ids(pools):
    pool, _ = pools
    again = render_pool(4, 3, 1, 48, 32)
    assert torch.equal(again.images, pool.images[4:7]) and torch.equal(again.tokens, pool.tokens[4:7])
    other_seed = render_pool(4, 3, 0, 48, 32)   # the demo dataset's seed: different images
    assert not torch.equal(other_seed.images, pool.images[4:7])
    assert ((pool.concepts >= 0).sum(1) == pool.num_objects).all() and (pool.num_objects >= 1).all()


def test_batch_positives_follow_the_concepts(pools):
    pool, _ = pools
    cfg = micro_cfg(batch_size=64)
    names, ctoks = concept_texts(32)
    gen = torch.Generator().manual_seed(0)
    images, tokens, pos = make_batch(pool, ctoks, cfg, gen)
    assert images.shape == (64, 3, 48, 48) and tokens.shape == (64, 32) and pos.shape == (64, 64)
    assert pos.diagonal().all()
    # decode which concept each object text names: a text equal to a concept template row
    flat = ctoks.reshape(-1, 32)
    concept_of_text = [next((j % len(names) for j in range(flat.shape[0]) if torch.equal(flat[j], t)), None)
                       for t in tokens]
    n_object_texts = sum(c is not None for c in concept_of_text)
    assert 0 < n_object_texts < 64
    for j, c in enumerate(concept_of_text):
        if c is None:   # a scene caption: only its own image
            assert pos[:, j].sum() == 1
        else:
            assert c != 0 and pos[:, j].sum() >= 1


def test_multi_positive_loss_is_clip_loss_for_one_positive():
    logits = torch.randn(6, 6)
    clip_loss = (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.t(), torch.arange(6))) / 2
    assert torch.allclose(multi_positive_clip_loss(logits, torch.eye(6, dtype=torch.bool)), clip_loss, atol=1e-6)
    pos = torch.eye(6, dtype=torch.bool)
    pos[0, 1] = True   # a second correct text for image 0 can only lower the loss
    assert multi_positive_clip_loss(logits, pos) < clip_loss


@pytest.mark.parametrize("flag,value,needle", [
    ("--lr", "-1", "--lr -1.0: must be a finite number > 0.0"),
    ("--lr", "inf", "--lr inf: must be a finite number > 0.0"),
    ("--lr", "0", "--lr 0.0: must be a finite number > 0.0"),
    ("--dense-weight", "nan", "--dense-weight nan: must be a finite number >= 0.0"),
    ("--time-budget", "-5", "--time-budget -5.0"),
    ("--steps", "0", "--steps 0: must be >= 1"),
    ("--eval-every", "0", "--eval-every 0: must be >= 1"),
    ("--workers", "0", "--workers 0: must be >= 1"),
    ("--warmup", "-1", "--warmup -1: must be >= 0"),
    ("--seed", "-1", "--seed -1: must be between 0 and 4294967295"),
    ("--frac-background", "0.5", "--frac-background 0.5: must be a finite number between 0.0 and 0.25"),
    ("--patch-weight", "-1", "--patch-weight -1.0: must be a finite number >= 0.0"),
])
def test_cli_refuses_a_bad_number_before_rendering_any_image(tmp_path, capsys, flag, value, needle):
    # issue 25 item 14: `pretrain-clip --lr -1` failed after 22 s of data generation
    from fsgr.cli import main

    out = tmp_path / "clip.pt"
    assert main(["pretrain-clip", "--out", str(out), "--pool", "100000", flag, value]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_background_pairs_and_patch_term_continue_from_a_file(pools, tmp_path):
    """The continued recipe (issue 22): background-text pairs are positive exactly for images with that texture,
    the patch-text term trains, and --init starts from the given weights."""
    pool, eval_pool = pools
    cfg = micro_cfg(batch_size=64, frac_background=0.25)
    names, ctoks = concept_texts(32)
    images, tokens, pos, idx, whole = make_batch(pool, ctoks, cfg, torch.Generator().manual_seed(0), with_index=True)
    flat = ctoks.reshape(-1, 32)
    first_texture = names.index("speckled background")
    texture_texts = 0
    for j, t in enumerate(tokens):
        row = next((r % len(names) for r in range(flat.shape[0]) if torch.equal(flat[r], t)), None)
        if row is not None and row >= first_texture:
            texture_texts += 1
            holders = whole & (pool.background[idx] == row)
            assert torch.equal(pos[:, j], holders | (torch.arange(64) == j))
    assert texture_texts > 0
    start = tmp_path / "start.pt"
    pretrain(micro_cfg(), start, log=lambda r: None, pool=pool, eval_pool=eval_pool)
    model, rows = pretrain(micro_cfg(init=str(start), patch_weight=1.0, frac_background=0.25), None,
                           log=lambda r: None, pool=pool, eval_pool=eval_pool)
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    final = [r for r in rows if "eval_step" in r][-1]
    assert {"dense_acc_value", "dense_background_acc_value"} <= set(final)
