"""Small generated datasets in the real formats (M2 folder, Karpathy JSON, COCO JSON) with real JPEG files."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CAPTIONS = [
    "A man riding a horse on a beach.",
    "A dog sitting on a red couch",
    "Two people walking down the street.",
    "A plate of food with broccoli and rice.",
    "A cat sleeping on a laptop keyboard.",
    "A man is riding a wave on top of a surfboard.",
]


def write_jpeg(path: Path, seed: int, size=(64, 48)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    a = rng.integers(0, 256, size=(size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    Image.fromarray(a).resize(size, Image.BILINEAR).save(path, quality=90)


def make_m2(root: Path, n_train=6, n_restval=3, n_dev=3, n_test=3, caps_per_image=2):
    """An M2-layout dataset: m2_annotations/captions_{train,val}2014.json + coco_*_ids.npy (ANNOTATION ids),
    images/{train2014,val2014}/COCO_*.jpg. Returns (annotations folder, images root, info)."""
    ann = root / "m2_annotations"
    images = root / "images"
    ann.mkdir(parents=True)
    info = {"ids": {}, "paths": {}, "ann_of": {}}
    next_ann = 1000
    for json_name, sub, parts in (("captions_train2014.json", "train2014", [("train", n_train)]),
                                  ("captions_val2014.json", "val2014",
                                   [("restval", n_restval), ("dev", n_dev), ("test", n_test)])):
        imgs, anns = [], []
        base = 100 if sub == "train2014" else 500
        for part, n in parts:
            ids = []
            for _ in range(n):
                iid = base
                base += 1
                name = f"COCO_{sub}_{iid:012d}.jpg"
                write_jpeg(images / sub / name, iid)
                imgs.append({"id": iid, "file_name": name, "width": 64, "height": 48})
                info["paths"][iid] = images / sub / name
                for k in range(caps_per_image):
                    anns.append({"id": next_ann, "image_id": iid,
                                 "caption": CAPTIONS[(iid + k) % len(CAPTIONS)]})
                    info["ann_of"].setdefault(iid, []).append(next_ann)
                    ids.append(next_ann)
                    next_ann += 1
            info["ids"][part] = ids
            np.save(ann / f"coco_{part}_ids.npy", np.asarray(ids, dtype=np.int64))
        (ann / json_name).write_text(json.dumps({"images": imgs, "annotations": anns}))
    return ann, images, info


def make_karpathy(root: Path, splits=("train", "train", "restval", "val", "test"), dataset="coco", flickr=False):
    images = root / "images"
    entries = []
    for i, split in enumerate(splits):
        sub = "val2014" if split in ("restval", "val", "test") else "train2014"
        name = f"img{i}.jpg"
        e = {"filename": name, "imgid": i, "split": split, "sentids": [10 * i, 10 * i + 1],
             "sentences": [{"raw": CAPTIONS[i % 6], "tokens": [], "sentid": 10 * i, "imgid": i},
                           {"raw": CAPTIONS[(i + 1) % 6], "tokens": [], "sentid": 10 * i + 1, "imgid": i}]}
        if flickr:
            write_jpeg(images / name, i)
        else:
            e.update(filepath=sub, cocoid=9000 + i)
            write_jpeg(images / sub / name, i)
        entries.append(e)
    path = root / "dataset.json"
    path.write_text(json.dumps({"images": entries, "dataset": dataset}))
    return path, images


@pytest.fixture
def m2_dataset(tmp_path):
    return make_m2(tmp_path)


class _Factory:
    make_m2 = staticmethod(make_m2)
    make_karpathy = staticmethod(make_karpathy)
    write_jpeg = staticmethod(write_jpeg)
    captions = CAPTIONS


@pytest.fixture
def factory():
    """The generators above (test modules cannot import this conftest by name: tests/conftest.py shadows it)."""
    return _Factory
