"""Serving a trained checkpoint: `fsgr.Captioner.from_checkpoint(path, device=None).caption(images)`.

A checkpoint carries its resolved config, vocabulary and codebook names, so nothing else is needed: the model is built
from the config without reading CLIP or codebook files, then the checkpoint's full state (CLIP weights and codebook
buffer included) is loaded strictly.
"""

from __future__ import annotations

# Deferred imports: fsgr.serving.maps and fsgr.export.hub build on this module (they import Captioner).

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from PIL import Image

from fsgr.core.build import model_from_state
from fsgr.core.checkpoint import load_checkpoint
from fsgr.core.device import pick_device
from fsgr.errors import CheckpointError, ConfigError
from fsgr.data.images import load_image, open_image, preprocess, to_rgb
from fsgr.models.decoding import DecodeSettings, decode

ImageLike = Union[str, os.PathLike, Image.Image]
BACKGROUND_NAMES = {"background"}


@dataclass
class Caption:
    """One image's decoded caption with what bulk captioning and the server report."""

    text: str
    logprob: float                      # summed log-prob of the generated tokens (<eos> included)
    length: int                         # generated tokens before <eos>
    beams: list[tuple[str, float]]      # every beam, best first: (text, summed log-prob)
    concept_ids: Optional[torch.Tensor]  # (P,) map label of each patch over the whole codebook; None: not asked
    tokens: list[int] = field(default_factory=list)   # the best beam's generated tokens before <eos>


@dataclass
class Explanation:
    caption: str
    concept_ids: torch.Tensor          # (gh, gw) long: global codebook id of each patch
    concept_names: dict[int, str]      # id -> name for the ids present
    image: Image.Image                 # the RGB input as given (before resizing)
    confidence: Optional[torch.Tensor] = None      # (gh, gw) probability of each patch's concept over the whole codebook
    background_ids: tuple[int, ...] = ()           # codebook ids that name the background
    words: list[str] = field(default_factory=list)         # the caption's words (with word attention)
    word_attention: Optional[torch.Tensor] = None  # (len(words), gh * gw) cross-attention of each word


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
    def generate(self, images: torch.Tensor, settings: Optional[DecodeSettings] = None,
                 concept_map: bool = False) -> list[Caption]:
        """(B, 3, S, S) preprocessed images -> one Caption each (all beams, scores, concept ids)."""
        settings = settings or self.settings()
        encoded = self.encode(images, concept_map=concept_map)
        return captions_of(decode(self.model, encoded, settings, return_all=True), self.vocab,
                           encoded.map_ids if concept_map else None)

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
        device = pick_device(None if device is None else str(device), 0)   # the trainer's rule: bare 'cuda' -> cuda:0
        loaded = model_from_state(config, itos, state, codebook_names, source=source)
        return cls(loaded.model.to(device), loaded.vocab, loaded.cfg, device, loaded.codebook_names)

    def encode(self, images: torch.Tensor, concept_map: bool = False):
        return self.model.encode(images.to(self.device), concept_map=concept_map)

    # ------------------------------------------------------------------ explain
    @torch.no_grad()
    def explain(self, image: ImageLike, words: bool = False) -> Explanation:
        """Caption plus the MaskCLIP dense label of every patch over the whole codebook (background included; not
        the head's per-image top-k assignment, which can never say "background" when the image's global embedding
        does not rank it) and its softmax probability; with `words`, each word's cross-attention over the patches
        (fsgr.serving.maps)."""
        if not self.cfg.model.semantic.enabled:
            raise CheckpointError("this checkpoint's model has no semantic head (model.semantic.enabled=false): "
                                  "there is no patch-to-concept map to draw")
        # one conversion for every verb: the drawn image is what the model saw (16-bit rescaled, alpha on white)
        pil = to_rgb(image if isinstance(image, Image.Image) else open_image(image, size=None))
        pixels = self.preprocess(pil)[None].to(self.device)
        encoded = self.encode(pixels, concept_map=True)
        caption = captions_of(decode(self.model, encoded, self.settings(), return_all=True), self.vocab,
                              encoded.map_ids)[0]
        side = int(round(caption.concept_ids.numel() ** 0.5))
        grid = caption.concept_ids.view(side, side)
        names = {i: self.concept_name(i) for i in sorted(set(grid.flatten().tolist()))}
        exp = Explanation(caption=caption.text, concept_ids=grid, concept_names=names, image=pil,
                          confidence=encoded.map_confidence[0].view(side, side).cpu(),
                          background_ids=tuple(self.background_ids()))
        if words and caption.tokens:
            from fsgr.serving.maps import word_attention

            attention = word_attention(self.model, encoded, caption.tokens, self.vocab.bos_id).cpu()
            keep = [i for i, t in enumerate(caption.tokens) if i == 0 or t != caption.tokens[i - 1]]  # as the text
            exp.words = [self.vocab.itos[caption.tokens[i]] for i in keep]
            exp.word_attention = attention[keep]
        return exp


def captions_of(result, vocab, concept_ids: Optional[torch.Tensor]) -> list[Caption]:
    """A return_all BeamResult (B, k, T) -> Captions; texts with consecutive repeats collapsed (the evaluation's)."""
    tokens = result.tokens.cpu().tolist()
    scores = result.seq_logprob.float().cpu().tolist()
    out = []
    for b, beams in enumerate(tokens):
        texts = [vocab.decode(row, collapse_repeats=True) for row in beams]
        best = beams[0]
        length = best.index(vocab.eos_id) if vocab.eos_id in best else sum(t != vocab.pad_id for t in best)
        out.append(Caption(text=texts[0], logprob=scores[b][0], length=length, beams=list(zip(texts, scores[b])),
                           concept_ids=None if concept_ids is None else concept_ids[b].cpu(),
                           tokens=best[:length]))
    return out


def draw_explanation(exp: Explanation, top: int = 8, width: int = 448, min_confidence: float = 0.0) -> Image.Image:
    """The concept map (background left as background, labelled regions, smooth overlay), legend, caption and, when
    present, the per-word attention maps: fsgr.serving.maps.draw_explanation."""
    from fsgr.serving.maps import draw_explanation as draw

    return draw(exp, top=top, width=width, min_confidence=min_confidence)
