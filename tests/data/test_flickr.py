"""Karpathy-format Flickr8k / Flickr30k files (`dataset_flickr8k.json`, `dataset_flickr30k.json`: no cocoid, no
filepath, image id = imgid) read, check and train like COCO; their standard split counts are checked."""

import json

import pytest
from PIL import Image

from fsgr.cli import main
from fsgr.data import readers
from fsgr.data.readers import read_karpathy
from fsgr.errors import DataError


@pytest.fixture
def flickr_file(tmp_path, flickr):
    """5 real Flickr8k images' captions (raw, as in Karpathy's file), tiny JPEGs under their Flickr names."""
    names = list(flickr)[:5]
    caps = {name: flickr[name] for name in names}
    images, sentid = [], 0
    for k, name in enumerate(names):
        Image.new("RGB", (40, 30), (10 * k, 100, 200)).save(tmp_path / name)
        sentences = []
        for c in caps[name]:
            sentences.append({"raw": c, "tokens": c.lower().split(), "sentid": sentid, "imgid": k})
            sentid += 1
        images.append({"filename": name, "imgid": k, "split": ["train", "train", "train", "val", "test"][k],
                       "sentids": [s["sentid"] for s in sentences], "sentences": sentences})
    path = tmp_path / "dataset_flickr8k.json"
    path.write_text(json.dumps({"dataset": "flickr8k", "images": images}))
    return path, names, caps


def test_flickr_karpathy_records(flickr_file):
    path, names, caps = flickr_file
    records = read_karpathy(path, path.parent)
    assert [(r.image_id, r.split) for r in records] == [(0, "train"), (1, "train"), (2, "train"), (3, "val"),
                                                        (4, "test")]
    assert records[0].path == str(path.parent / names[0]) and records[0].captions == tuple(caps[names[0]])
    assert main(["check-data", "--format", "karpathy", "--annotations", str(path), "--images",
                 str(path.parent)]) == 0


def test_flickr_standard_split_counts(flickr_file, monkeypatch):
    path, _, _ = flickr_file
    assert readers.KARPATHY_COUNTS["flickr8k"] == (6000, 1000, 1000)
    assert readers.KARPATHY_COUNTS["flickr30k"] == (29000, 1014, 1000)
    monkeypatch.setitem(readers.KARPATHY_COUNTS, "flickr8k", (2, 2, 1))  # pretend these 5 images are the whole set
    with pytest.raises(DataError, match="Karpathy Flickr8k split must be train/val/test = 2/2/1 images, got 3/1/1"):
        read_karpathy(path, path.parent)
    assert len(read_karpathy(path, path.parent, full_coco="off")) == 5
