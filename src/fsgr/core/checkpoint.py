"""Checkpoints: one `.pt` file that is enough to caption, evaluate or resume, written atomically.

Contents (format version FORMAT_VERSION): resolved config, vocabulary itos, codebook names and fingerprint, model
state, optimiser, grad scaler, every RNG state (python, numpy, torch CPU, CUDA, loader generator), and the training
state (phase, epoch, step within epoch, global step, best score, patience). The LR schedule is a pure function of
(phase, epoch) and is stored as its formula's parameters only.

Safety: a checkpoint holds tensors and plain values only (dicts, lists, tuples, strings, numbers), and it is read with
`torch.load(weights_only=True)`, which refuses to call anything a file names while unpickling: a `.pt` crafted to run
code is refused before it runs. Format 2 adds `checksum`, a SHA-256 of everything else in the file, verified on load
(a file damaged in the middle is named as such, not loaded). Format 1 files (no checksum, numpy RNG state pickled as
arrays) are still read.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsgr.config import flatten
from fsgr.errors import CheckpointError
from fsgr.files import atomic_write, existing_file, why_unloadable

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
REQUIRED_KEYS = ("config", "vocab_itos", "model")

# Config keys that may change between a run and its resumption (they do not change the numbers of a step).
# keys that cannot change a finished run's numbers: where it lives, loader plumbing, a step cap it did not hit
SAME_RUN_CHANGES = ("run.", "data.workers", "data.pin_memory", "data.persistent_workers", "data.prefetch_factor",
                    "train.max_steps", "train.log_every", "train.log_batches", "eval.java_timeout")
# ... and what a resume may change besides: how long it goes on, where the caption cache lives, evaluation, compile
RESUMABLE_CHANGES = SAME_RUN_CHANGES + ("train.max_epochs", "scst.max_epochs", "data.cache_dir", "eval.",
                                        "train.compile")
# Recipe keys added after a run could have been saved without them -> the value that reproduces what such a run did
# (older fsgr counted the SCST reward's document frequencies over images), so an older run resumes with that value.
VALUES_BEFORE_THE_KEY = {"scst.reward_documents": "images"}


def payload_checksum(payload: Mapping[str, Any]) -> str:
    """'sha256:<hex>' of every entry but 'checksum': tensors by dtype, shape and bytes, other values by repr."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != "checksum"})
    return "sha256:" + digest.hexdigest()


def _feed(digest, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, np.ndarray):
        digest.update(f"A{obj.dtype}{obj.shape};".encode())
        digest.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Mapping):
        digest.update(f"D{len(obj)};".encode())
        for key in sorted(obj, key=repr):     # str keys (configs) and int keys (optimiser state) alike
            _feed(digest, key)
            _feed(digest, obj[key])
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)};".encode())
        for value in obj:
            _feed(digest, value)
    else:
        digest.update(f"{type(obj).__name__}:{obj!r};".encode())


def make_payload(*, config: dict, vocab_itos: list[str], codebook_names, codebook_fingerprint, model, optimizer,
                 schedule, scaler, rng: list[dict], state, world_size: int, last_eval: dict) -> dict[str, Any]:
    """What a training checkpoint holds (before `atomic_save` stamps its checksum): the module, optimiser and scaler
    as their state dicts, the LR schedule and the training state (dataclasses) as plain dicts, `rng` one entry per
    rank (`rng_state()` of each)."""
    return {
        "format_version": FORMAT_VERSION,
        "config": config,
        "vocab_itos": vocab_itos,
        "codebook_names": codebook_names,
        "codebook_fingerprint": codebook_fingerprint,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": asdict(schedule),
        "scaler": scaler.state_dict(),
        "rng": rng,
        "state": asdict(state),
        "world_size": world_size,
        "last_eval": last_eval,
    }


def atomic_save(payload: dict[str, Any], path: str | Path) -> Path:
    """Stamp the checksum, then torch.save through `fsgr.files.atomic_write` (never a torn file or a temp left)."""
    payload = {**payload, "checksum": payload_checksum(payload)}
    return atomic_write(path, lambda f: torch.save(payload, f))


def checkpoint_sha256(path: str | Path) -> str:
    """The identity of a checkpoint file: SHA-256 of its bytes (`file_sha256`). Recorded where outputs must name the
    model that wrote them (bulk captions); computed on each call, nothing cached."""
    return file_sha256(existing_file(Path(path), "a checkpoint file", CheckpointError, "checkpoint not found"))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes as 64 hex digits, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _numpy_globals() -> list:
    """What format-1 files need to rebuild the numpy RNG state array (and nothing that can run code)."""
    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    return [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
            type(np.dtype(np.uint32))]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = existing_file(Path(path), "a checkpoint file", CheckpointError, "checkpoint not found")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a torn/foreign/hostile file: say which file, not a pickle traceback
        why = why_unloadable(exc)
        raise CheckpointError(f"{path}: {why}" if why.startswith("refused") else
                              f"{path}: not a readable fsgr checkpoint ({why})") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"{path}: not an fsgr checkpoint (no format_version)")
    if ckpt["format_version"] not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint format {ckpt['format_version']!r}, this fsgr reads "
                              f"{', '.join(map(str, READABLE_VERSIONS))}")
    if ckpt["format_version"] >= 2:
        content = payload_checksum(ckpt)
        if ckpt.get("checksum") != content:
            raise CheckpointError(f"{path}: checksum mismatch: the file was damaged or changed after fsgr wrote it "
                                  f"(stored {str(ckpt.get('checksum'))[:23]}..., content {content[:23]}...); use "
                                  f"another copy")
    missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt.get(k), (dict, list))]
    if missing:
        raise CheckpointError(f"{path}: not a complete fsgr checkpoint: no {' / '.join(missing)}")
    return ckpt


def rng_state(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def _numpy_state_plain(state: tuple) -> tuple:
    """numpy's legacy RNG state with its key array as a list: plain values, loadable with weights_only."""
    name, keys, *rest = state
    return (name, np.asarray(keys).tolist(), *rest)


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        # a node may have fewer GPUs than the one that saved the state (resuming on another number of processes)
        for index, device_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)
    if loader_generator is not None and state.get("loader") is not None:
        loader_generator.set_state(state["loader"])


def config_differences(saved: dict, current: dict, allowed: tuple[str, ...] = RESUMABLE_CHANGES) -> list[str]:
    """Dotted keys whose values differ and that matter for resuming (`allowed` keys, or sections ending in '.',
    may differ)."""
    a, b = flatten(saved), flatten(current)
    a.update({key: value for key, value in VALUES_BEFORE_THE_KEY.items() if key not in a})
    diffs = []
    for key in sorted(set(a) | set(b)):
        if any(key == p or (p.endswith(".") and key.startswith(p)) for p in allowed):
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
