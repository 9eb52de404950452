import json

import numpy as np
import pytest

from fsgr.data import readers
from fsgr.data.config import DataConfig
from fsgr.data.readers import (by_split, check_full_coco, read_coco, read_karpathy, read_m2, read_records,
                               split_counts)
from fsgr.data.records import ImageRecord
from fsgr.errors import DataError


def test_m2_reader_uses_annotation_ids_and_train_plus_restval(m2_dataset):
    ann, images, info = m2_dataset
    recs = read_m2(ann, images)
    assert split_counts(recs) == {"train": 6 + 3, "val": 3, "test": 3}
    by_id = {r.image_id: r for r in recs}
    # restval images come from val2014 but train on
    restval_image = 500
    assert by_id[restval_image].split == "train"
    assert by_id[restval_image].path.endswith("val2014/COCO_val2014_000000000500.jpg")
    assert by_id[100].path == str(info["paths"][100])
    assert by_id[100].annotation_ids == tuple(info["ann_of"][100])
    assert len(by_id[100].captions) == 2 and by_id[100].captions[0]
    # dev -> val, test -> test
    assert {r.split for r in recs if r.image_id in (503, 504, 505)} == {"val"}
    assert all(r.split == "test" for r in recs if r.image_id >= 506)
    assert cfg_read(DataConfig(format="m2", annotations=str(ann), images=str(images))) == recs


def cfg_read(cfg):
    return read_records(cfg)


def test_m2_reader_only_takes_listed_annotations_and_reports_unknown_ids(m2_dataset):
    ann, images, info = m2_dataset
    # drop one caption of image 100 from the train id file, add an id that exists nowhere
    ids = [i for i in info["ids"]["train"] if i != info["ann_of"][100][1]] + [999999]
    np.save(ann / "coco_train_ids.npy", np.asarray(ids))
    problems = []
    recs = read_m2(ann, images, problems=problems)
    r100 = next(r for r in recs if r.image_id == 100)
    assert r100.annotation_ids == (info["ann_of"][100][0],)
    assert [(p.kind, p.annotation_id) for p in problems] == [("unknown-annotation", 999999)]
    with pytest.raises(DataError, match="annotation_id=999999.*not in captions_train2014.json"):
        read_m2(ann, images)


def test_m2_reader_refuses_an_image_in_two_splits(m2_dataset):
    ann, images, info = m2_dataset
    dev = list(info["ids"]["dev"]) + [info["ann_of"][506][0]]   # a test image's caption also listed in dev
    np.save(ann / "coco_dev_ids.npy", np.asarray(dev))
    with pytest.raises(DataError, match=r"split-overlap image_id=506.*both (val|test) and (val|test)"):
        read_m2(ann, images)


def test_m2_reader_missing_files(tmp_path, m2_dataset):
    ann, images, _ = m2_dataset
    (ann / "coco_test_ids.npy").unlink()
    with pytest.raises(DataError, match="coco_test_ids.npy: M2 id file not found"):
        read_m2(ann, images)
    with pytest.raises(DataError, match="M2 annotation folder not found"):
        read_m2(tmp_path / "nope", images)


def test_karpathy_reader_coco(tmp_path, factory):
    path, images = factory.make_karpathy(tmp_path)
    recs = read_karpathy(path, images)
    assert [r.split for r in recs] == ["train", "train", "train", "val", "test"]   # restval -> train
    assert recs[2].image_id == 9002 and recs[2].path == str(images / "val2014" / "img2.jpg")
    assert recs[0].annotation_ids == (0, 1) and recs[0].captions[0] == factory.captions[0]
    assert by_split(recs, "val")[0].image_id == 9003


def test_karpathy_reader_flickr_layout_uses_imgid_and_flat_folder(tmp_path, factory):
    path, images = factory.make_karpathy(tmp_path, splits=("train", "val", "test"), dataset="flickr8k", flickr=True)
    recs = read_karpathy(path, images)
    assert [r.image_id for r in recs] == [0, 1, 2]
    assert recs[1].path == str(images / "img1.jpg")


def test_karpathy_unknown_split_and_duplicates(tmp_path, factory):
    path, images = factory.make_karpathy(tmp_path)
    data = json.loads(path.read_text())
    data["images"][0]["split"] = "holdout"
    data["images"][4]["cocoid"] = 9003          # same image id as the val image
    path.write_text(json.dumps(data))
    problems = []
    read_karpathy(path, images, problems=problems)
    assert sorted(p.kind for p in problems) == ["split-overlap", "unknown-split"]


def test_full_coco_karpathy_counts_are_stated_and_checked():
    def recs(n_train, n_val, n_test):
        out = [ImageRecord(i, "", "train", (), ()) for i in range(n_train)]
        out += [ImageRecord(i, "", "val", (), ()) for i in range(n_val)]
        return out + [ImageRecord(i, "", "test", (), ()) for i in range(n_test)]

    assert readers.KARPATHY_COUNTS["coco"] == (113287, 5000, 5000)
    assert sum(readers.KARPATHY_COUNTS["coco"]) == readers.COCO_TOTAL_IMAGES == 123287
    check_full_coco(recs(113287, 5000, 5000), "f.json", "auto", is_full=True)    # passes
    with pytest.raises(DataError, match=r"113,287/5,000/5,000 images, got 113,288/4,999/5,000"):
        check_full_coco(recs(113288, 4999, 5000), "f.json", "auto", is_full=True)
    check_full_coco(recs(10, 2, 2), "f.json", "auto", is_full=False)               # a subset: not checked
    with pytest.raises(DataError, match="split-counts"):
        check_full_coco(recs(10, 2, 2), "f.json", "require", is_full=False)
    check_full_coco(recs(10, 2, 2), "f.json", "off", is_full=True)


def test_karpathy_full_coco_detection(tmp_path, factory, monkeypatch):
    path, images = factory.make_karpathy(tmp_path)       # 5 images, dataset "coco": 3/1/1
    monkeypatch.setattr(readers, "COCO_TOTAL_IMAGES", 5)  # pretend 5 images is the full set
    with pytest.raises(DataError, match="Karpathy COCO split must be"):
        read_karpathy(path, images)
    assert len(read_karpathy(path, images, full_coco="off")) == 5


def test_coco_reader_with_split_json_karpathy_file_and_single_split(tmp_path, m2_dataset, factory):
    ann, images, info = m2_dataset
    caps = f"{ann / 'captions_train2014.json'},{ann / 'captions_val2014.json'}"
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": [100, 101], "restval": [500], "val": [503], "test": [506]}))
    recs = read_coco(caps, images, str(splits))
    assert sorted((r.image_id, r.split) for r in recs) == [(100, "train"), (101, "train"), (500, "train"),
                                                          (503, "val"), (506, "test")]
    r500 = next(r for r in recs if r.image_id == 500)
    assert r500.path == str(info["paths"][500])          # captions_val2014.json -> images/val2014/
    assert r500.annotation_ids == tuple(info["ann_of"][500])
    one = read_coco(ann / "captions_val2014.json", images, "test")
    assert len(one) == 9 and {r.split for r in one} == {"test"}
    with pytest.raises(DataError, match="needs a split list"):
        read_coco(caps, images, "")
    splits.write_text(json.dumps({"train": [100], "val": [100]}))
    with pytest.raises(DataError, match="image id 100 is in both train and val"):
        read_coco(caps, images, str(splits))
    # a Karpathy file as the split list (by cocoid)
    kpath, _ = factory.make_karpathy(tmp_path / "k")
    data = json.loads(kpath.read_text())
    data["images"][0]["cocoid"] = 101
    data["images"][3]["cocoid"] = 502
    kpath.write_text(json.dumps(data))
    problems = []
    recs = read_coco(caps, images, str(kpath), problems=problems)
    assert sorted((r.image_id, r.split) for r in recs) == [(101, "train"), (502, "val")]
    assert [p.kind for p in problems] == ["unknown-image"]   # the other 3 cocoids are in no caption file


def test_coco_reader_reports_bad_annotations(tmp_path):
    caps = tmp_path / "captions.json"
    caps.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                "annotations": [{"id": 5, "image_id": 1, "caption": None},
                                                {"id": 6, "image_id": 2, "caption": "x"}]}))
    problems = []
    read_coco(caps, tmp_path, "train", problems=problems)
    assert [(p.kind, p.image_id, p.annotation_id) for p in problems] == [("bad-caption", 1, 5),
                                                                         ("unknown-image", 2, 6)]
    caps.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_coco(caps, tmp_path, "train")


def test_read_records_dispatch_errors():
    with pytest.raises(DataError, match="data.annotations is empty"):
        read_records(DataConfig(format="karpathy"))


def test_karpathy_duplicate_sentids_are_found(tmp_path, factory):
    path, images = factory.make_karpathy(tmp_path)
    data = json.loads(path.read_text())
    first, second = data["images"][0], data["images"][1]
    second["sentences"][0]["sentid"] = first["sentences"][0]["sentid"]      # the same sentid on two images
    path.write_text(json.dumps(data))
    problems = []
    recs = read_karpathy(path, images, problems=problems)
    dup = [p for p in problems if p.kind == "duplicate-annotation"]
    assert len(dup) == 1 and dup[0].annotation_id == first["sentences"][0]["sentid"]
    assert str(first.get("cocoid", first.get("imgid"))) in dup[0].reason
    assert sum(len(r.annotation_ids) for r in recs) == sum(len(im["sentences"]) for im in data["images"]) - 1
    with pytest.raises(DataError, match="annotation id"):
        read_karpathy(path, images)
