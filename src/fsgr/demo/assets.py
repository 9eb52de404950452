"""Shipped demo assets: `model.clip.path: demo` and `model.semantic.codebook: demo` name the files below, which live
inside the package (importlib.resources), so the demo runs from any working directory with nothing downloaded."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional, Union

from fsgr.errors import CheckpointError

DEMO = "demo"
CLIP_FILE = "tiny_clip.pt"           # made by `fsgr pretrain-clip` (docs/demo.md has the command and its log)
CODEBOOK_FILE = "demo_codebook.pt"   # the shapes concepts embedded with that CLIP (`fsgr codebook`)


def asset_path(name: str) -> Path:
    path = Path(str(resources.files("fsgr").joinpath("assets", name)))
    if not path.is_file():
        raise CheckpointError(f"{path}: shipped demo asset missing (rebuild it: see docs/demo.md)")
    return path


def resolve_clip(path: Optional[Union[str, Path]]) -> Optional[str]:
    """'demo' -> the shipped tiny CLIP's file; anything else unchanged."""
    return str(asset_path(CLIP_FILE)) if path is not None and str(path) == DEMO else (None if path is None else str(path))


def resolve_codebook(path: Optional[Union[str, Path]]) -> Optional[str]:
    """'demo' -> the shipped demo codebook's file; anything else unchanged."""
    return str(asset_path(CODEBOOK_FILE)) if path is not None and str(path) == DEMO else (None if path is None else str(path))
