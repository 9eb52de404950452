"""Where a model runs and in which precision: one rule for training, evaluation and serving."""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

from fsgr.errors import ConfigError


def pick_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """`requested` (e.g. 'cpu', 'cuda', 'cuda:1') or the local GPU of this process if there is one. A device that is
    not a device or is not usable here is refused (ConfigError) before anything is built on it."""
    if requested:
        try:
            device = torch.device(requested)
        except (RuntimeError, ValueError):
            raise ConfigError(f"--device {requested!r}: not a device; use cpu, cuda, cuda:N or mps") from None
        # a bare 'cuda' means this process's GPU (torchrun: LOCAL_RANK), not "whichever is current"
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
        if device.type == "meta":
            raise ConfigError(f"--device {requested!r}: the meta device holds no data; use cpu, cuda, cuda:N or mps")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {requested}: CUDA is not available here (a CPU build of torch, or no GPU "
                              f"visible)")
        if device.type == "cuda" and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {requested}: there are {torch.cuda.device_count()} CUDA device(s) here")
        if device.type not in ("cpu", "cuda"):
            try:
                torch.empty(0, device=device)
            except Exception as exc:  # noqa: BLE001 - whatever the backend says, the device is unusable here
                raise ConfigError(f"--device {requested}: not available here ({type(exc).__name__})") from None
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_amp(mode: str, device: torch.device) -> Optional[torch.dtype]:
    """None = fp32. auto: bf16 on GPUs that support it, else fp16 (+GradScaler); fp32 on CPU."""
    if mode == "off" or device.type == "cpu":
        if mode in ("bf16", "fp16") and device.type == "cpu":
            raise ConfigError(f"train.amp={mode}: mixed precision is for GPUs; use train.amp=auto or off on CPU")
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, amp_dtype: Optional[torch.dtype]):
    """torch.autocast in `amp_dtype` on `device`'s type; a no-op context for fp32 (amp_dtype None)."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


PRECISIONS = ("train", "fp32", "bf16", "fp16")


def decoding_precision(precision: Optional[str], train_amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype to decode in (None = fp32). "train" (or None) = the checkpoint's `train.amp` as the trainer
    resolves it on this device (auto: bf16 on a bf16 GPU, fp16 on other GPUs, fp32 on the CPU), so every verb decodes
    as the trainer's own evaluation did; fp32 / bf16 / fp16 as asked (CPU autocast runs bf16 and fp16 too)."""
    if precision not in (None, *PRECISIONS):
        raise ConfigError(f"precision {precision!r}: must be one of {', '.join(PRECISIONS)}")
    if precision in (None, "train"):
        precision = {"off": "fp32"}.get(train_amp, train_amp)
        if precision == "auto":
            return resolve_amp("auto", device)
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def precision_name(amp_dtype: Optional[torch.dtype]) -> str:
    """None / torch.bfloat16 / torch.float16 -> "fp32" / "bf16" / "fp16" (what reports and outputs say)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]
