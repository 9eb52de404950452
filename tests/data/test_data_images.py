import math

import numpy as np
import pytest
import torch
from PIL import Image

from fsgr.data.images import (CLIP_MEAN, CLIP_STD, load_image, preprocess, preprocess_pixels, scaled_jpeg,
                              to_rgb)
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


# COCO's common sizes and a few large ones; (N of the N/8 scale the fast path must pick for 224x224 squash)
COCO_SIZES = {(640, 480): 4, (640, 427): 5, (480, 640): 4, (427, 640): 5, (500, 375): 5, (333, 500): 6,
              (1024, 768): 3, (2048, 1536): 2}
# mean absolute difference (0..1 pixel units) of the fast path from full decode + bicubic; measured <= 0.0086
# (squash) and <= 0.0132 (clip) on these photos
SQUASH_TOL, CLIP_TOL = 0.01, 0.015


def _coco_jpegs(real_data, tmp_path):
    """The two real COCO photos as shipped, and both resized to every COCO size and saved like COCO (quality 90,
    4:2:0, some progressive)."""
    out = []
    for k, name in enumerate(["COCO_val2014_000000391895.jpg", "COCO_val2014_000000397133.jpg"]):
        out.append(real_data / name)
        photo = Image.open(real_data / name).convert("RGB")
        for i, (w, h) in enumerate(COCO_SIZES):
            path = tmp_path / f"{k}_{w}x{h}.jpg"
            photo.resize((w, h), Image.BICUBIC).save(path, quality=90, progressive=(i % 3 == 0))
            out.append(path)
    return out


def test_fast_jpeg_path_picks_the_finest_covering_scale_and_stays_close_to_full_decode(real_data, tmp_path):
    for path in _coco_jpegs(real_data, tmp_path):
        w, h = Image.open(path).size
        rgb, picture = scaled_jpeg(str(path), 224, "squash")
        eighths = COCO_SIZES.get((w, h), 5)         # the shipped photos are 640x360 and 640x427: 5/8
        assert eighths * h / 8 >= 224 and eighths * w / 8 >= 224
        assert (eighths - 1) * min(w, h) / 8 < 224, "a coarser scale would have covered the target"
        assert picture == (w * eighths / 8, h * eighths / 8)
        assert rgb.shape == (math.ceil(h * eighths / 8), math.ceil(w * eighths / 8), 3), (path, rgb.shape)
        for resize, tol in (("squash", SQUASH_TOL), ("clip", CLIP_TOL)):
            fast, full = load_image(path, 224, resize), load_image(path, 224, resize, draft=False)
            assert fast.shape == full.shape == (3, 224, 224)
            diff = float((_unnorm(fast) - _unnorm(full)).abs().mean())
            assert 0 < diff < tol, (path.name, resize, diff)       # > 0: the fast path really ran


def test_fast_path_resizes_by_the_exact_picture_size_like_a_full_decode(real_data, tmp_path):
    # 500x375 at 5/8 is 312.5x234.4 pixels, decoded as 313x235: resizing all of it would shift the bottom rows by
    # half a pixel; resizing by the exact picture size keeps them where a full decode puts them
    path = tmp_path / "500x375.jpg"
    photo = Image.open(real_data / "COCO_val2014_000000397133.jpg").convert("RGB")
    photo.resize((500, 375), Image.BICUBIC).save(path, quality=90)
    rgb, picture = scaled_jpeg(str(path), 224, "squash")
    assert picture == (312.5, 234.375) and rgb.shape == (235, 313, 3)
    full = _unnorm(load_image(path, 224, draft=False))
    exact = _unnorm(preprocess_pixels(rgb, picture, 224))
    assert torch.equal(exact, _unnorm(load_image(path, 224)))
    rounded = _unnorm(preprocess_pixels(rgb, (313, 235), 224))
    assert (exact - full).abs().mean() < 0.5 * (rounded - full).abs().mean()


def test_uint8_resize_is_pils_bicubic_within_one_level(real_data):
    photo = Image.open(real_data / "COCO_val2014_000000397133.jpg").convert("RGB")       # 640x427
    for resize in ("squash", "clip"):
        pil = _unnorm(preprocess(photo, 224, resize))
        ours = _unnorm(preprocess_pixels(np.array(photo), photo.size, 224, resize))
        assert ours.shape == pil.shape == (3, 224, 224)
        assert (ours - pil).abs().max() <= 1.01 / 255 and (ours - pil).abs().mean() < 0.05 / 255


def test_jpegs_the_fast_path_does_not_take_go_through_pil(real_data, tmp_path):
    photo = Image.open(real_data / "COCO_val2014_000000397133.jpg")
    cmyk = tmp_path / "cmyk.jpg"
    photo.convert("CMYK").save(cmyk, quality=95)
    png = tmp_path / "photo.png"
    photo.save(png)
    grey = tmp_path / "grey.jpg"
    photo.convert("L").save(grey, quality=95)
    assert scaled_jpeg(str(cmyk), 224, "squash") is None          # CMYK/YCCK: PIL's conversion
    assert scaled_jpeg(str(png), 224, "squash") is None
    assert scaled_jpeg(str(tmp_path / "missing.jpg"), 224, "squash") is None
    assert scaled_jpeg(str(grey), 224, "squash") is not None      # grey JPEGs: libjpeg expands to RGB
    reference = load_image(real_data / "COCO_val2014_000000397133.jpg", 224, draft=False)
    for path in (cmyk, png):
        x = load_image(path, 224)
        assert (_unnorm(x) - _unnorm(reference)).abs().mean() < 0.02, path.name
    assert torch.equal(load_image(png, 224), load_image(png, 224, draft=False))
    g = _unnorm(load_image(grey, 224))
    assert torch.allclose(g[0], g[1], atol=1e-5) and torch.allclose(g[1], g[2], atol=1e-5)
    assert (g - _unnorm(load_image(grey, 224, draft=False))).abs().mean() < SQUASH_TOL


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("LA", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("I;16", "PNG"),
                                      ("1", "PNG"), ("CMYK", "TIFF"), ("F", "TIFF"), ("I", "TIFF"), ("RGB", "WEBP"),
                                      ("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "JPEG")])
def test_every_mode_loads_from_a_file_through_both_paths(mode, fmt, tmp_path):
    rgb = Image.new("RGB", (300, 240), (200, 120, 40))
    rgb.paste((30, 60, 220), (100, 80, 200, 160))
    if mode == "I;16":
        img = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    elif mode in ("I", "F"):
        img = rgb.convert("L").convert(mode)
    else:
        img = rgb.convert(mode)
    path = tmp_path / f"image.{fmt.lower()}"
    img.save(path, fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    fast, full = load_image(path, 224), load_image(path, 224, draft=False)
    assert fast.shape == full.shape == (3, 224, 224) and torch.isfinite(fast).all()
    assert (_unnorm(fast) - _unnorm(full)).abs().mean() < SQUASH_TOL, (mode, fmt)
    want = _unnorm(preprocess(img, 224))                      # the in-memory image through the same conversion
    assert (_unnorm(fast) - want).abs().mean() < 0.02, (mode, fmt)


def test_missing_simplejpeg_is_reported_not_silently_replaced(real_data, monkeypatch):
    import fsgr.data.decode as decode

    monkeypatch.setattr(decode, "simplejpeg", None)
    path = real_data / "COCO_val2014_000000397133.jpg"
    with pytest.raises(DataError, match="simplejpeg.*jpeg_draft=false") as info:
        load_image(path, 224)
    assert str(info.value).startswith(str(path))
    assert load_image(path, 224, draft=False).shape == (3, 224, 224)      # the full decode needs only PIL


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
    with pytest.raises(DataError, match=r"wide.png: refused, 40x30 = 1,200 pixels is above the limit of 1,000 pixels "
                                        r"\(set FSGR_MAX_IMAGE_PIXELS"):
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


@pytest.mark.parametrize("width, height, limit, said", [
    (12_000, 10_000, 100_000_000, "12000x10000 = 120.0 megapixels is above the limit of 100.0 megapixels"),
    (10_001, 10_000, 100_000_000, "10001x10000 = 100,010,000 pixels is above the limit of 100,000,000 pixels"),
    (2_000, 1_000, 1_000_000, "2000x1000 = 2.0 megapixels is above the limit of 1.0 megapixels"),
    (40, 30, 1_000, "40x30 = 1,200 pixels is above the limit of 1,000 pixels"),
])
def test_the_pixel_limit_is_said_in_units_that_show_the_difference(width, height, limit, said):
    from fsgr.data.decode import over_pixel_limit

    assert over_pixel_limit(width, height, limit) == said


def test_the_pixel_limit_holds_on_the_jpeg_fast_path(tmp_path, monkeypatch):
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (400, 300), (10, 20, 30)).save(path, quality=90)
    monkeypatch.setenv("FSGR_MAX_IMAGE_PIXELS", "100000")
    assert scaled_jpeg(str(path), 224, "squash") is None                 # left to PIL's path, which refuses it
    with pytest.raises(DataError, match=r"wide.jpg: refused, 400x300 = 120,000 pixels is above the limit "
                                        r"of 100,000 pixels"):
        load_image(path, 224)
    monkeypatch.setenv("FSGR_MAX_IMAGE_PIXELS", "0")                     # no limit, even above PIL's own one
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert scaled_jpeg(str(path), 224, "squash") is not None and load_image(path, 224).shape == (3, 224, 224)
