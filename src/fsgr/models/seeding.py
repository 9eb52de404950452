"""Per-module initialisation streams, so that two model variants built with the same seed start the modules they
share from the same weights.

Built in one global random stream, every module's initial weights depend on what was built before it: a variant
without prompts, or without the semantic grid, would start its adapters, encoder and decoder from another draw, and an
ablation would compare two initialisations as well as two models. So the captioner draws ONE number from the global
generator (the same draw in every variant) and builds each module under its own generator seeded by that number and
the module's name.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Optional

import torch


def draw_init_seed() -> int:
    """One draw from the global generator: the base of every module's stream (seeded by train.seed upstream)."""
    return int(torch.randint(0, 2 ** 31 - 1, ()).item())


@contextlib.contextmanager
def module_stream(base: Optional[int], name: str):
    """Build a module inside: the global CPU generator is seeded by (base, name) and restored afterwards.
    base None: the global stream as it is (a module built on its own, outside a captioner)."""
    if base is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(base * 1_000_003 + zlib.crc32(name.encode()))
        yield
