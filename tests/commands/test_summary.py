import json
from pathlib import Path

import pytest

from fsgr.cli import main

PAPER = str(Path(__file__).resolve().parents[2] / "configs" / "fsgr_coco.yaml")


def test_paper_size_summary(capsys):
    # one ViT-B/16 build at random init (a few seconds), from the config alone: no weights, codebook or vocab file
    assert main(["summary", PAPER]) == 0
    report = json.loads(capsys.readouterr().out)
    mods = report["modules"]
    # spec section 12 (V = 10,201, 4,585 RAM tags, ViT-B/16, 3-layer decoder)
    assert mods["att_embed"]["trainable"] == 656_896
    assert mods["encoder"]["trainable"] == 6_572_040
    assert mods["decoder"]["trainable"] == 23_092_224
    assert mods["backbone"]["trainable"] == 1_513_728 + 1_775_232      # prompts + visual adapters
    prompts = sum(row["trainable"] for name, row in mods.items() if name.startswith("backbone.prompt")
                  or name.startswith("backbone.deep_prompt"))
    assert prompts == 1_513_728 and mods["backbone.adapters"]["trainable"] == 1_775_232
    assert mods["backbone.visual"]["trainable"] == 0 and mods["backbone.visual"]["frozen"] == 86_192_640
    assert report["trainable"] == pytest.approx(33.61e6, rel=0.01)
    assert report["frozen"] >= 86_192_640
    assert report["total"] == report["trainable"] + report["frozen"]
    assert report["buffers"] == 4585 * 512 + 1       # saved buffers: the frozen codebook and CLIP's logit scale
    assert report["vocab_size"] == 10201 and report["codebook_size"] == 4585


def test_summary_refuses_unknown_keys(capsys):
    assert main(["summary", PAPER, "model.decoder.depth=3"]) == 2
    assert "model.decoder.depth" in capsys.readouterr().err
