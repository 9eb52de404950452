import json
import pickle

import numpy as np

from fsgr.cli import main as fsgr
from fsgr.data.vocab import Vocab


def run(capsys, *argv):
    rc = fsgr(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_check_data_passes_a_clean_m2_dataset(m2_dataset, capsys, tmp_path):
    ann, images, _ = m2_dataset
    assert run(capsys, "build-vocab", "--format", "m2", "--annotations", str(ann), "--images", str(images),
               "--out", str(tmp_path / "v.json"), "--min-freq", "1")[0] == 0
    rc, out, err = run(capsys, "check-data", "--format", "m2", "--annotations", str(ann), "--images", str(images),
                       "--vocab", str(tmp_path / "v.json"), "--workers", "2", "--json", str(tmp_path / "r.json"))
    assert rc == 0, out + err
    assert "check-data: OK" in out and "PROBLEM" not in out
    assert "images: train 9  val 3  test 3" in out and "image files decoded: 15" in out
    assert "out-of-vocabulary words 0.00%" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and report["counts"] == {"train": 9, "val": 3, "test": 3}


def test_check_data_refuses_a_broken_m2_dataset_naming_each_problem(m2_dataset, capsys, tmp_path):
    ann, images, info = m2_dataset
    truncated = info["paths"][101]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    missing = info["paths"][503]
    missing.unlink()
    caps = json.loads((ann / "captions_val2014.json").read_text())
    empty_ann = info["ann_of"][506][1]
    for a in caps["annotations"]:
        if a["id"] == empty_ann:
            a["caption"] = " . "
    (ann / "captions_val2014.json").write_text(json.dumps(caps))
    rc, out, err = run(capsys, "check-data", "--format", "m2", "--annotations", str(ann), "--images", str(images),
                       "--workers", "2", "--quiet")
    assert rc == 1
    assert "Traceback" not in out + err
    lines = [l for l in out.splitlines() if l.startswith("PROBLEM")]
    assert any(f"file={truncated}" in l and "image_id=101" in l and "truncated" in l for l in lines), out
    assert any(l.startswith("PROBLEM missing-image") and f"file={missing}" in l and "image_id=503" in l
               and "not found" in l for l in lines), out
    assert any(l.startswith("PROBLEM empty-caption") and f"annotation_id={empty_ann}" in l and "image_id=506" in l
               for l in lines), out
    assert len(lines) == 3
    assert "check-data: 3 problem(s): broken-image 1, empty-caption 1, missing-image 1" in out


def test_check_data_counts_overlap_and_length(m2_dataset, capsys):
    ann, images, info = m2_dataset
    # a test caption's annotation id also listed in dev: the image is in two splits
    np.save(ann / "coco_dev_ids.npy", np.asarray(info["ids"]["dev"] + [info["ann_of"][507][0]]))
    rc, out, _ = run(capsys, "check-data", "--format", "m2", "--annotations", str(ann), "--images", str(images),
                     "--no-images", "--expect-counts", "9,3,3", "--max-len", "6", "--length-policy", "refuse")
    assert rc == 1
    assert "PROBLEM split-overlap image_id=507" in out
    assert "PROBLEM caption-too-long" in out        # "a man is riding a wave on top of a surfboard" > 4 words
    rc, out, _ = run(capsys, "check-data", "--format", "m2", "--annotations", str(ann), "--images", str(images),
                     "--no-images", "--expect-counts", "10,3,3")
    assert rc == 1 and "PROBLEM split-counts" in out and "expected train/val/test = 10/3/3" in out


def test_check_data_structural_errors_are_one_line(tmp_path, capsys, m2_dataset):
    ann, images, _ = m2_dataset
    # a vocab.pkl whose stoi points past its table (the reference's embedding-size bug, as data) is refused
    (tmp_path / "bad_vocab.pkl").write_bytes(pickle.dumps(
        {"itos": ["<unk>", "<pad>", "<bos>", "<eos>", "a"], "stoi": {"a": 4, "man": 40}}, protocol=3))
    rc, out, err = run(capsys, "check-data", "--format", "m2", "--annotations", str(ann), "--images", str(images),
                       "--no-images", "--vocab", str(tmp_path / "bad_vocab.pkl"))
    assert rc == 2 and "Traceback" not in err
    assert "bad_vocab.pkl: stoi['man'] = 40 disagrees with itos (size 5)" in err
    rc, out, err = run(capsys, "check-data", "--format", "karpathy", "--annotations", str(tmp_path / "none.json"),
                       "--images", str(tmp_path))
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == f"fsgr: error: {tmp_path / 'none.json'}: annotation file not found"


def test_build_vocab_from_m2_pkl_and_from_annotations(real_data, tmp_path, capsys, m2_dataset):
    rc, out, _ = run(capsys, "build-vocab", "--from-m2-pkl", str(real_data / "m2_vocab.pkl"),
                     "--out", str(tmp_path / "m2.json"))
    assert rc == 0 and "10,201 words" in out
    v = Vocab.load(tmp_path / "m2.json")
    assert len(v) == 10201 and v.itos[4:10] == ["a", "on", "of", "the", "in", "with"]
    ann, images, _ = m2_dataset
    rc, out, _ = run(capsys, "build-vocab", "--format", "m2", "--annotations", str(ann), "--out",
                     str(tmp_path / "b.json"), "--min-freq", "5")
    assert rc == 0
    built = Vocab.load(tmp_path / "b.json")
    assert built.itos[4] == "a"   # the most frequent word of the generated captions
    rc, out, _ = run(capsys, "build-vocab", "--format", "m2", "--annotations", str(ann), "--out",
                     str(tmp_path / "c.json"), "--min-freq", "5", "--vocab-splits", "train,val")
    assert rc == 0 and len(Vocab.load(tmp_path / "c.json")) >= len(built)
