"""`fsgr export`: ONNX graphs that caption exactly as the checkpoint on onnxruntime (per-step log-probs within 1e-4),
the Hub-style safetensors folder of `Captioner.save_pretrained` that `Captioner.from_pretrained` loads, and the
manifest: a folder that holds a user's files is refused before any work, a damaged export is refused naming the file
(`caption --model`, `serve --model`, `from_pretrained`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

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


@pytest.fixture(scope="module")
def hub_dir(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("hub") / "model"
    assert cli_main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "safetensors", "--out",
                     str(out)]) == 0
    return out


def test_safetensors_folder_loads_with_from_pretrained(captioner, hub_dir, tiny_images, capsys):
    import fsgr

    assert {p.name for p in hub_dir.iterdir()} == {"config.json", "model.safetensors", "vocab.json", "concepts.json",
                                                   "README.md", "fsgr-manifest.json"}
    loaded = fsgr.Captioner.from_pretrained(hub_dir, device="cpu")
    want, got = captioner.model.state_dict(), loaded.model.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    images = [str(p) for p in tiny_images[:8]]
    assert loaded.caption(images) == captioner.caption(images)
    capsys.readouterr()
    assert cli_main(["caption", "--model", str(hub_dir), images[0]]) == 0
    assert capsys.readouterr().out.split("\t")[1].strip() == captioner.caption(images[:1])[0]
    umask = os.umask(0)
    os.umask(umask)
    assert (hub_dir / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask    # not 0600


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_save_pretrained_writes_the_exports_folder_and_a_model_card(captioner, tiny_checkpoint, hub_dir, tmp_path):
    from fsgr.config import to_dict
    from fsgr.inference import Captioner

    run = tmp_path / "run"                                  # a run whose summary.json holds test scores
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_checkpoint, run / "checkpoints" / "best.pt")
    scores = {"BLEU-4": 0.25, "CIDEr": 1.125, "METEOR": 0.5}
    (run / "summary.json").write_text(json.dumps({"status": "finished", "test": scores}))
    out = tmp_path / "saved"
    files = Captioner.from_checkpoint(run / "checkpoints" / "best.pt", device="cpu").save_pretrained(
        out, license="cc-by-4.0")
    assert sorted(p.name for p in files) == sorted(p.name for p in hub_dir.iterdir())
    manifest, exported = (json.loads((d / "fsgr-manifest.json").read_text())["files"] for d in (out, hub_dir))
    for name in ("model.safetensors", "config.json", "vocab.json", "concepts.json"):   # one code path: same bytes
        assert manifest[name] == exported[name], name
    card = (out / "README.md").read_text()
    front = _front_matter(card)
    assert front["library_name"] == "fsgr" and front["pipeline_tag"] == "image-to-text"
    assert front["license"] == "cc-by-4.0" and front["datasets"] == ["coco"]     # a Karpathy-format file
    assert front["metrics"] == sorted(scores)
    results = front["model-index"][0]["results"][0]["metrics"]
    assert {m["name"]: m["value"] for m in results} == scores
    assert yaml.safe_load(card.split("```yaml\n")[1].split("```")[0]) == to_dict(captioner.cfg)
    loaded = Captioner.from_pretrained(out, device="cpu")                  # round trip
    want, got = captioner.model.state_dict(), loaded.model.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want) and loaded.vocab.itos == captioner.vocab.itos
    assert loaded.cfg == captioner.cfg
    loaded.save_pretrained(out)                             # into its own earlier export: allowed, no scores now
    assert "No test scores" in (out / "README.md").read_text() and Captioner.from_pretrained(out)


@pytest.mark.parametrize("owned", ["config.json", "README.md", "notes.txt"])
def test_export_never_writes_into_a_folder_holding_the_users_files(tiny_checkpoint, tmp_path, capsys, owned):
    out = tmp_path / "mine"
    out.mkdir()
    (out / owned).write_text("the user's own file")
    for fmt in ("onnx", "safetensors"):
        assert cli_main(["export", "--checkpoint", str(tiny_checkpoint), "--format", fmt, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "holds files an fsgr export did not write" in err and owned in err and err.count("\n") == 1, err
    assert [p.name for p in out.iterdir()] == [owned] and (out / owned).read_text() == "the user's own file"


def test_export_replaces_its_own_earlier_export(tiny_checkpoint, hub_dir, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(hub_dir, out)
    assert cli_main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    assert not (out / "model.safetensors").exists() and not (out / "README.md").exists()   # the old export's files
    assert json.loads((out / "fsgr-manifest.json").read_text())["format"] == "onnx"


def _swap_words(path: Path) -> None:
    words = json.loads(path.read_text())
    words[4], words[5] = words[5], words[4]
    path.write_text(json.dumps(words))


def _set_image_size(path: Path) -> None:
    meta = json.loads(path.read_text())
    meta["image_size"] *= 2
    path.write_text(json.dumps(meta, indent=2))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = [   # (folder, file, damage, what the message says)
    ("hub", "model.safetensors", _truncate, "truncated or replaced"),
    ("hub", "model.safetensors", lambda p: shutil.copy(p.parent.parent / "onnx" / "encoder.onnx", p), "replaced"),
    ("hub", "config.json", lambda p: p.write_text("{not json"), "config.json"),
    ("hub", "config.json", lambda p: p.write_text("[1, 2]"), "config.json"),
    ("hub", "config.json", _set_image_size, "changed since the export"),
    ("hub", "vocab.json", _swap_words, "changed since the export"),
    ("hub", "concepts.json", Path.unlink, "missing"),
    ("onnx", "encoder.onnx", _truncate, "truncated or replaced"),
    ("onnx", "cross.onnx", lambda p: p.write_bytes(b""), "truncated or replaced"),
    ("onnx", "decoder_step.onnx", lambda p: shutil.copy(p.parent / "cross.onnx", p), "replaced"),
    ("onnx", "vocab.json", _swap_words, "changed since the export"),
    ("onnx", "concepts.json", Path.unlink, "missing"),
]


@pytest.mark.parametrize("kind, name, damage, words", DAMAGE,
                         ids=[f"{k}-{n}-{i}" for i, (k, n, _, _) in enumerate(DAMAGE)])
def test_a_damaged_export_is_refused_naming_the_file(hub_dir, onnx_dir, tiny_images, tmp_path, capsys, kind, name,
                                                     damage, words):
    from fsgr.export import load_exported

    (tmp_path / "onnx").symlink_to(onnx_dir)
    folder = tmp_path / "model"
    shutil.copytree(hub_dir if kind == "hub" else onnx_dir, folder)
    damage(folder / name)
    with pytest.raises(CheckpointError, match=name):
        load_exported(folder)
    for verb in (["caption", "--model", str(folder), str(tiny_images[0])], ["serve", "--model", str(folder),
                                                                           "--port", "0"]):
        assert cli_main(verb) == 2
        err = capsys.readouterr().err
        assert err.startswith("fsgr: error:") and str(folder / name) in err and words in err, err
        assert "internal error" not in err and err.count("\n") == 1


def test_the_onnx_server_refuses_as_the_checkpoints(onnx_captioner, live, tiny_images):
    import io

    from PIL import Image

    from fsgr.serving.server import create_app

    buf = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buf, format="PNG")
    with live(create_app(onnx_captioner, max_pixels=10_000)) as client:
        image = {"image": ("a.jpg", tiny_images[0].read_bytes())}
        assert client.post("/api/caption", files=image).json()["caption"] == onnx_captioner.caption(
            [str(tiny_images[0])])[0]
        for files, data, status in [(image, {"beam": "-1"}, 400), (image, {"max_len": "500"}, 400),
                                    (image, {"beam": "100000"}, 400), (image, {"length_penalty": "30"}, 400),
                                    (image, {"length_penalty": "1e308"}, 400),
                                    ({"image": ("b.png", buf.getvalue())}, {}, 413),
                                    ({"image": ("c.jpg", b"no image")}, {}, 415)]:
            r = client.post("/api/caption", files=files, data=data)
            assert r.status_code == status and r.json()["error"], r.text


def test_an_onnx_export_decodes_in_fp32_only(onnx_dir, onnx_captioner):
    from fsgr.errors import ConfigError
    from fsgr.export import load_exported

    assert onnx_captioner.precision == "fp32" and load_exported(onnx_dir, precision="train").precision == "fp32"
    with pytest.raises(ConfigError, match="--precision bf16: an ONNX export"):
        load_exported(onnx_dir, precision="bf16")
