"""`fsgr codebook --templates`: a prompt ensemble per class (MaskCLIP's 85 templates shipped, or a file)."""

import json

import pytest
import torch
import torch.nn.functional as F

from fsgr.cli import main as cli_main
from fsgr.errors import DataError
from fsgr.models.clip import save_clip, tokenize
from fsgr.models.codebook import build_codebook, load_codebook, read_templates

def test_shipped_maskclip_templates():
    t = read_templates("maskclip")
    assert len(t) == len(set(t)) == 85 and t[0] == "a bad photo of a {}." and all("{}" in x for x in t)
    assert t[-1] == "this is one {} in the scene."


def test_ensemble_is_the_renormalised_mean_of_normalised_template_embeddings(clip):
    names, templates = ["dog", "red car", "tree"], ["a photo of a {}.", "there is a {} in the scene.", "a {}"]
    cb = build_codebook(clip, names, templates=templates, batch_size=2)
    with torch.no_grad():
        per = [F.normalize(clip.encode_text(tokenize([t.format(n) for n in names])).float(), dim=-1)
               for t in templates]
    expected = F.normalize(torch.stack(per).mean(0), dim=-1)
    torch.testing.assert_close(cb.embeddings, expected, atol=1e-5, rtol=1e-5)
    single = build_codebook(clip, names, template=templates[0]).embeddings
    assert not torch.allclose(cb.embeddings, single, atol=1e-3)
    assert cb.template is None and cb.templates == templates
    with pytest.raises(DataError, match="no '{}'"):
        build_codebook(clip, names, templates=["a photo"])


def test_cli_templates(clip, tmp_path, capsys):
    clip_file = tmp_path / "clip.pt"
    save_clip(clip, clip_file)
    classes = tmp_path / "classes.txt"
    classes.write_text("zebra\ngiraffe\n")
    out = tmp_path / "cb.pt"
    assert cli_main(["codebook", "--clip", str(clip_file), "--classes", str(classes), "--out", str(out),
                     "--templates", "maskclip"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["templates"] == 85
    cb = load_codebook(out)
    assert cb.templates == read_templates("maskclip") and cb.template is None
    assert cli_main(["codebook", "--clip", str(clip_file), "--classes", str(classes), "--out", str(out),
                     "--templates", "maskclip", "--template", "{} here"]) == 2
    assert "not both" in capsys.readouterr().err
