"""`fsgr export`: ONNX graphs that caption exactly as the checkpoint on onnxruntime (per-step log-probs within 1e-4),
and the Hub-style safetensors folder that `Captioner.from_pretrained` loads."""

from __future__ import annotations

import json

import pytest
import torch

from fsgr.cli import main as cli_main
from fsgr.errors import CheckpointError

pytest.importorskip("onnxruntime", reason="the export extra (pip install fsgr[export]) is not installed")
pytest.importorskip("onnxscript", reason="the export extra (pip install fsgr[export]) is not installed")


@pytest.fixture(scope="module")
def onnx_dir(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "model"
    assert cli_main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def onnx_captioner(onnx_dir):
    from fsgr.export.runtime import OnnxCaptioner

    return OnnxCaptioner(onnx_dir)


def test_per_step_logprobs_match_within_1e4(captioner, onnx_captioner, tiny_images):
    x = torch.stack([captioner.preprocess(p) for p in tiny_images[:5]])
    ours, theirs = captioner.encode(x, concept_map=True), onnx_captioner.encode(x, concept_map=True)
    torch.testing.assert_close(theirs.memory, ours.memory, atol=1e-4, rtol=0)
    assert torch.equal(theirs.map_ids, ours.map_ids)
    # feed the same tokens to both: <bos>, then the checkpoint's beam-3 captions (<eos>, then <pad> rows included)
    from fsgr.models.decoding import beam_search

    words = beam_search(captioner.model, ours, beam_size=3, max_len=10).tokens
    fed = torch.cat([torch.full((5, 1), captioner.vocab.bos_id), words[:, :-1]], dim=1)
    assert (fed == captioner.vocab.pad_id).any()
    dec, onnx_dec = captioner.model.decoder, onnx_captioner.decoder
    with torch.no_grad():
        cache = dec.init_cache(ours.memory, ours.memory_pos)
        onnx_cache = onnx_dec.init_cache(theirs.memory, theirs.memory_pos)
        for t in range(fed.shape[1]):
            want, cache = dec.step(fed[:, t], cache)
            got, onnx_cache = onnx_dec.step(fed[:, t], onnx_cache)
            assert (got - want).abs().max().item() < 1e-4, t


@pytest.mark.parametrize("settings", [{"beam_size": 1}, {"beam_size": 3}, {"beam_size": 5, "max_len": 20},
                                      {"beam_size": 3, "min_len": 4, "no_repeat_ngram": 1, "length_penalty": 0.5}])
def test_onnx_captions_are_the_checkpoints(captioner, onnx_captioner, tiny_images, settings):
    images = [str(p) for p in tiny_images]
    assert onnx_captioner.caption(images, **settings) == captioner.caption(images, **settings)
    x = torch.stack([captioner.preprocess(p) for p in images[:4]])
    ours = captioner.generate(x, captioner.settings(**settings), concept_map=True)
    theirs = onnx_captioner.generate(x, onnx_captioner.settings(**settings), concept_map=True)
    for a, b in zip(ours, theirs):                           # every beam, its score and the concept map
        assert [text for text, _ in a.beams] == [text for text, _ in b.beams] and a.length == b.length
        assert [lp for _, lp in a.beams] == pytest.approx([lp for _, lp in b.beams], abs=1e-4)
        assert torch.equal(a.concept_ids, b.concept_ids)


def test_caption_verb_runs_the_onnx_folder(onnx_dir, tiny_checkpoint, tiny_images, capsys):
    images = [str(p) for p in tiny_images[:6]]
    assert cli_main(["caption", "--checkpoint", str(tiny_checkpoint), "--beam", "2", *images]) == 0
    want = capsys.readouterr().out
    assert cli_main(["caption", "--model", str(onnx_dir), "--beam", "2", *images]) == 0
    assert capsys.readouterr().out == want and want.count("\n") == 6
    meta = json.loads((onnx_dir / "config.json").read_text())
    assert meta["format"] == "onnx" and meta["decoding"]["beam_size"] == 3
    assert json.loads((onnx_dir / "vocab.json").read_text())[meta["eos_id"]] == "<eos>"


def test_safetensors_folder_loads_with_from_pretrained(captioner, tiny_checkpoint, tiny_images, tmp_path, capsys):
    import fsgr

    out = tmp_path / "hub"
    assert cli_main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "safetensors", "--out",
                     str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "vocab.json", "concepts.json",
                                               "README.md"}
    loaded = fsgr.Captioner.from_pretrained(out, device="cpu")
    want, got = captioner.model.state_dict(), loaded.model.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    images = [str(p) for p in tiny_images[:8]]
    assert loaded.caption(images) == captioner.caption(images)
    capsys.readouterr()
    assert cli_main(["caption", "--model", str(out), images[0]]) == 0
    assert capsys.readouterr().out.split("\t")[1].strip() == captioner.caption(images[:1])[0]
    (out / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        fsgr.Captioner.from_pretrained(out)
