"""Provenance and server files of a trained model: summary.json and `fsgr evaluate` carry the signature (decoding
settings, SCST recipe); `--coco-results` / `--nocaps-results` write the official servers' files."""

import json
import shutil

import pytest

from fsgr.cli import main as cli_main
from fsgr.config import load_config
from fsgr.training.engine import train



@pytest.fixture(scope="module")
def coco_named(tmp_path_factory, tiny_data, tiny_kit):
    """The tiny dataset with COCO file names (COCO_val2014_<12-digit id>.jpg, id = imgid), trained for one XE epoch."""
    root = tmp_path_factory.mktemp("coco_named")
    data = json.loads(tiny_data.read_text())
    for im in data["images"]:
        name = f"COCO_val2014_{im['imgid']:012d}.jpg"
        shutil.copy(tiny_data.parent / im["filename"], root / name)
        im["filename"] = name
    ann = root / "dataset_coco.json"
    ann.write_text(json.dumps(data))
    cfg = tiny_kit.write(root / "run.yaml", tiny_kit.config(ann, root / "run", train={"max_epochs": 1, "xe_most": 1}))
    summary = train(load_config(cfg), progress=False)
    return root, data, summary


def test_summary_and_evaluate_carry_the_signature(coco_named, tmp_path, capsys):
    root, data, summary = coco_named
    on_disk = json.loads((root / "run" / "summary.json").read_text())
    assert on_disk["signature"] == summary["signature"]
    sig = summary["signature"]
    assert "beam:2" in sig and "max-len:8" in sig and "|scst:" in sig and "cider-d:" in sig and "images:6" in sig
    best = str(root / "run" / "checkpoints" / "best.pt")
    assert cli_main(["evaluate", "--checkpoint", best, "--split", "test", "--coco-results", "fsgr",
                     "--results-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["signature"].startswith("fsgr:") and "beam:2" in report["signature"]
    rows = json.loads((tmp_path / "captions_val2014_fsgr_results.json").read_text())
    test_ids = sorted(im["imgid"] for im in data["images"] if im["split"] == "test")
    assert [r["image_id"] for r in rows] == test_ids and all(isinstance(r["caption"], str) for r in rows)


def test_caption_writes_server_files(coco_named, tmp_path, capsys):
    root, data, _ = coco_named
    best = str(root / "run" / "checkpoints" / "best.pt")
    images = sorted(str(p) for p in root.glob("COCO_val2014_*.jpg"))[:3]
    assert cli_main(["caption", "--checkpoint", best, "--coco-results", "mine", "--results-dir", str(tmp_path),
                     *images]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = json.loads((tmp_path / "captions_val2014_mine_results.json").read_text())
    assert rows == [{"image_id": int(p.rsplit("_", 1)[1][:-4]), "caption": line.split("\t")[1]}
                    for p, line in zip(images, lines)]
    info = tmp_path / "nocaps_val_image_info.json"
    info.write_text(json.dumps({"images": [{"id": k, "file_name": p.rsplit("/", 1)[1], "domain": "in-domain"}
                                           for k, p in enumerate(images)]}))
    out = tmp_path / "nocaps.json"
    assert cli_main(["caption", "--checkpoint", best, "--nocaps-results", str(out), "--nocaps-info", str(info),
                     *images]) == 0
    assert [r["image_id"] for r in json.loads(out.read_text())] == [0, 1, 2]
    # every image of the nocaps split is needed; a non-COCO file name has no server id
    assert cli_main(["caption", "--checkpoint", best, "--nocaps-results", str(out), "--nocaps-info", str(info),
                     *images[:2]]) == 2
    assert "without a caption" in capsys.readouterr().err
    other = tmp_path / "holiday.jpg"
    shutil.copy(images[0], other)
    assert cli_main(["caption", "--checkpoint", best, "--coco-results", "x", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holiday.jpg" in err and "not a COCO file name" in err
