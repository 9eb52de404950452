"""`fsgr demo` on a reduced config with the shipped tiny CLIP and codebook: files, keys, numbers that mean something
(the model beats an image-blind captioner; the blind one is far below the human ceiling), and the user verbs on its
checkpoint (`fsgr evaluate`, `fsgr caption`, `fsgr explain`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fsgr.data.synthetic import CONCEPTS

REDUCED = ["data.synthetic.num_train=500", "data.synthetic.num_val=40", "data.synthetic.num_test=120",
           "train.max_epochs=2", "train.xe_least=2", "train.xe_most=2", "train.lr_milestones=[5]",
           "scst.max_epochs=1", "eval.batch_images=60"]


def fsgr(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "fsgr", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"fsgr {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "run"
    proc = fsgr("demo", "--out", str(out), "--no-progress", *REDUCED)
    assert "CIDEr / ceiling" in proc.stdout and "patch accuracy" in proc.stdout   # the closing table
    return out


def test_demo_writes_metrics_checkpoint_and_explanation(demo_run):
    m = json.loads((demo_run / "metrics.json").read_text())
    for key in ("test", "ceiling", "semantic_patch_accuracy", "seconds", "semantic_colour_accuracy",
                "semantic_shape_accuracy", "tiny_clip_alone", "image_blind", "untrained_fsgr_head", "examples"):
        assert key in m, key
    for scores in (m["test"], m["ceiling"], m["image_blind"]):
        assert {"BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"} <= set(scores)
    assert m["num_test_images"] == 120 and m["object_patches"] > 100
    for acc in (m["semantic_patch_accuracy"], m["semantic_colour_accuracy"], m["semantic_shape_accuracy"],
                m["tiny_clip_alone"]["accuracy"]):
        assert 0.0 <= acc <= 1.0
    assert m["semantic_colour_accuracy"] >= m["semantic_patch_accuracy"]
    assert (demo_run / "checkpoints" / "best.pt").is_file()
    with Image.open(demo_run / "explain.png") as im:
        assert im.format == "PNG" and im.width >= 96
    assert len(m["examples"]) == 5 and all(e["caption"] for e in m["examples"])
    preds = json.loads((demo_run / "predictions" / "test_demo.json").read_text())
    assert len(preds) == 120


def test_demo_model_sees_the_image(demo_run):
    m = json.loads((demo_run / "metrics.json").read_text())
    # a captioner that ignores the image is far from the human level, and the trained model is well above it
    assert m["image_blind"]["CIDEr"] < 0.3 * m["ceiling"]["CIDEr"]
    assert m["test"]["CIDEr"] > 1.2 * m["image_blind"]["CIDEr"]
    assert m["test"]["BLEU-4"] > m["image_blind"]["BLEU-4"]


def test_verbs_on_the_demo_checkpoint(demo_run, tmp_path):
    best = demo_run / "checkpoints" / "best.pt"
    ev = fsgr("evaluate", "--checkpoint", str(best), "--split", "test", "--beam", "2",
              "eval.max_images=20", "--out", str(tmp_path / "preds.json"))
    report = json.loads(ev.stdout.strip().splitlines()[-1])
    assert report["num_images"] == 20 and report["CIDEr"] > 0
    assert len(json.loads((tmp_path / "preds.json").read_text())) == 20

    images = sorted((demo_run / "shapes" / "images" / "test").glob("*.jpg"))[:2]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    cap = fsgr("caption", "--checkpoint", str(best), *map(str, images), str(bad), check=False)
    assert cap.returncode == 1 and "Traceback" not in cap.stderr and str(bad) in cap.stderr
    lines = cap.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(p) for p in images]
    assert all(line.split("\t")[1].strip() for line in lines)

    png = tmp_path / "map.png"
    ex = fsgr("explain", "--checkpoint", str(best), str(images[0]), "--out", str(png))
    assert ex.stdout.startswith(str(images[0]))
    with Image.open(png) as im:
        assert im.format == "PNG"


def test_shipped_concept_list():
    from importlib import resources

    assets = resources.files("fsgr").joinpath("assets")
    assert assets.joinpath("shapes_concepts.txt").read_text().split("\n")[:-1] == CONCEPTS


@pytest.mark.parametrize("name", ["metrics.json", "explain.png"])
def test_demo_refuses_a_folder_holding_a_users_file_of_its_names(tmp_path, name, capsys):
    from fsgr.cli import main

    out = tmp_path / "demo"
    out.mkdir()
    (out / name).write_bytes(b"not the demo's")
    assert main(["demo", "--out", str(out), "--no-progress"]) == 2
    assert f"{out / name}: exists and was not written by fsgr demo" in capsys.readouterr().err
    assert (out / name).read_bytes() == b"not the demo's" and [p.name for p in out.iterdir()] == [name]
