"""`fsgr explain` maps: background patches stay background (the codebook's background concept, or low confidence),
object regions are labelled, the overlay is smooth, and `--words` adds one cross-attention map per word."""

from __future__ import annotations

import torch
from PIL import Image

from fsgr.cli import main as cli_main
from fsgr.config import load_config, resolve_config
from fsgr.core.build import build_model
from fsgr.data.synthetic import render, patch_concepts
from fsgr.data.vocab import Vocab
from fsgr.inference import Captioner, Explanation, draw_explanation
from fsgr.serving.maps import BACKGROUND, object_grid, regions

GREY = (128, 128, 128)


def _explanation(confidence=None) -> Explanation:
    """A 64x64 grey image on a 4x4 grid: columns 0-1 background (id 0), columns 2-3 a red circle (id 5)."""
    ids = torch.tensor([[0, 0, 5, 5]] * 4)
    return Explanation(caption="a red circle", concept_ids=ids, concept_names={0: "background", 5: "red circle"},
                       image=Image.new("RGB", (64, 64), GREY), confidence=confidence, background_ids=(0,))


def test_background_patches_are_left_untinted():
    drawn = draw_explanation(_explanation(), width=64)
    px = drawn.load()
    for x, y in [(2, 2), (8, 40), (12, 60)]:                          # inside the background half
        assert px[x, y] == GREY
    assert all(sum(abs(a - b) for a, b in zip(px[x, y], GREY)) > 60 for x, y in [(60, 4), (62, 60)])
    # the border is smooth: a gradient across the boundary, not a single step
    row = [px[x, 4] for x in range(20, 36)]
    assert len(set(row)) > 4


def test_low_confidence_patches_count_as_background():
    confidence = torch.full((4, 4), 0.9)
    confidence[:, 3] = 0.1                                             # the right-most column is unsure
    grid = object_grid(_explanation().concept_ids, confidence, (0,), min_confidence=0.3)
    assert (grid[:, :2] == BACKGROUND).all() and (grid[:, 3] == BACKGROUND).all() and (grid[:, 2] == 5).all()
    px = draw_explanation(_explanation(confidence), width=64, min_confidence=0.3).load()
    assert px[63, 10] == GREY and sum(abs(a - b) for a, b in zip(px[40, 10], GREY)) > 60
    # without a threshold the unsure column is drawn as the object
    px = draw_explanation(_explanation(confidence), width=64).load()
    assert px[63, 10] != GREY


def test_each_object_region_is_labelled():
    grid = torch.tensor([[3, 3, BACKGROUND, 3], [3, BACKGROUND, BACKGROUND, 3], [7, 7, 7, 3], [7, 7, 7, 3]])
    found = sorted((cid, len(cells)) for cid, cells in regions(grid))
    assert found == [(3, 3), (3, 4), (7, 6)]                          # concept 3 is two separate regions
    drawn = draw_explanation(_explanation(), width=256).load()
    # a black label box at the red circle's centre (x 192, y 128); none over the background half
    assert any(drawn[x, y] == (0, 0, 0) for x in range(180, 204) for y in range(120, 136))
    assert not any(drawn[x, y] == (0, 0, 0) for x in range(0, 120) for y in range(0, 256))


def test_explain_with_word_attention(tiny_checkpoint, tiny_images, tmp_path, capsys):
    captioner = Captioner.from_checkpoint(tiny_checkpoint, device="cpu")
    captioner.codebook_names = ["background"] + [f"concept {i}" for i in range(1, 12)]
    exp = captioner.explain(str(tiny_images[0]), words=True)
    assert exp.background_ids == (0,) and exp.caption == captioner.caption([str(tiny_images[0])])[0]
    assert exp.words == exp.caption.split() and exp.word_attention.shape == (len(exp.words), 16)
    torch.testing.assert_close(exp.word_attention.sum(-1), torch.ones(len(exp.words)))
    # the maps equal an independent computation: each cross-attention sub-layer's inputs caught by a hook in a plain
    # teacher-forced decoder pass, softmax(q k^T / sqrt(dh)) by hand, averaged over heads and layers
    caught = []
    hooks = [layer.cross_attention.register_forward_pre_hook(lambda mod, args: caught.append((mod.attn, *args[:2])))
             for layer in captioner.model.decoder.layers]
    encoded = captioner.encode(captioner.preprocess(str(tiny_images[0]))[None])
    result = captioner.generate(captioner.preprocess(str(tiny_images[0]))[None])[0]
    inputs = torch.tensor([[captioner.vocab.bos_id] + result.tokens[:-1]])
    caught.clear()
    with torch.no_grad():
        captioner.model.decoder(inputs, encoded.memory, encoded.memory_pos)
    for h in hooks:
        h.remove()
    by_hand = []
    for attn, s, k in caught:
        q = attn.q_proj(s).view(1, -1, attn.heads, attn.d_head).transpose(1, 2)
        by_hand.append(torch.softmax(q @ k.transpose(-1, -2) / attn.d_head ** 0.5, dim=-1).mean(dim=1)[0])
    assert len(by_hand) == len(captioner.model.decoder.layers)
    keep = [i for i, t in enumerate(result.tokens) if i == 0 or t != result.tokens[i - 1]]
    torch.testing.assert_close(exp.word_attention, torch.stack(by_hand).mean(dim=0)[keep])
    assert ((exp.confidence > 0) & (exp.confidence <= 1)).all() and exp.confidence.shape == (4, 4)
    plain, words = tmp_path / "plain.png", tmp_path / "words.png"
    assert cli_main(["explain", "--checkpoint", str(tiny_checkpoint), str(tiny_images[0]), "--out", str(plain)]) == 0
    assert cli_main(["explain", "--checkpoint", str(tiny_checkpoint), str(tiny_images[0]), "--out", str(words),
                     "--words", "--min-confidence", "0.5"]) == 0
    with Image.open(plain) as a, Image.open(words) as b:
        assert a.width == b.width == 448 and b.height > a.height + 80    # the per-word strip
    assert cli_main(["explain", "--checkpoint", str(tiny_checkpoint), str(tiny_images[0]), "--out", str(plain),
                     "--min-confidence", "2"]) == 2
    assert "--min-confidence" in capsys.readouterr().err


def test_demo_maps_show_background_as_background():
    """The packaged tiny CLIP + demo codebook on synthetic shapes with their true concept maps: the map's dense labels
    over the whole codebook draw most background patches as background and most object patches as their concept,
    where the head's top-k assignment (never holding "background" here) draws almost none as background."""
    cfg = load_config(resolve_config("demo"), ["eval.beam_size=1", "eval.max_len=3"])
    torch.manual_seed(0)
    vocab = Vocab(["<unk>", "<pad>", "<bos>", "<eos>", "a"])
    model, names, _ = build_model(cfg, vocab)
    captioner = Captioner(model, vocab, cfg, torch.device("cpu"), names)
    maps, topk, truth = [], [], []
    for image_id in range(16):
        image, label_map, _, _ = render(image_id, cfg.data.synthetic)
        exp = captioner.explain(image)
        # the page / JSON API / ONNX path (Captioner.generate) carries the same map labels as explain draws
        shown = captioner.generate(captioner.preprocess(image)[None], concept_map=True)[0].concept_ids
        assert torch.equal(shown, exp.concept_ids.flatten())
        maps.append(object_grid(exp.concept_ids, exp.confidence, exp.background_ids, 0.0).flatten())
        topk.append(captioner.encode(captioner.preprocess(image)[None]).concept_ids[0])
        truth.append(patch_concepts(label_map, exp.concept_ids.shape[0]))
    maps, topk, truth = torch.stack(maps), torch.stack(topk), torch.stack(truth)
    background = truth == 0
    assert background.sum() > 500 and (~background).sum() > 100
    assert (maps[background] == BACKGROUND).float().mean() > 0.6
    assert (maps[~background] == truth[~background]).float().mean() > 0.6
    assert (topk[background] == 0).float().mean() < 0.1           # what the maps drew before
