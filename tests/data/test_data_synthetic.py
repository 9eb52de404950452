import json

import numpy as np
import pytest
from PIL import Image

from fsgr.data import synthetic as syn
from fsgr.data.config import DataConfig, SyntheticConfig
from fsgr.data.datasets import CaptionDataset, collate_captions
from fsgr.data.readers import read_records, split_counts
from fsgr.data.text import tokenize_captions
from fsgr.data.vocab import vocab_from_records
from fsgr.errors import DataError


def small(root, **kw):
    return SyntheticConfig(root=str(root), num_train=40, num_val=6, num_test=10, **kw)


def test_defaults_meet_the_demo_requirements():
    cfg = SyntheticConfig()
    assert cfg.num_test >= 1000 and cfg.image_size == 96 and cfg.captions_per_image == 5
    assert len(syn.COLOURS) >= 6 and len(syn.SHAPES) >= 4 and len(syn.SIZE_WORDS) == 2
    names = syn.concept_names()
    assert names[0] == "background" and len(names) == 1 + len(syn.COLOURS) * len(syn.SHAPES) + len(syn.BACKGROUNDS)
    cid = syn.concept_id("blue", "star")
    assert names[cid] == "blue star"
    assert syn.COLOUR_NAMES[syn.COLOUR_OF[cid]] == "blue" and syn.SHAPES[syn.SHAPE_OF[cid]] == "star"
    # each background texture is a concept of its own, after the objects (object ids unchanged)
    bid = syn.background_concept_id("striped")
    assert names[bid] == "striped background" and bid > cid and syn.COLOUR_OF[bid] == syn.SHAPE_OF[bid] == -1
    assert syn.is_background_concept(bid) and syn.is_background_concept(0) and not syn.is_background_concept(cid)


def test_generate_reads_through_the_karpathy_reader(tmp_path):
    cfg = small(tmp_path / "shapes")
    with pytest.raises(DataError, match="no synthetic shapes dataset here.*fsgr train"):
        read_records(DataConfig(format="synthetic", synthetic=cfg))      # reading never generates
    assert not (tmp_path / "shapes").exists()
    syn.generate(cfg)
    recs = read_records(DataConfig(format="synthetic", synthetic=cfg))
    assert split_counts(recs) == {"train": 40, "val": 6, "test": 10}
    r = recs[0]
    assert r.path.endswith("images/train/000000.jpg") and len(r.captions) == 5 and len(set(r.captions)) == 5
    with Image.open(r.path) as im:
        assert im.format == "JPEG" and im.size == (96, 96) and im.mode == "RGB"
    cmap = syn.load_concept_map(cfg.root, r.image_id)
    assert cmap.shape == (96, 96)


def test_captions_describe_the_objects_and_concept_map_matches(tmp_path):
    cfg = small(tmp_path / "s")
    root = syn.generate(cfg)
    data = json.loads((root / "dataset_shapes.json").read_text())
    counts = {1: 0, 2: 0, 3: 0}
    rel_words = 0
    for im in data["images"]:
        objs = im["objects"]
        counts[len(objs)] += 1
        caps = [s["raw"] for s in im["sentences"]]
        for o in objs:   # every object is named (colour and shape) by at least one caption
            assert any(f"{o['colour']} {o['shape']}" in c or f"{o['colour']} {o['shape']}" in c for c in caps)
        rel_words += sum(any(w in c for w in ("left of", "right of", "above", "below")) for c in caps)
        cmap = syn.load_concept_map(root, im["imgid"])
        present = set(np.unique(cmap).tolist()) - {0}
        assert present == {syn.concept_id(o["colour"], o["shape"]) for o in objs}
        # the concept map's pixels are where the object's colour is in the image
        rgb = np.asarray(Image.open(root / im["filepath"] / im["filename"]), dtype=float)
        for o in objs:
            mask = cmap == syn.concept_id(o["colour"], o["shape"])
            mean = rgb[mask].mean(0)
            assert np.abs(mean - np.array(syn.COLOURS[o["colour"]])).max() < 40
    assert all(n > 0 for n in counts.values())
    assert rel_words > 20
    sizes = {o["size"] for im in data["images"] for o in im["objects"]}
    assert sizes == {"small", "large"}


def test_generation_is_deterministic_and_reused(tmp_path):
    a = syn.generate(small(tmp_path / "a"))
    b = syn.generate(small(tmp_path / "b"))
    for rel in ("images/train/000003.jpg", "concepts/000050.png", "dataset_shapes.json"):
        if rel.endswith(".json"):
            assert json.loads((a / rel).read_text()) == json.loads((b / rel).read_text())
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes()
    stamp = (a / "manifest.json").stat().st_mtime_ns
    assert syn.generate(small(tmp_path / "a")) == a
    assert (a / "manifest.json").stat().st_mtime_ns == stamp          # reused, not rewritten
    (a / "images/test/000055.jpg").unlink()                           # incomplete -> regenerated
    syn.generate(small(tmp_path / "a"))
    assert (a / "images/test/000055.jpg").read_bytes() == (b / "images/test/000055.jpg").read_bytes()
    with pytest.raises(DataError, match="another config.*seed 0 there, 1 asked"):   # never replaced silently
        syn.generate(small(tmp_path / "a", seed=1))
    assert (a / "images/train/000003.jpg").read_bytes() == (b / "images/train/000003.jpg").read_bytes()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    with pytest.raises(DataError, match="not a synthetic shapes dataset"):
        syn.generate(small(foreign))


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_patch_concepts_and_object_mask():
    lab = np.zeros((96, 96), np.uint8)
    lab[0:12, 0:12] = 5                      # patch (0, 0) fully object 5
    lab[12:24, 12:15] = 7                    # patch (1, 1): 3/12 columns = 25% -> object at the 0.25 threshold
    lab[24:36, 24:26] = 9                    # patch (2, 2): 2/12 columns -> background
    lab[0:12, 84:90] = 3
    lab[0:12, 90:96] = 4                     # patch (0, 7): tie 3 vs 4 -> the lower id; all object
    p = syn.patch_concepts(lab, 8)
    assert p.shape == (64,) and p.dtype.is_floating_point is False
    grid = p.view(8, 8)
    assert grid[0, 0] == 5 and grid[1, 1] == 7 and grid[2, 2] == 0 and grid[0, 7] == 3
    assert syn.object_patch_mask(p).sum() == 3
    # with the image's texture, background patches are labelled with its concept, objects unchanged
    textured = syn.patch_concepts(lab, 8, background="checkered")
    assert torch_equal(textured[p != 0], p[p != 0]) and (textured[p == 0] == syn.background_concept_id("checkered")).all()
    assert syn.object_patch_mask(textured).sum() == 3
    assert syn.patch_concepts(lab, 4).view(4, 4)[0, 0] == 5   # coarser grid: 24x24 patches, 25% object
    with pytest.raises(DataError, match="concept map holds id"):
        syn.patch_concepts(np.full((8, 8), 200, np.uint8), 2)


def test_synthetic_patch_labels_feed_the_dataset(tmp_path):
    cfg = small(tmp_path / "s")
    syn.generate(cfg)
    recs = read_records(DataConfig(format="synthetic", synthetic=cfg))
    train = [r for r in recs if r.split == "train"]
    vocab = vocab_from_records(recs, min_freq=1)
    ds = CaptionDataset(train, vocab, image_size=96, batching="image", patch_labels=syn.PatchLabels(cfg.root, 8))
    batch = collate_captions([ds[0], ds[1]])
    assert batch.patch_labels.shape == (2, 64) and batch.num_captions == 10
    assert (batch.patch_labels > 0).any()
    # every caption word is in the vocabulary built from the same captions
    assert all(w in vocab.stoi for ws in tokenize_captions([c for r in train for c in r.captions]) for w in ws)


def _snapshot(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_check_data_reads_a_synthetic_dataset_and_never_writes(tmp_path, capsys):
    from fsgr.cli import main

    root = syn.generate(small(tmp_path / "shapes"))
    (root / "images/test/000050.jpg").unlink()
    (root / "images/train/000003.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    before = _snapshot(tmp_path)
    rc = main(["check-data", "--format", "synthetic", "--annotations", str(root), "--quiet", "--workers", "1"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "missing-image" in out and "000050.jpg" in out and "broken-image" in out and "000003.jpg" in out
    assert "images: train 40  val 6  test 10" in out                 # the dataset's own sizes, not the defaults
    assert _snapshot(tmp_path) == before                              # nothing repaired, regenerated or added
    rc = main(["check-data", "--format", "synthetic", "--annotations", str(tmp_path / "absent"), "--quiet"])
    assert rc == 2 and "no synthetic shapes dataset here" in capsys.readouterr().err
    assert not (tmp_path / "absent").exists()


def test_longtail_world_counts_tail_images_exactly_and_keeps_novel_pairs_out_of_training(tmp_path):
    cfg = SyntheticConfig(root=str(tmp_path / "lt"), world="longtail", num_train=60, num_val=6, num_test=9)
    data = json.loads((syn.generate(cfg) / "dataset_shapes.json").read_text())
    groups = syn.longtail_concepts()
    assert data["world"]["novel"] == groups["novel"] and len(groups["head"]) == 14
    seen: dict[str, dict[str, int]] = {}
    for im in data["images"]:
        for o in im["objects"]:
            counts = seen.setdefault(im["split"], {})
            counts[f"{o['colour']} {o['shape']}"] = counts.get(f"{o['colour']} {o['shape']}", 0) + 1
    train = seen["train"]
    for k, names in groups["tail"].items():
        assert [train.get(n, 0) for n in names] == [int(k)] * len(names)     # in exactly k training images
    assert not set(groups["novel"]) & set(train) and not set(groups["novel"]) & set(seen["val"])
    # every colour and every shape is still seen in training
    assert {n.split()[0] for n in train} == set(syn.COLOURS) and {n.split()[1] for n in train} == set(syn.SHAPES)
    assert set(seen["val"]) <= set(groups["head"])
    tests = [im for im in data["images"] if im["split"] == "test"]
    assert [im["subset"] for im in tests] == ["iid"] * 3 + ["tail"] * 3 + ["novel"] * 3
    tails = {n for v in groups["tail"].values() for n in v}
    for im in tests:
        names = {f"{o['colour']} {o['shape']}" for o in im["objects"]}
        first = f"{im['objects'][0]['colour']} {im['objects'][0]['shape']}"
        assert {"iid": set(groups["head"]), "tail": tails, "novel": set(groups["novel"])}[im["subset"]] >= {first}
        assert names - {first} <= set(groups["head"])
    assert "world" in json.loads((tmp_path / "lt" / "manifest.json").read_text())["config"]


def test_the_shapes_world_is_unchanged_by_worlds(tmp_path):
    """Datasets generated before `world` existed still match their config (no regeneration, no refusal)."""
    cfg = SyntheticConfig(root=str(tmp_path / "s"), num_train=3, num_val=1, num_test=1)
    syn.generate(cfg)
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert "world" not in manifest["config"] and syn.is_complete(tmp_path / "s", cfg)
    assert "world" not in json.loads((tmp_path / "s" / "dataset_shapes.json").read_text())
