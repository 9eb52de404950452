"""Serving a trained checkpoint: `fsgr.Captioner.from_checkpoint(path, device=None).caption(images)`.

A checkpoint carries its resolved config, vocabulary and codebook names, so nothing else is needed: the model is built
from the config without reading CLIP or codebook files, then the checkpoint's full state (CLIP weights and codebook
buffer included) is loaded strictly.
"""

from __future__ import annotations

import colorsys
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from PIL import Image, ImageDraw, ImageFont

from fsgr.core.build import load_model
from fsgr.core.device import pick_device
from fsgr.data.images import load_image, open_image, preprocess, to_rgb
from fsgr.errors import CheckpointError
from fsgr.models.decoding import decode_images

ImageLike = Union[str, os.PathLike, Image.Image]


@dataclass
class Explanation:
    caption: str
    concept_ids: torch.Tensor          # (gh, gw) long: global codebook id of each patch
    concept_names: dict[int, str]      # id -> name for the ids present
    image: Image.Image                 # the RGB input as given (before resizing)


class Captioner:
    def __init__(self, model, vocab, cfg, device: torch.device, codebook_names: Optional[list[str]] = None):
        self.model = model.eval()
        self.vocab = vocab
        self.cfg = cfg
        self.device = device
        self.codebook_names = codebook_names

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> "Captioner":
        device = pick_device(None if device is None else str(device), 0)   # the trainer's rule: bare 'cuda' -> cuda:0
        loaded = load_model(path)
        return cls(loaded.model.to(device), loaded.vocab, loaded.cfg, device, loaded.codebook_names)

    # ------------------------------------------------------------------ images
    def preprocess(self, image: ImageLike) -> torch.Tensor:
        """A path or PIL image -> (3, S, S) CLIP-normalised tensor (the training preprocessing). DataError if bad."""
        d = self.cfg.data
        if isinstance(image, Image.Image):
            return preprocess(image, size=d.image_size, resize=d.resize)
        return load_image(image, size=d.image_size, resize=d.resize, draft=d.jpeg_draft)

    @torch.no_grad()
    def caption_tensors(self, images: torch.Tensor, beam_size: Optional[int] = None,
                        max_len: Optional[int] = None) -> list[str]:
        e = self.cfg.eval
        return decode_images(self.model, images.to(self.device), self.vocab, e.beam_size if beam_size is None
                             else beam_size, e.max_len if max_len is None else max_len)

    def caption(self, images: Union[ImageLike, Sequence[ImageLike]], beam_size: Optional[int] = None,
                max_len: Optional[int] = None, batch_size: int = 16) -> list[str]:
        """Captions of PIL images or image paths (beam search, the checkpoint's eval settings by default)."""
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        out: list[str] = []
        for start in range(0, len(images), batch_size):
            chunk = torch.stack([self.preprocess(im) for im in images[start:start + batch_size]])
            out.extend(self.caption_tensors(chunk, beam_size, max_len))
        return out

    # ------------------------------------------------------------------ explain
    @torch.no_grad()
    def explain(self, image: ImageLike) -> Explanation:
        """Caption plus the patch-to-concept assignment of the semantic head (eval mode: hard argmax)."""
        if not self.cfg.model.semantic.enabled:
            raise CheckpointError("this checkpoint's model has no semantic head (model.semantic.enabled=false): "
                                  "there is no patch-to-concept map to draw")
        # one conversion for every verb: the drawn image is what the model saw (16-bit rescaled, alpha on white)
        pil = to_rgb(image if isinstance(image, Image.Image) else open_image(image, size=None))
        x = self.preprocess(pil)[None].to(self.device)
        caption = self.caption_tensors(x)[0]
        ids = self.model.encode(x).concept_ids[0]                       # (P,)
        side = int(round(ids.numel() ** 0.5))
        grid = ids.view(side, side).cpu()
        names = {}
        for i in sorted(set(grid.flatten().tolist())):
            names[i] = self.codebook_names[i] if self.codebook_names and i < len(self.codebook_names) \
                else f"concept {i}"
        return Explanation(caption=caption, concept_ids=grid, concept_names=names, image=pil)


def draw_explanation(exp: Explanation, top: int = 8, width: int = 448) -> Image.Image:
    """The image with each patch tinted by its concept's colour, a legend of the `top` concepts by patch count, and
    the caption underneath. PIL only."""
    font = ImageFont.load_default()
    img = exp.image.resize((width, int(round(width * exp.image.height / exp.image.width))), Image.BICUBIC)
    gh, gw = exp.concept_ids.shape
    ids, counts = exp.concept_ids.flatten().unique(return_counts=True)
    order = [int(i) for i in ids[counts.argsort(descending=True)].tolist()]
    palette = _palette(len(order))
    colour = {cid: palette[rank] for rank, cid in enumerate(order)}
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    cw, ch = img.width / gw, img.height / gh
    for r in range(gh):
        for c in range(gw):
            col = colour[int(exp.concept_ids[r, c])]
            draw.rectangle([c * cw, r * ch, (c + 1) * cw, (r + 1) * ch], fill=(*col, 110))
    blended = Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")
    count_of = dict(zip(ids.tolist(), counts.tolist()))
    legend = order[:top]
    line_h = 16
    caption_lines = _wrap(exp.caption, font, width - 16)
    height = blended.height + 12 + line_h * (len(caption_lines) + 1 + len(legend)) + 8
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(blended, (0, 0))
    d = ImageDraw.Draw(canvas)
    y = blended.height + 6
    for line in caption_lines:
        d.text((8, y), line, fill=(0, 0, 0), font=font)
        y += line_h
    d.text((8, y), f"top concepts ({len(order)} on a {gh}x{gw} grid):", fill=(80, 80, 80), font=font)
    y += line_h
    for cid in legend:
        d.rectangle([8, y + 2, 20, y + 12], fill=colour[cid], outline=(0, 0, 0))
        d.text((26, y), f"{exp.concept_names.get(cid, cid)}  ({count_of[cid]} patches)", fill=(0, 0, 0), font=font)
        y += line_h
    return canvas


def _wrap(text: str, font, max_width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        trial = f"{line} {w}".strip()
        if font.getlength(trial) > max_width and line:
            lines.append(line)
            line = w
        else:
            line = trial
    lines.append(line)
    return lines


def _palette(n: int) -> list[tuple[int, int, int]]:
    return [tuple(int(255 * v) for v in colorsys.hsv_to_rgb((i * 0.61803398875) % 1.0, 0.75, 0.95))
            for i in range(max(n, 1))]
