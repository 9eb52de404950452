"""CLIPScore / RefCLIPScore against the reference implementation's computation done with OpenAI's own CLIP code on
the same (random) weights: torchvision's Resize + CenterCrop + ToTensor + Normalize reproduced with PIL, OpenAI's
tokenizer on "A photo depicts " + caption, features L2-normalised, w * max(cos, 0), harmonic mean with the best
candidate-reference cosine."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsgr.cli import main
from fsgr.evaluation.clipscore import ClipScorer

# OpenAI's own CLIP code, which the CLIP tests also compare against (tests/models/openai_reference.py)
_spec = importlib.util.spec_from_file_location("openai_reference",
                                               Path(__file__).resolve().parents[1] / "models" / "openai_reference.py")
_openai = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_openai)
openai_tokenize, random_openai_clip = _openai.openai_tokenize, _openai.random_openai_clip

MEAN = np.array((0.48145466, 0.4578275, 0.40821073))
STD = np.array((0.26862954, 0.26130258, 0.27577711))


@pytest.fixture(scope="module")
def reference():
    return random_openai_clip()


@pytest.fixture(scope="module")
def setup(reference, real_data, tmp_path_factory):
    """A CLIP file, an image folder (two real COCO photos by their COCO names, a wide PNG by its id), captions."""
    root = tmp_path_factory.mktemp("clipscore")
    torch.save(reference.state_dict(), root / "clip.pt")
    images = root / "images"
    images.mkdir()
    for name in ("COCO_val2014_000000391895.jpg", "COCO_val2014_000000397133.jpg"):
        shutil.copy(real_data / name, images / name)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 90, 3), dtype=np.uint8)).save(images / "7.png")
    files = {391895: images / "COCO_val2014_000000391895.jpg", 397133: images / "COCO_val2014_000000397133.jpg",
             7: images / "7.png"}
    captions = {391895: "A man riding a motorcycle on a dirt road.", 397133: "A man cooking in a kitchen.",
                7: "noise"}
    refs = {391895: ["A person rides a motor bike.", "A man on a motorcycle in the mountains."],
            397133: ["A chef prepares food.", "Two people in a restaurant kitchen."], 7: ["static on a screen"]}
    return root, images, files, captions, refs


def reference_preprocess(path, n_px):
    """torchvision Resize(n_px, BICUBIC) -> CenterCrop(n_px) -> RGB -> ToTensor -> Normalize, with PIL and numpy."""
    img = Image.open(path)
    w, h = img.size
    ow, oh = (n_px, int(n_px * h / w)) if w <= h else (int(n_px * w / h), n_px)
    img = img.resize((ow, oh), Image.BICUBIC)
    top, left = int(round((oh - n_px) / 2.0)), int(round((ow - n_px) / 2.0))
    img = img.crop((left, top, left + n_px, top + n_px)).convert("RGB")
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - MEAN.astype(np.float32)) / STD.astype(np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def reference_scores(model, files, captions, refs, ids):
    with torch.no_grad():
        img = model.encode_image(torch.stack([reference_preprocess(files[i], 32) for i in ids])).numpy()
        cand = model.encode_text(openai_tokenize([f"A photo depicts {captions[i]}" for i in ids])).numpy()
        flat = [r for i in ids for r in refs[i]]
        ref = model.encode_text(openai_tokenize([f"A photo depicts {r}" for r in flat])).numpy()
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731 - sklearn's normalize
    img, cand, ref = norm(img), norm(cand), norm(ref)
    clip_s = 2.5 * np.clip(np.sum(img * cand, axis=1), 0, None)
    owner = np.repeat(np.arange(len(ids)), [len(refs[i]) for i in ids])
    text_text = np.array([np.max(cand[k] @ ref[owner == k].T) for k in range(len(ids))])
    ref_clip_s = 2 * clip_s * text_text / (clip_s + text_text)
    return clip_s, ref_clip_s


def test_equal_to_openai_reference(setup, reference):
    root, images, files, captions, refs = setup
    ids = [391895, 397133, 7]
    scorer = ClipScorer(root / "clip.pt", images, device="cpu")
    clip_s, ref_clip_s = reference_scores(reference, files, captions, refs, ids)
    ours = scorer.clipscore(ids, [captions[i] for i in ids])
    ours_ref = scorer.refclipscore(ids, [captions[i] for i in ids], [refs[i] for i in ids])
    np.testing.assert_allclose(ours, clip_s, atol=2e-5, rtol=0)
    np.testing.assert_allclose(ours_ref, ref_clip_s, atol=2e-5, rtol=0)
    assert (ours >= 0).all() and len(set(np.round(ours, 6))) == 3  # not a constant


def test_cli_routes_clipscore(setup, reference, tmp_path, capsys):
    root, images, files, captions, refs = setup
    ids = [391895, 397133, 7]
    refs_path = tmp_path / "refs.json"
    refs_path.write_text(json.dumps({"annotations": [{"image_id": i, "caption": r} for i in ids for r in refs[i]]}))
    preds_path = tmp_path / "preds.json"
    preds_path.write_text(json.dumps([{"image_id": i, "caption": captions[i]} for i in ids]))
    out = tmp_path / "s.json"
    assert main(["score", "--refs", str(refs_path), "--preds", str(preds_path), "--metrics",
                 "clipscore,refclipscore,cider", "--clip", str(root / "clip.pt"), "--images", str(images),
                 "--device", "cpu", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    clip_s, ref_clip_s = reference_scores(reference, files, captions, refs, ids)
    assert data["CLIPScore"] == pytest.approx(clip_s.mean(), abs=2e-5)
    assert data["RefCLIPScore"] == pytest.approx(ref_clip_s.mean(), abs=2e-5)
    assert "clipscore:w=2.5" in data["signature"] and "CIDEr" in data


def test_missing_image_is_named(setup, tmp_path, capsys):
    root, images, files, captions, refs = setup
    refs_path = tmp_path / "refs.json"
    refs_path.write_text(json.dumps({"annotations": [{"image_id": 5551212, "caption": "a dog"}]}))
    preds_path = tmp_path / "preds.json"
    preds_path.write_text(json.dumps([{"image_id": 5551212, "caption": "a dog"}]))
    assert main(["score", "--refs", str(refs_path), "--preds", str(preds_path), "--metrics", "clipscore",
                 "--clip", str(root / "clip.pt"), "--images", str(images), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "5551212" in err and str(images) in err
