"""Semantic codebook: CLIP text embeddings of a class list (RAM's 4,585 tags, COCO's 80, or any list).

File format (`torch.save` of a dict): {"format": "fsgr-codebook", "version": 1, "names": [C str], "template": str,
"templates": [str] or absent (a prompt ensemble: each class embedded with every template, the normalised embeddings
averaged and renormalised, as MaskCLIP / CLIP zero-shot do; "template" is then None),
"embeddings": (C, E) fp32 L2-normalised, "clip_fingerprint": str (weights_fingerprint of the CLIP that embedded them),
"embed_dim": E}. `load_codebook` refuses a file whose size, width or CLIP fingerprint does not match what the model
expects, naming both values. The reference's bare (C, E) tensor files are accepted too; they carry no names and
no fingerprint, so the fingerprint check cannot be made for them (a warning says so).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from fsgr.errors import CheckpointError, DataError
from fsgr.files import atomic_write, existing_file, why_unloadable
from fsgr.models.clip import tokenize, weights_fingerprint

FORMAT, VERSION = "fsgr-codebook", 1
DEFAULT_TEMPLATE = "a photo of a {}."
SHIPPED_CLASS_LISTS = {"ram": "ram_tag_list.txt", "coco80": "coco80.txt"}
SHIPPED_TEMPLATES = {"maskclip": "maskclip_templates.txt"}   # MaskCLIP's 85: CLIP's 80 ImageNet + 5 "in the scene"


@dataclass
class Codebook:
    names: Optional[list[str]]         # None only for a reference bare-tensor file
    embeddings: torch.Tensor           # (C, E) fp32, L2-normalised rows
    template: Optional[str] = DEFAULT_TEMPLATE
    clip_fingerprint: Optional[str] = None
    templates: Optional[list[str]] = None   # a prompt ensemble (template is then None)

    @property
    def size(self) -> int:
        return self.embeddings.shape[0]

    @property
    def embed_dim(self) -> int:
        return self.embeddings.shape[1]

    def __len__(self) -> int:
        return self.size


def read_class_names(spec: Union[str, Path]) -> list[str]:
    """'ram' / 'coco80' (the shipped lists) or a UTF-8 file with one class name per line (blank lines ignored)."""
    if str(spec) in SHIPPED_CLASS_LISTS:
        text = resources.files("fsgr").joinpath("assets", SHIPPED_CLASS_LISTS[str(spec)]).read_text(encoding="utf-8")
        source = f"shipped list '{spec}'"
    else:
        path = Path(spec)
        if not path.is_file():
            raise DataError(f"{path}: class list not found (give a file with one name per line, or 'ram' / 'coco80')")
        text = path.read_text(encoding="utf-8")
        source = str(path)
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"{source}: the class list is empty")
    seen: dict[str, int] = {}
    for lineno, name in enumerate(names, 1):
        if name in seen:
            raise DataError(f"{source}: class {name!r} appears twice (entries {seen[name]} and {lineno})")
        seen[name] = lineno
    return names


def read_templates(spec: Union[str, Path]) -> list[str]:
    """'maskclip' (the shipped 85-template ensemble) or a UTF-8 file with one template per line."""
    if str(spec) in SHIPPED_TEMPLATES:
        text = resources.files("fsgr").joinpath("assets", SHIPPED_TEMPLATES[str(spec)]).read_text(encoding="utf-8")
    else:
        path = Path(spec)
        if not path.is_file():
            raise DataError(f"{path}: template list not found (give a file with one template per line, or "
                            f"{', '.join(repr(k) for k in SHIPPED_TEMPLATES)})")
        text = path.read_text(encoding="utf-8")
    templates = [line.strip() for line in text.splitlines() if line.strip()]
    if not templates:
        raise DataError(f"{spec}: the template list is empty")
    return templates


@torch.no_grad()
def _embed_texts(clip, texts: list[str], batch_size: int) -> torch.Tensor:
    device = clip.token_embedding.weight.device
    chunks = []
    for start in range(0, len(texts), batch_size):
        try:
            tokens = tokenize(texts[start:start + batch_size], context_length=clip.context_length)
        except ValueError as exc:
            raise DataError(f"codebook: {exc}") from exc
        chunks.append(clip.encode_text(tokens.to(device)).float().cpu())
    return F.normalize(torch.cat(chunks), dim=-1)                                   # (len(texts), E)


def build_codebook(clip, names: Sequence[str], template: str = DEFAULT_TEMPLATE, batch_size: int = 256,
                   templates: Optional[Sequence[str]] = None) -> Codebook:
    """Embed `template.format(name)` for every name with the CLIP text tower (on whatever device the CLIP is).
    `templates`: a prompt ensemble instead: per class the mean of the normalised embeddings of every template,
    renormalised (MaskCLIP's codebooks; CLIP's zero-shot classifiers)."""
    ensemble = list(templates) if templates else [template]
    for t in ensemble:
        if "{}" not in t:
            raise DataError(f"codebook template {t!r} has no '{{}}' where the class name goes")
    names = list(names)
    was_training = clip.training
    clip.eval()
    total = sum(_embed_texts(clip, [t.format(n) for n in names], batch_size) for t in ensemble)
    clip.train(was_training)
    embeddings = F.normalize(total, dim=-1)
    return Codebook(names=names, embeddings=embeddings, template=None if templates else template,
                    clip_fingerprint=weights_fingerprint(clip), templates=list(templates) if templates else None)


def save_codebook(codebook: Codebook, path: Union[str, Path]) -> None:
    payload = {"format": FORMAT, "version": VERSION, "names": codebook.names, "template": codebook.template,
               "templates": codebook.templates,
               "embeddings": codebook.embeddings.detach().float().cpu().contiguous(),
               "clip_fingerprint": codebook.clip_fingerprint, "embed_dim": codebook.embed_dim}
    atomic_write(path, lambda f: torch.save(payload, f))


def load_codebook(path: Union[str, Path], expected_size: Optional[int] = None,
                  expected_fingerprint: Optional[str] = None, expected_dim: Optional[int] = None) -> Codebook:
    """Read a codebook file (ours, or a reference bare (C, E) tensor) and check it against what the model expects."""
    path = existing_file(Path(path), "a codebook file", CheckpointError,
                         "codebook file not found (make one with `fsgr codebook`)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise CheckpointError(f"{path}: not a codebook file: {why_unloadable(exc)}") from None
    if isinstance(obj, torch.Tensor):
        if obj.dim() != 2 or not obj.is_floating_point():
            raise CheckpointError(f"{path}: a bare codebook tensor must be (C, E) floats, got {tuple(obj.shape)} {obj.dtype}")
        # the reference's raw text-embedding tensor; re-normalising is a no-op for the intended (normalised) file
        codebook = Codebook(names=None, embeddings=F.normalize(obj.float(), dim=-1), template=None, clip_fingerprint=None)
    elif isinstance(obj, dict) and obj.get("format") == FORMAT:
        if obj.get("version") != VERSION:
            raise CheckpointError(f"{path}: codebook format version {obj.get('version')}, this fsgr reads {VERSION}")
        emb = obj["embeddings"]
        names = list(obj["names"])
        if emb.dim() != 2 or emb.shape[0] != len(names):
            raise CheckpointError(f"{path}: {len(names)} names but embeddings of shape {tuple(emb.shape)}")
        codebook = Codebook(names=names, embeddings=emb.float(), template=obj.get("template"),
                            clip_fingerprint=obj.get("clip_fingerprint"), templates=obj.get("templates"))
    else:
        keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a codebook (expected an fsgr codebook dict or a (C, E) tensor; found {keys})")

    if expected_size is not None and codebook.size != expected_size:
        raise CheckpointError(f"{path}: codebook has {codebook.size} concepts but the model is configured for "
                              f"{expected_size} (model.semantic.codebook_size)")
    if expected_dim is not None and codebook.embed_dim != expected_dim:
        raise CheckpointError(f"{path}: codebook embeddings are {codebook.embed_dim}-d but the CLIP embeds to "
                              f"{expected_dim}-d")
    if expected_fingerprint is not None:
        if codebook.clip_fingerprint is None:
            warnings.warn(f"{path}: codebook carries no CLIP fingerprint (reference bare-tensor file); cannot check it "
                          f"was made with this CLIP ({expected_fingerprint})", stacklevel=2)
        elif codebook.clip_fingerprint != expected_fingerprint:
            raise CheckpointError(f"{path}: codebook was embedded with CLIP weights {codebook.clip_fingerprint}, but "
                                  f"the model's CLIP is {expected_fingerprint}; rebuild it with `fsgr codebook`")
    return codebook


def permute_object_rows(codebook: Codebook, seed: int) -> Codebook:
    """The ablation's "wrong language" codebook: the embeddings of every row not named background (no name ending in
    'background') shuffled among themselves by a seeded derangement; names, size and background rows unchanged. The
    semantic head labels patches with the true rows and builds S from these (FSGRCaptioner(grid_codebook=)): a
    head labelling with permuted rows would pick the same vectors under other indices, which changes nothing."""
    names = codebook.names or [""] * codebook.size
    rows = [i for i, n in enumerate(names) if not n.strip().lower().endswith("background")]
    if len(rows) < 2:
        raise DataError("codebook: fewer than two object rows to permute")
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(rows), generator=g)
        if not (order == torch.arange(len(rows))).any():       # every object row moves
            break
    emb = codebook.embeddings.clone()
    index = torch.tensor(rows)
    emb[index] = codebook.embeddings[index[order]]
    return replace(codebook, embeddings=emb)
