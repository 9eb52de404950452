"""Image decoding without torch (check-data's worker processes import only this): open + decode + RGB conversion."""

from __future__ import annotations

import os
import threading
import warnings
from typing import Literal, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from fsgr.errors import DataError

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


def _open_header(path: str) -> Image.Image:
    """Image.open (header only) with PIL's own pixel limit lifted for this call: fsgr checks its own limit next."""
    with _PIL_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
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


def open_image(path: str | os.PathLike, size: int | None = None, resize: Resize = "squash",
               draft: bool = True) -> Image.Image:
    """Open and fully decode an image (reduced JPEG DCT scale when `draft` and downscaling by >= 2)."""
    path = os.fspath(path)
    limit = max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _open_header(path)
            if limit is not None and img.width * img.height > limit:
                img.close()
                raise DataError(f"{path}: refused, {img.width}x{img.height} = {img.width * img.height / 1e6:.1f} "
                                f"megapixels is above the limit of {limit / 1e6:g} megapixels (set "
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
