"""Checkpoints: one `.pt` file that is enough to caption, evaluate or resume, written atomically.

Contents (format version FORMAT_VERSION): resolved config, vocabulary itos, codebook names and fingerprint, model
state, optimiser, grad scaler, every RNG state (python, numpy, torch CPU, CUDA, loader generator), and the training
state (phase, epoch, step within epoch, global step, best score, patience). The LR schedule is a pure function of
(phase, epoch) and is stored as its formula's parameters only.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsgr.errors import CheckpointError

FORMAT_VERSION = 1

# Config keys that may change between a run and its resumption (they do not change the numbers of a step).
RESUMABLE_CHANGES = (
    "run.", "train.max_steps", "train.log_every", "train.max_epochs", "scst.max_epochs", "data.workers",
    "data.pin_memory", "data.persistent_workers", "data.prefetch_factor", "data.cache_dir", "eval.", "train.compile",
)


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same directory, fsync, then rename over `path` (never a torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a torn/foreign file: say which file, not a pickle traceback
        raise CheckpointError(f"{path}: not a readable fsgr checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"{path}: not an fsgr checkpoint (no format_version)")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {ckpt['format_version']}, this fsgr reads {FORMAT_VERSION}")
    return ckpt


def rng_state(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and state.get("loader") is not None:
        loader_generator.set_state(state["loader"])


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """Dotted keys whose values differ and that matter for resuming (RESUMABLE_CHANGES are allowed to differ)."""
    a, b = _flatten(saved), _flatten(current)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if any(key == p or (p.endswith(".") and key.startswith(p)) for p in RESUMABLE_CHANGES):
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            diffs.append(f"{key}: checkpoint {a.get(key, '<absent>')!r}, now {b.get(key, '<absent>')!r}")
    return diffs


def check_resumable(ckpt: dict, path: Path, config: dict, vocab_itos: list[str],
                    codebook_fingerprint: str | None) -> None:
    """Refuse, with a message naming both sides, to resume with another config, vocabulary or codebook."""
    diffs = config_differences(ckpt["config"], config)
    if diffs:
        more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise CheckpointError(f"{path}: cannot resume with a different config: {'; '.join(diffs[:3])}{more}")
    saved_itos = ckpt["vocab_itos"]
    if list(saved_itos) != list(vocab_itos):
        first = next((i for i, (x, y) in enumerate(zip(saved_itos, vocab_itos)) if x != y),
                     min(len(saved_itos), len(vocab_itos)))
        raise CheckpointError(f"{path}: vocabulary differs from the checkpoint's (checkpoint {len(saved_itos)} words, "
                              f"now {len(vocab_itos)}; first difference at id {first})")
    if ckpt.get("codebook_fingerprint") != codebook_fingerprint:
        raise CheckpointError(f"{path}: codebook differs from the checkpoint's (checkpoint fingerprint "
                              f"{ckpt.get('codebook_fingerprint')}, now {codebook_fingerprint})")
