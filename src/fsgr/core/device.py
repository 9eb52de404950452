"""Where a model runs and in which precision: one rule for training, evaluation and serving."""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

from fsgr.errors import ConfigError


def pick_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """`requested` (e.g. 'cpu', 'cuda', 'cuda:1') or the local GPU of this process if there is one."""
    if requested:
        device = torch.device(requested)
        # a bare 'cuda' means this process's GPU (torchrun: LOCAL_RANK), not "whichever is current"
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
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
