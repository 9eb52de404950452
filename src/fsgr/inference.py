"""Serving a trained checkpoint: `fsgr.Captioner.from_checkpoint(path, device=None, precision=None).caption(images)`.

A checkpoint carries its resolved config, vocabulary and codebook names, so nothing else is needed: the model is built
from the config without reading CLIP or codebook files, then the checkpoint's full state (CLIP weights and codebook
buffer included) is loaded strictly. `save_pretrained(DIR)` / `from_pretrained(DIR)` write and read the Hub-style
safetensors folder (fsgr.core.export_folder; `fsgr export --format safetensors` is the same code).

Decoding takes Hugging Face generate()'s names (`num_beams`, `max_new_tokens`, `min_new_tokens`,
`no_repeat_ngram_size`, `length_penalty`, `do_sample`, `temperature`, `top_k`, `top_p`, `num_return_sequences`,
`seed`) or fsgr's older ones (`beam_size`, `max_len`, `min_len`, `no_repeat_ngram`); what is not given is the
checkpoint's `eval.*` setting (fsgr.models.decoding.DecodeSettings checks every value). A Captioner decodes in one
precision, fixed when it is built (fsgr.core.device.decoding_precision: by default the trainer's own).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from PIL import Image

from fsgr.core import export_folder
from fsgr.core.build import model_from_state
from fsgr.core.checkpoint import load_checkpoint
from fsgr.core.device import autocast, decoding_precision, pick_device, precision_name
from fsgr.errors import CheckpointError, ConfigError
from fsgr.data.images import load_image, open_image, preprocess, to_rgb
from fsgr.models.decoding import DecodeSettings, decode
from fsgr.serving import maps

ImageLike = Union[str, os.PathLike, Image.Image]
BACKGROUND_NAMES = {"background"}


@dataclass
class Caption:
    """One image's decoded caption with what bulk captioning and the server report."""

    text: str
    logprob: float                      # summed log-prob of the generated tokens (<eos> included)
    length: int                         # generated tokens before <eos>
    beams: list[tuple[str, float]]      # every beam, best first, or every sample as drawn: (text, summed log-prob)
    concept_ids: Optional[torch.Tensor]  # (P,) map label of each patch over the whole codebook; None: not asked
    tokens: list[int] = field(default_factory=list)   # the best beam's generated tokens before <eos>
    sequences: list[tuple[str, float]] = field(default_factory=list)   # the num_return_sequences first of beams


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

    amp_dtype: Optional[torch.dtype] = None     # the autocast dtype decoding runs in (None: fp32)

    # ------------------------------------------------------------------ concepts
    def concept_name(self, concept_id: int) -> str:
        names = self.codebook_names
        return names[concept_id] if names and 0 <= concept_id < len(names) else f"concept {concept_id}"

    def background_ids(self) -> list[int]:
        """Codebook ids that name the background: "background" and the demo's textures ("striped background", ...);
        none in the RAM tags."""
        return [i for i, name in enumerate(self.codebook_names or [])
                if name.strip().lower() in BACKGROUND_NAMES or name.strip().lower().endswith(" background")]

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

    @property
    def precision(self) -> str:
        """fp32, bf16 or fp16: what this captioner decodes in."""
        return precision_name(self.amp_dtype)

    def settings(self, **decoding) -> DecodeSettings:
        """The checkpoint's eval decoding settings with the given ones (HF or fsgr names; None = keep) replaced,
        checked against this model (beams and top_k within the words it can generate, max_len within its decoder)."""
        return DecodeSettings.from_config(self.cfg.eval, **decoding).check_model(self.model.decoder.vocab_size,
                                                                                 self.model.decoder.max_len)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, settings: Optional[DecodeSettings] = None, concept_map: bool = False,
                 **decoding) -> list[Caption]:
        """(B, 3, S, S) preprocessed images -> one Caption each (every beam or sample with its score, the
        num_return_sequences returned ones, concept ids). `settings` (from `settings()`) or the decoding keywords of
        `caption`, not both."""
        if settings is not None and decoding:
            raise TypeError("generate() takes settings or decoding keywords, not both")
        settings = settings or self.settings(**decoding)
        with autocast(self.device, self.amp_dtype):
            encoded = self.encode(images, concept_map=concept_map)
            result = decode(self.model, encoded, settings, return_all=True)
        return captions_of(result, self.vocab, encoded.map_ids if concept_map else None,
                           settings.num_return_sequences)

    def caption_tensors(self, images: torch.Tensor, settings: Optional[DecodeSettings] = None, **decoding) -> list:
        """Preprocessed images -> their captions, as `caption` returns them."""
        settings = settings or self.settings(**decoding)
        return [c.text if settings.num_return_sequences == 1 else [text for text, _ in c.sequences]
                for c in self.generate(images, settings)]

    def caption(self, images: Union[ImageLike, Sequence[ImageLike]], *, num_beams: Optional[int] = None,
                max_new_tokens: Optional[int] = None, min_new_tokens: Optional[int] = None,
                no_repeat_ngram_size: Optional[int] = None, length_penalty: Optional[float] = None,
                do_sample: bool = False, temperature: float = 1.0, top_k: Optional[int] = None,
                top_p: Optional[float] = None, num_return_sequences: int = 1, seed: Optional[int] = None,
                batch_size: int = 16, **old_names) -> list:
        """Captions of PIL images or image paths, Hugging Face generate()'s controls (the checkpoint's eval settings
        for what is not given; `old_names`: beam_size, max_len, min_len, no_repeat_ngram).

        -> one caption (str) per image; with num_return_sequences > 1, one list of that many captions per image (the
        best beams, best first, or the samples as drawn). With do_sample, a given seed gives the same captions for
        the same image whatever the batch (fsgr.models.decoding)."""
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size {batch_size!r}: must be an integer >= 1")
        settings = self.settings(num_beams=num_beams, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                                 no_repeat_ngram_size=no_repeat_ngram_size, length_penalty=length_penalty,
                                 do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                                 num_return_sequences=num_return_sequences, seed=seed, **old_names)
        out: list = []                                # every value was refused above, before any image is read
        for start in range(0, len(images), batch_size):
            chunk = torch.stack([self.preprocess(im) for im in images[start:start + batch_size]])
            out.extend(self.caption_tensors(chunk, settings))
        return out


class Captioner(CaptionerBase):
    source: Optional[str] = None      # the checkpoint file or folder it was loaded from (None: built in memory)

    def __init__(self, model, vocab, cfg, device: torch.device, codebook_names: Optional[list[str]] = None,
                 precision: Optional[str] = None):
        """`precision`: fp32, bf16, fp16 or train (None = train: the checkpoint's train.amp as the trainer resolves
        it on `device`, so fp32 on the CPU unless the run was trained in bf16/fp16)."""
        self.model = model.eval()
        self.vocab = vocab
        self.cfg = cfg
        self.device = device
        self.codebook_names = codebook_names
        self.amp_dtype = decoding_precision(precision, cfg.train.amp, device)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        precision: Optional[str] = None) -> "Captioner":
        ckpt = load_checkpoint(path)
        return cls._build(ckpt["config"], ckpt["vocab_itos"], ckpt["model"], ckpt.get("codebook_names"), device,
                          precision, source=str(path))

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str | torch.device | None = None,
                        precision: Optional[str] = None) -> "Captioner":
        """A folder written by `save_pretrained` or `fsgr export --format safetensors`, every file checked against
        its manifest first (CheckpointError naming a missing, truncated or changed one)."""
        config, itos, names, state = export_folder.read_safetensors(Path(folder))
        return cls._build(config, itos, state, names, device, precision, source=str(folder))

    def save_pretrained(self, folder: str | os.PathLike, summary: Optional[dict] = None,
                        license: str = "other") -> list[Path]:
        """Write the Hub-style folder `from_pretrained` loads: config.json, model.safetensors, vocab.json,
        concepts.json, a README.md model card (front matter for a model hub: library, pipeline, `license`, datasets,
        metrics and the run's test scores) and the manifest. `summary`: the run's summary.json as a dict; by default
        the one beside the checkpoint this Captioner was loaded from (RUN/checkpoints/X.pt -> RUN/summary.json), if
        any. `folder` must be new, empty or an earlier export (ConfigError otherwise, before anything is written).
        -> the files written."""
        folder = Path(folder)
        export_folder.claim_folder(folder)
        if summary is None and self.source is not None:
            summary = export_folder.run_summary(Path(self.source))
        return export_folder.save_safetensors(self, folder, summary=summary, license=license)

    @classmethod
    def _build(cls, config: dict, itos: list[str], state: dict, codebook_names, device, precision,
               source: str) -> "Captioner":
        device = pick_device(None if device is None else str(device), 0)   # the trainer's rule: bare 'cuda' -> cuda:0
        loaded = model_from_state(config, itos, state, codebook_names, source=source)
        captioner = cls(loaded.model.to(device), loaded.vocab, loaded.cfg, device, loaded.codebook_names, precision)
        captioner.source = source
        return captioner

    def encode(self, images: torch.Tensor, concept_map: bool = False):
        return self.model.encode(images.to(self.device), concept_map=concept_map)

    # ------------------------------------------------------------------ explain
    @torch.no_grad()
    def explain(self, image: ImageLike, words: bool = False, settings: Optional[DecodeSettings] = None,
                **decoding) -> Explanation:
        """Caption plus the MaskCLIP dense label of every patch over the whole codebook (background included; not
        the head's per-image top-k assignment, which can never say "background" when the image's global embedding
        does not rank it) and its softmax probability; with `words`, each word's cross-attention over the patches
        (fsgr.serving.maps). `settings` or the decoding keywords of `caption`: the first caption is explained."""
        if not self.cfg.model.semantic.enabled:
            raise CheckpointError("this checkpoint's model has no semantic head (model.semantic.enabled=false): "
                                  "there is no patch-to-concept map to draw")
        # one conversion for every verb: the drawn image is what the model saw (16-bit rescaled, alpha on white)
        pil = to_rgb(image if isinstance(image, Image.Image) else open_image(image, size=None))
        if settings is not None and decoding:
            raise TypeError("explain() takes settings or decoding keywords, not both")
        settings = settings or self.settings(**decoding)
        pixels = self.preprocess(pil)[None].to(self.device)
        with autocast(self.device, self.amp_dtype):
            encoded = self.encode(pixels, concept_map=True)
            caption = captions_of(decode(self.model, encoded, settings, return_all=True), self.vocab,
                                  encoded.map_ids)[0]
        side = int(round(caption.concept_ids.numel() ** 0.5))
        grid = caption.concept_ids.view(side, side)
        names = {i: self.concept_name(i) for i in sorted(set(grid.flatten().tolist()))}
        exp = Explanation(caption=caption.text, concept_ids=grid, concept_names=names, image=pil,
                          confidence=encoded.map_confidence[0].view(side, side).cpu(),
                          background_ids=tuple(self.background_ids()))
        if words and caption.tokens:
            with autocast(self.device, self.amp_dtype):
                attention = maps.word_attention(self.model, encoded, caption.tokens, self.vocab.bos_id).float().cpu()
            keep = [i for i, t in enumerate(caption.tokens) if i == 0 or t != caption.tokens[i - 1]]  # as the text
            exp.words = [self.vocab.itos[caption.tokens[i]] for i in keep]
            exp.word_attention = attention[keep]
        return exp


def captions_of(result, vocab, concept_ids: Optional[torch.Tensor], num_return_sequences: int = 1) -> list[Caption]:
    """A return_all BeamResult (B, k, T) -> Captions; texts with consecutive repeats collapsed (the evaluation's).
    A beam whose score is not finite (it never held a word the controls allowed) is no caption and is left out."""
    tokens = result.tokens.cpu().tolist()
    scores = result.seq_logprob.float().cpu().tolist()
    out = []
    for b, beams in enumerate(tokens):
        kept = [(row, score) for row, score in zip(beams, scores[b]) if math.isfinite(score)]
        if len(kept) < num_return_sequences:      # DecodeSettings.check_model keeps this from happening
            raise ConfigError(f"image {b} of the batch: the decoding controls left {len(kept)} caption(s) for "
                              f"num_return_sequences {num_return_sequences}")
        texts = [(vocab.decode(row, collapse_repeats=True), score) for row, score in kept]
        best = kept[0][0]
        length = best.index(vocab.eos_id) if vocab.eos_id in best else sum(t != vocab.pad_id for t in best)
        out.append(Caption(text=texts[0][0], logprob=texts[0][1], length=length, beams=texts,
                           concept_ids=None if concept_ids is None else concept_ids[b].cpu(),
                           tokens=best[:length], sequences=texts[:num_return_sequences]))
    return out


def draw_explanation(exp: Explanation, top: int = 8, width: int = 448, min_confidence: float = 0.0) -> Image.Image:
    """The concept map (background left as background, labelled regions, smooth overlay), legend, caption and, when
    present, the per-word attention maps: fsgr.serving.maps.draw_explanation."""
    return maps.draw_explanation(exp, top=top, width=width, min_confidence=min_confidence)
