import numpy as np
import pytest
import torch
from PIL import Image

from fsgr.data.images import CLIP_MEAN, CLIP_STD, load_image, preprocess, to_rgb
from fsgr.errors import DataError


def _unnorm(x):
    return x * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)


def test_normalisation_matches_clip_formula():
    img = Image.new("RGB", (8, 8), (255, 128, 0))
    x = preprocess(img, size=8)
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    want = (torch.tensor([255, 128, 0]) / 255.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(x[:, 0, 0], want, atol=1e-5)


def test_squash_and_clip_resize():
    # left half red, right half blue, 40x20
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    img = Image.fromarray(a)
    sq = _unnorm(preprocess(img, 10, "squash"))
    assert sq.shape == (3, 10, 10)
    assert sq[0, 5, 0] > 0.9 and sq[2, 5, 9] > 0.9         # squash keeps both halves
    cl = _unnorm(preprocess(img, 10, "clip"))              # short side 10 -> 20x10, centre crop 10x10
    assert cl.shape == (3, 10, 10)
    assert cl[0, 5, 0] > 0.9 and cl[2, 5, 9] > 0.9 and cl[0, 5, 2] > 0.9 and cl[2, 5, 7] > 0.9
    tall = Image.fromarray(np.ascontiguousarray(a.transpose(1, 0, 2)))  # 20x40: top red, bottom blue
    ct = _unnorm(preprocess(tall, 10, "clip"))
    assert ct.shape == (3, 10, 10) and ct[0, 0, 5] > 0.9 and ct[2, 9, 5] > 0.9
    with pytest.raises(DataError, match="unknown resize"):
        preprocess(img, 10, "stretch")


@pytest.mark.parametrize("mode", ["L", "LA", "CMYK", "RGBA", "P", "I;16", "I", "F", "1", "YCbCr"])
def test_every_mode_converts_to_the_right_rgb(mode, tmp_path):
    gray = 200
    if mode == "L":
        img = Image.new("L", (4, 4), gray)
    elif mode == "LA":
        img = Image.new("LA", (4, 4), (gray, 255))
    elif mode == "CMYK":
        img = Image.new("CMYK", (4, 4), (0, 0, 0, 255 - gray))
    elif mode == "RGBA":
        img = Image.new("RGBA", (4, 4), (gray, gray, gray, 255))
    elif mode == "P":
        img = Image.new("RGB", (4, 4), (gray, gray, gray)).convert("P", palette=Image.ADAPTIVE)
    elif mode == "I;16":
        img = Image.fromarray(np.full((4, 4), gray * 257, np.uint16))
        assert img.mode.startswith("I;16")
    elif mode == "I":
        img = Image.fromarray(np.full((4, 4), gray * 257, np.int32))
        assert img.mode == "I"
    elif mode == "F":
        img = Image.fromarray(np.full((4, 4), gray / 255.0, np.float32))
        assert img.mode == "F"
    elif mode == "1":
        img = Image.new("1", (4, 4), 1)
        gray = 255
    else:
        img = Image.new("RGB", (4, 4), (gray, gray, gray)).convert("YCbCr")
    rgb = np.asarray(to_rgb(img))
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - gray).max() <= 2, (mode, rgb[0, 0])
    x = _unnorm(preprocess(img, 4))
    assert torch.allclose(x, torch.full_like(x, gray / 255.0), atol=0.02)


def test_alpha_is_composited_on_white_and_palette_transparency_honoured():
    rgba = Image.new("RGBA", (2, 2), (0, 0, 0, 0))          # fully transparent black
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [255, 255, 255]
    half = Image.new("RGBA", (2, 2), (0, 0, 0, 128))
    assert abs(int(np.asarray(to_rgb(half))[0, 0, 0]) - 127) <= 1
    p = Image.new("P", (2, 2), 0)
    p.putpalette([10, 20, 30] + [0] * 765)
    p.info["transparency"] = 0
    assert np.asarray(to_rgb(p))[0, 0].tolist() == [255, 255, 255]


def test_wide_range_int_and_float_images_are_rescaled_not_clipped():
    i = Image.fromarray(np.array([[0, 1_000_000]], np.int32))
    assert np.asarray(to_rgb(i))[0, :, 0].tolist() == [0, 255]
    f = Image.fromarray(np.array([[-5.0, 5.0]], np.float32))
    assert np.asarray(to_rgb(f))[0, :, 0].tolist() == [0, 255]


def test_real_coco_photo_and_draft_decode_close_to_full_decode(real_data, tmp_path):
    path = real_data / "COCO_val2014_000000391895.jpg"   # 640x360
    x = load_image(path, 224, "squash")
    assert x.shape == (3, 224, 224) and torch.isfinite(x).all()
    full = load_image(path, 224, "squash", draft=False)
    # 640x360 -> draft would need 1/2 = 320x180 < 224: no draft, identical
    assert torch.equal(x, full)
    big = tmp_path / "big.jpg"
    Image.open(path).resize((1280, 960), Image.BICUBIC).save(big, quality=95)
    d, f = load_image(big, 224), load_image(big, 224, draft=False)
    assert d.shape == f.shape == (3, 224, 224)
    # reduced-DCT decode + bicubic vs full decode + bicubic: resampling noise only
    assert (_unnorm(d) - _unnorm(f)).abs().mean() < 0.02
    assert not torch.equal(d, f)          # the fast path really ran


def test_broken_files_raise_dataerror_naming_the_file(real_data, tmp_path):
    good = (real_data / "COCO_val2014_000000397133.jpg").read_bytes()
    trunc = tmp_path / "truncated.jpg"
    trunc.write_bytes(good[: len(good) // 2])
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image at all")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    bad_png = tmp_path / "bad.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(bad_png)
    data = bad_png.read_bytes()
    bad_png.write_bytes(data[: len(data) // 2])
    cases = [(tmp_path / "missing.jpg", "not found"), (trunc, "truncated"), (junk, "not a readable image"),
             (empty, "not a readable image"), (bad_png, "broken image"), (tmp_path, "is a directory")]
    for path, reason in cases:
        with pytest.raises(DataError) as info:
            load_image(path, 224)
        msg = str(info.value)
        assert msg.startswith(str(path)) and reason in msg, msg
        assert "\n" not in msg


def test_the_pixel_limit_is_stated_and_configurable(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from fsgr.data.decode import DEFAULT_MAX_IMAGE_PIXELS, check_image, max_image_pixels, open_image
    from fsgr.errors import DataError

    path = tmp_path / "wide.png"
    PILImage.new("RGB", (40, 30), (10, 20, 30)).save(path)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 100_000_000
    monkeypatch.setenv("FSGR_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DataError, match=r"wide.png: refused, 40x30 = 0.0 megapixels is above the limit of 0.001 "
                                        r"megapixels \(set FSGR_MAX_IMAGE_PIXELS"):
        open_image(path)
    assert "FSGR_MAX_IMAGE_PIXELS" in check_image(str(path))
    monkeypatch.setenv("FSGR_MAX_IMAGE_PIXELS", "1200")
    assert open_image(path).size == (40, 30)
    # fsgr's limit replaces PIL's own one (here made tiny), which fsgr leaves as it found it
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)
    monkeypatch.setenv("FSGR_MAX_IMAGE_PIXELS", "0")
    assert max_image_pixels() is None and open_image(path).size == (40, 30)
    assert PILImage.MAX_IMAGE_PIXELS == 100
    monkeypatch.setenv("FSGR_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DataError, match="FSGR_MAX_IMAGE_PIXELS='lots'"):
        open_image(path)
