"""Packaged assets: `model.clip.path: demo` and `model.semantic.codebook: demo` name the files below, which live
inside the package (importlib.resources), so a run finds them from any working directory with nothing downloaded."""

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
        raise CheckpointError(f"{path}: shipped asset missing (rebuild it: see docs/demo.md)")
    return path


def _resolve(path: Optional[Union[str, Path]], shipped: str) -> Optional[str]:
    if path is None:
        return None
    return str(asset_path(shipped)) if str(path) == DEMO else str(path)


def resolve_clip(path: Optional[Union[str, Path]]) -> Optional[str]:
    """'demo' -> the shipped tiny CLIP's file; anything else unchanged."""
    return _resolve(path, CLIP_FILE)


def resolve_codebook(path: Optional[Union[str, Path]]) -> Optional[str]:
    """'demo' -> the shipped demo codebook's file; anything else unchanged."""
    return _resolve(path, CODEBOOK_FILE)
