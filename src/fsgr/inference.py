"""Serving a trained checkpoint: `fsgr.Captioner.from_checkpoint(path, device=None).caption(images)`.

A checkpoint carries its resolved config, vocabulary and codebook names, so nothing else is needed: the model is built
from the config without reading CLIP or codebook files, then the checkpoint's full state (CLIP weights and codebook
buffer included) is loaded strictly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from PIL import Image

from fsgr.errors import CheckpointError, ConfigError
from fsgr.models.decoding import DecodeSettings

ImageLike = Union[str, os.PathLike, Image.Image]
BACKGROUND_NAMES = {"background"}


@dataclass
class Caption:
    """One image's decoded caption with what bulk captioning and the server report."""

    text: str
    logprob: float                      # summed log-prob of the generated tokens (<eos> included)
    length: int                         # generated tokens before <eos>
    beams: list[tuple[str, float]]      # every beam, best first: (text, summed log-prob)
    concept_ids: torch.Tensor           # (P,) global codebook id of each patch


@dataclass
class Explanation:
    caption: str
    concept_ids: torch.Tensor          # (gh, gw) long: global codebook id of each patch
    concept_names: dict[int, str]      # id -> name for the ids present
    image: Image.Image                 # the RGB input as given (before resizing)


class CaptionerBase:
    """What serving needs from a captioner, whatever computes it (PyTorch: Captioner; onnxruntime:
    fsgr.export.runtime.OnnxCaptioner). Subclasses set `model` (with `.decoder`, `.pad_id/.bos_id/.eos_id`),
    `vocab`, `cfg`, `device`, `codebook_names`, and define `encode(images)`."""

    # ------------------------------------------------------------------ concepts
    def concept_name(self, concept_id: int) -> str:
        names = self.codebook_names
        return names[concept_id] if names and 0 <= concept_id < len(names) else f"concept {concept_id}"

    def background_ids(self) -> list[int]:
        """Codebook ids that name the background (the demo codebook's "background"; none in the RAM tags)."""
        return [i for i, name in enumerate(self.codebook_names or []) if name.strip().lower() in BACKGROUND_NAMES]

    # ------------------------------------------------------------------ images
    @property
    def image_size(self) -> int:
        return self.cfg.data.image_size

    @property
    def resize(self) -> str:
        return self.cfg.data.resize

    def preprocess(self, image: ImageLike) -> torch.Tensor:
        """A path or PIL image -> (3, S, S) CLIP-normalised tensor (the training preprocessing). DataError if bad."""
        from fsgr.data.images import load_image, preprocess

        d = self.cfg.data
        if isinstance(image, Image.Image):
            return preprocess(image, size=d.image_size, resize=d.resize)
        return load_image(image, size=d.image_size, resize=d.resize)

    def settings(self, **overrides) -> DecodeSettings:
        """The checkpoint's eval decoding settings (beam_size, max_len, min_len, length_penalty, no_repeat_ngram)
        with the given ones (None = keep) replaced."""
        settings = DecodeSettings.from_config(self.cfg.eval, **overrides)
        if settings.max_len > self.model.decoder.max_len:
            raise ConfigError(f"max_len {settings.max_len} exceeds this model's decoder.max_len "
                              f"({self.model.decoder.max_len})")
        return settings

    @torch.no_grad()
    def generate(self, images: torch.Tensor, settings: Optional[DecodeSettings] = None) -> list[Caption]:
        """(B, 3, S, S) preprocessed images -> one Caption each (all beams, scores, concept ids)."""
        from fsgr.models.decoding import decode

        settings = settings or self.settings()
        encoded = self.encode(images)
        return captions_of(decode(self.model, encoded, settings, return_all=True), self.vocab, encoded.concept_ids)

    def caption_tensors(self, images: torch.Tensor, beam_size: Optional[int] = None, max_len: Optional[int] = None,
                        **controls) -> list[str]:
        settings = self.settings(beam_size=beam_size, max_len=max_len, **controls)
        return [c.text for c in self.generate(images, settings)]

    def caption(self, images: Union[ImageLike, Sequence[ImageLike]], beam_size: Optional[int] = None,
                max_len: Optional[int] = None, batch_size: int = 16, **controls) -> list[str]:
        """Captions of PIL images or image paths (the checkpoint's eval settings by default; `controls`: min_len,
        length_penalty, no_repeat_ngram)."""
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        out: list[str] = []
        for start in range(0, len(images), batch_size):
            chunk = torch.stack([self.preprocess(im) for im in images[start:start + batch_size]])
            out.extend(self.caption_tensors(chunk, beam_size, max_len, **controls))
        return out


class Captioner(CaptionerBase):
    def __init__(self, model, vocab, cfg, device: torch.device, codebook_names: Optional[list[str]] = None):
        self.model = model.eval()
        self.vocab = vocab
        self.cfg = cfg
        self.device = device
        self.codebook_names = codebook_names

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> "Captioner":
        from fsgr.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        return cls._build(ckpt["config"], ckpt["vocab_itos"], ckpt["model"], ckpt.get("codebook_names"), device,
                          source=str(path))

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str | torch.device | None = None) -> "Captioner":
        """A folder written by `fsgr export --format safetensors` (config.json, model.safetensors, vocab.json)."""
        from fsgr.export.hub import read_pretrained

        config, itos, names, state = read_pretrained(Path(folder))
        return cls._build(config, itos, state, names, device, source=str(folder))

    @classmethod
    def _build(cls, config: dict, itos: list[str], state: dict, codebook_names, device, source: str) -> "Captioner":
        from fsgr.config import Config, from_dict
        from fsgr.data.vocab import Vocab
        from fsgr.training.distributed import pick_device
        from fsgr.training.setup import build_model

        cfg = from_dict(Config, config)
        vocab = Vocab(itos, source=source)
        model, _, _ = build_model(cfg, vocab, load_weights=False)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"{source}: model state does not match its own config ({len(missing)} missing keys "
                                  f"e.g. {missing[:2]}, {len(unexpected)} unexpected e.g. {unexpected[:2]})")
        device = pick_device(None if device is None else str(device), 0)   # the trainer's rule: bare 'cuda' -> cuda:0
        model.to(device)
        return cls(model, vocab, cfg, device, codebook_names or None)

    def encode(self, images: torch.Tensor):
        return self.model.encode(images.to(self.device))

    # ------------------------------------------------------------------ explain
    @torch.no_grad()
    def explain(self, image: ImageLike) -> Explanation:
        """Caption plus the patch-to-concept assignment of the semantic head (eval mode: hard argmax)."""
        if not self.cfg.model.semantic.enabled:
            raise CheckpointError("this checkpoint's model has no semantic head (model.semantic.enabled=false): "
                                  "there is no patch-to-concept map to draw")
        pil = image if isinstance(image, Image.Image) else _open_rgb(image)
        x = self.preprocess(pil)[None].to(self.device)
        caption = self.caption_tensors(x)[0]
        ids = self._concept_ids(x)[0]                                   # (P,)
        side = int(round(ids.numel() ** 0.5))
        grid = ids.view(side, side).cpu()
        names = {i: self.concept_name(i) for i in sorted(set(grid.flatten().tolist()))}
        return Explanation(caption=caption, concept_ids=grid, concept_names=names, image=pil.convert("RGB"))

    def _concept_ids(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.model.encode(x)
        ids = getattr(encoded, "concept_ids", None)
        if ids is None:   # fall back on a one-token teacher-forced pass, which returns the ids
            tokens = torch.full((x.shape[0], 2), self.vocab.bos_id, dtype=torch.long, device=x.device)
            ids = self.model(x, tokens, torch.arange(x.shape[0], device=x.device)).concept_ids
        return ids


def captions_of(result, vocab, concept_ids: torch.Tensor) -> list[Caption]:
    """A return_all BeamResult (B, k, T) -> Captions; texts with consecutive repeats collapsed (the evaluation's)."""
    tokens = result.tokens.cpu().tolist()
    scores = result.seq_logprob.float().cpu().tolist()
    out = []
    for b, beams in enumerate(tokens):
        texts = [vocab.decode(row, collapse_repeats=True) for row in beams]
        best = beams[0]
        length = best.index(vocab.eos_id) if vocab.eos_id in best else sum(t != vocab.pad_id for t in best)
        out.append(Caption(text=texts[0], logprob=scores[b][0], length=length, beams=list(zip(texts, scores[b])),
                           concept_ids=concept_ids[b].cpu()))
    return out


def _open_rgb(path) -> Image.Image:
    from fsgr.data.images import open_image

    return open_image(path, size=None).convert("RGB")


def draw_explanation(exp: Explanation, top: int = 8, width: int = 448) -> Image.Image:
    """The image with each patch tinted by its concept's colour, a legend of the `top` concepts by patch count, and
    the caption underneath. PIL only."""
    from PIL import ImageDraw, ImageFont

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
    import colorsys

    return [tuple(int(255 * v) for v in colorsys.hsv_to_rgb((i * 0.61803398875) % 1.0, 0.75, 0.95))
            for i in range(max(n, 1))]
