"""Image decoding and CLIP preprocessing: file -> (3, size, size) float tensor, CLIP-normalised.

Fast path: JPEGs are decoded by libjpeg-turbo at the smallest N/8 DCT scale that keeps both sides at or above the
target (`fsgr.data.decode.scaled_jpeg`: 640x427 -> 5/8 = 400x267, 640x480 -> 4/8 = 320x240, for 224x224), then
resized with torch's uint8 antialiased bicubic (PIL's bicubic within one level); the result differs from the
reference's full decode + PIL bicubic by resampling noise (mean absolute difference 0.4-0.8% of the range on
COCO-size photos; `draft=False` / `data.jpeg_draft: false` for the bit-identical full decode). Every PIL mode is
converted to RGB explicitly (16-bit and float images are rescaled, alpha is composited on white). A missing,
truncated or undecodable file raises DataError naming the file.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fsgr.data.decode import Resize, open_image, scaled_jpeg, target_size, to_rgb  # noqa: F401 - re-exported
from fsgr.errors import DataError

# OpenAI CLIP normalisation (the reference uses the same numbers).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# (x - 255 mean) / (255 std) per channel, on 8-bit levels (3x faster than a numpy table lookup here)
_MEAN_255 = torch.tensor(CLIP_MEAN).view(3, 1, 1) * 255.0
_INV_STD_255 = 1.0 / (torch.tensor(CLIP_STD).view(3, 1, 1) * 255.0)


def preprocess(img: Image.Image, size: int = 224, resize: Resize = "squash") -> torch.Tensor:
    """PIL image (any mode) -> (3, size, size) float32, CLIP-normalised. Bicubic, as the reference and CLIP."""
    img = to_rgb(img)
    tw, th = target_size(img.width, img.height, size, resize)
    if (img.width, img.height) != (tw, th):
        img = img.resize((tw, th), Image.BICUBIC)
    if resize == "clip" and (tw, th) != (size, size):
        left, top = _crop_origin(tw, th, size)
        img = img.crop((left, top, left + size, top + size))
    return to_tensor(img)


def _crop_origin(w: int, h: int, size: int) -> tuple[int, int]:
    """Top-left corner of CLIP's centre crop of `size` from w x h."""
    return int(round((w - size) / 2.0)), int(round((h - size) / 2.0))


def preprocess_pixels(rgb: np.ndarray, picture: tuple[float, float], size: int = 224, resize: Resize = "squash"
                      ) -> torch.Tensor:
    """Decoded RGB pixels (H, W, 3) uint8 -> (3, size, size) float32, CLIP-normalised, like `preprocess`.

    `picture`: the picture's exact (width, height) in these pixels (a DCT-scaled decode's last row/column can be
    partial). The resize is torch's uint8 bicubic with antialiasing, a vectorised port of PIL's (within one level
    of `Image.resize(BICUBIC)`, 4-5x faster here)."""
    pw, ph = picture
    tw, th = target_size(pw, ph, size, resize)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]               # (1, 3, H, W) uint8, a channels-last view
    if (rgb.shape[1], rgb.shape[0]) == (pw, ph):
        if (pw, ph) != (tw, th):
            x = F.interpolate(x, size=(th, tw), mode="bicubic", antialias=True)
    else:  # scale by the exact picture size: the same geometry as resizing a full decode
        x = F.interpolate(x, scale_factor=(th / ph, tw / pw), mode="bicubic", antialias=True,
                          recompute_scale_factor=False)
    x = x[0, :, :th, :tw]                  # (3, th, tw): a partial last row/column can give one more
    if resize == "clip" and (tw, th) != (size, size):
        left, top = _crop_origin(tw, th, size)
        x = x[:, top:top + size, left:left + size]
    return _normalise(x)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32, CLIP-normalised."""
    return _normalise(torch.from_numpy(np.array(img)).permute(2, 0, 1))    # (3, H, W) uint8


def _normalise(chw: torch.Tensor) -> torch.Tensor:
    """(3, H, W) uint8 -> float32, CLIP-normalised (contiguous)."""
    return (chw.float() - _MEAN_255).mul_(_INV_STD_255).contiguous()


def load_image(path: str | os.PathLike, size: int = 224, resize: Resize = "squash", draft: bool = True
               ) -> torch.Tensor:
    """File -> (3, size, size) float32, CLIP-normalised. Raises DataError naming the file if it cannot be used.
    draft=True: JPEGs decoded at a reduced DCT scale (libjpeg-turbo N/8, else PIL 1/2^k); False: full decode."""
    if draft:
        scaled = scaled_jpeg(os.fspath(path), size, resize)
        if scaled is not None:
            rgb, picture = scaled
            return preprocess_pixels(rgb, picture, size, resize)
    img = open_image(path, size=size, resize=resize, draft=draft)
    try:
        return preprocess(img, size=size, resize=resize)
    except (OSError, ValueError) as exc:
        raise DataError(f"{os.fspath(path)}: cannot convert mode {img.mode} to RGB ({exc})") from None
