"""Image decoding without torch (check-data's worker processes import only this): open + decode + RGB conversion.

JPEG fast path (`scaled_jpeg`): libjpeg-turbo (through the `simplejpeg` wheel) decodes at the smallest of its N/8 DCT
scales that keeps both sides at or above the resize target (640x427 -> 5/8 = 400x267 for 224x224), so colour
conversion and the resize work on fewer pixels (measured here: the 1/2, 1/4, 1/8 scales also cut the decode time;
libjpeg-turbo's 3/8-7/8 inverse DCTs have no SIMD code, so those cost about a full decode). It takes baseline and
progressive YCbCr/grey JPEGs; everything else (other formats, CMYK/YCCK JPEGs, files libjpeg flags as damaged,
images over the pixel limit) goes through PIL, which decodes it or raises the one-line DataError naming the damage.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Literal, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from fsgr.errors import DataError

try:  # a declared dependency; only a broken install lacks it, and then the fast path says so (see scaled_jpeg)
    import simplejpeg
except ImportError:  # pragma: no cover - exercised by test_missing_simplejpeg_is_reported
    simplejpeg = None

Resize = Literal["squash", "clip"]

# Images above this many pixels are refused before they are decoded (a 100-megapixel image is ~300 MB as RGB;
# a crafted one is a "decompression bomb"). FSGR_MAX_IMAGE_PIXELS raises or lowers it; 0 means no limit. It replaces
# PIL's own limit (Image.MAX_IMAGE_PIXELS, ~89 MP warning / ~179 MP error), which fsgr does not change globally.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
MAX_PIXELS_ENV = "FSGR_MAX_IMAGE_PIXELS"
_PIL_LIMIT_LOCK = threading.Lock()


def max_image_pixels() -> Optional[int]:
    """The pixel limit in force (None: no limit), from FSGR_MAX_IMAGE_PIXELS or the default."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        raise DataError(f"{MAX_PIXELS_ENV}={raw!r}: expected a number of pixels (0 = no limit)") from None
    if value < 0:
        raise DataError(f"{MAX_PIXELS_ENV}={raw!r}: must be >= 0 (0 = no limit)")
    return value or None


def over_pixel_limit(width: int, height: int, limit: int) -> str:
    """'WxH = N is above the limit of M': in megapixels where that reads well, in exact pixels where rounding would
    hide the difference (a limit of 1,000 is not "0.001 megapixels", 100,000,001 is not "100.0 megapixels")."""
    pixels = width * height
    big = f"{pixels / 1e6:.1f}" != f"{limit / 1e6:.1f}" and min(pixels, limit) >= 1_000_000
    shown = (lambda n: f"{n / 1e6:.1f} megapixels") if big else (lambda n: f"{n:,} pixels")
    return f"{width}x{height} = {shown(pixels)} is above the limit of {shown(limit)}"


def open_header(source) -> Image.Image:
    """Image.open (header only; a path or a binary file) with PIL's own pixel limit lifted for this call: the caller
    checks fsgr's limit (FSGR_MAX_IMAGE_PIXELS, the server's --max-pixels) next, before decoding."""
    with _PIL_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def target_size(w: int, h: int, size: int, resize: Resize) -> tuple[int, int]:
    if resize == "squash":
        return size, size
    if resize == "clip":  # short side -> size (CLIP's Resize(size) then CenterCrop(size))
        if w <= h:
            return size, max(size, int(size * h / w))
        return max(size, int(size * w / h)), size
    raise DataError(f"unknown resize {resize!r}: use 'squash' (reference) or 'clip'")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    L/CMYK/YCbCr/1 use PIL's conversion; alpha modes (RGBA, LA, PA, P with transparency) are composited on white;
    16-bit (I;16*) are scaled by 1/257; I (32-bit int) and F (float) are scaled to 0..255 from their value range
    (0..1 floats, 0..255, 0..65535, else min..max), because PIL's own conversion just clips them.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            scaled = arr / 257.0
        else:
            lo, hi = float(np.nanmin(arr)) if arr.size else 0.0, float(np.nanmax(arr)) if arr.size else 0.0
            if mode == "F" and lo >= 0.0 and hi <= 1.0:
                scaled = arr * 255.0
            elif lo >= 0.0 and hi <= 255.0:
                scaled = arr
            elif lo >= 0.0 and hi <= 65535.0:
                scaled = arr / 257.0
            else:
                scaled = (arr - lo) * (255.0 / max(hi - lo, 1e-12))
        gray = np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return img.convert("RGB")


_JPEG_SOI = b"\xff\xd8\xff"
_FAST_COLOURSPACES = ("YCbCr", "Gray")   # what libjpeg converts to RGB exactly as PIL does (CMYK/YCCK: PIL's path)


def scaled_jpeg(path: str, size: int, resize: Resize) -> Optional[tuple[np.ndarray, tuple[float, float]]]:
    """(RGB pixels (H, W, 3) uint8, picture size (w * N/8, h * N/8)) decoded by libjpeg-turbo at the smallest N/8
    scale covering the resize target of `size`, or None when the file is not a JPEG this path takes (then PIL
    decodes it, and names any problem).

    The picture size is exact: libjpeg rounds the decoded size up to whole pixels (500x375 at 5/8 -> 313x235 for
    312.5x234.4), and resizing by the exact size keeps the geometry of a full decode (without it, 500x375 photos
    differ 3x more from the full decode)."""
    if simplejpeg is None:
        raise DataError(f"{path}: data.jpeg_draft=true needs the simplejpeg package (pip install simplejpeg), "
                        f"or set data.jpeg_draft=false")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None                                   # missing, a directory, unreadable: PIL names it
    if not data.startswith(_JPEG_SOI):
        return None
    try:
        h, w, colourspace, _ = simplejpeg.decode_jpeg_header(data)
        limit = max_image_pixels()
        if colourspace not in _FAST_COLOURSPACES or (limit is not None and w * h > limit):
            return None                               # over the limit: PIL's path refuses it, naming the limit
        tw, th = target_size(w, h, size, resize)
        rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=th, min_width=tw, strict=True)
    except ValueError:
        return None                                   # damaged or unusual: PIL decides (and names the damage)
    eighths = round(8 * max(rgb.shape[:2]) / max(w, h))   # the N of the N/8 scale libjpeg picked
    return rgb, (w * eighths / 8, h * eighths / 8)


def open_image(path: str | os.PathLike, size: int | None = None, resize: Resize = "squash",
               draft: bool = True) -> Image.Image:
    """Open and fully decode an image with PIL (1/2^k JPEG DCT scale when `draft` and that still covers the target)."""
    path = os.fspath(path)
    limit = max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = open_header(path)
            if limit is not None and img.width * img.height > limit:
                img.close()
                raise DataError(f"{path}: refused, {over_pixel_limit(img.width, img.height, limit)} (set "
                                f"{MAX_PIXELS_ENV} to raise it, 0 for no limit)")
            if draft and size is not None and img.format == "JPEG":
                w, h = img.size
                tw, th = target_size(w, h, size, resize)
                # draft picks the largest 1/2^k scale that still covers the requested size
                img.draft(img.mode if img.mode in ("RGB", "L") else None, (tw, th))
            img.load()
        return img
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refused, too many pixels ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports truncated/corrupt data as OSError/SyntaxError
        raise DataError(f"{path}: broken image ({' '.join(str(exc).split())})") from None


def check_image(path: str) -> Optional[str]:
    """Cheap full check of one file: None if it decodes and converts to RGB, else the reason. JPEGs are decoded at
    1/8 DCT scale: every entropy-coded byte is still read, so truncation and corrupt data are still found."""
    try:
        img = open_image(path, size=16, resize="squash", draft=True)
        with img:
            if img.width < 1 or img.height < 1:
                return "image has no pixels"
            to_rgb(img)
    except DataError as exc:
        text = str(exc)
        return text[len(path) + 2:] if text.startswith(path + ": ") else text
    except (OSError, ValueError) as exc:
        return f"cannot convert to RGB ({exc})"
    return None


def check_images(paths: list[str]) -> list[tuple[str, str]]:
    """[(path, reason)] for the paths that fail `check_image` (one task of check-data's process pool)."""
    out = []
    for p in paths:
        reason = check_image(p)
        if reason is not None:
            out.append((p, reason))
    return out
