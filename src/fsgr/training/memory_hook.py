"""When the PMA prototypical memory moves: the trainer's hook, called after every optimiser step.

The model only holds the banks and prototypes (`fsgr.models.memory.LayerMemory`) and samples token keys/values while
it runs in training mode; this hook applies the update rules (docs/pma.md):

- commit: the step's sample becomes the step's slot of every layer's ring buffer;
- refresh: every `model.pma.refresh_every` steps each bank is re-clustered into prototypes, seeded by (pma.seed, step,
  layer) only, so ranks and resumed runs draw the same initial centres;
- SCST with `model.pma.frozen_in_scst`: nothing moves (the step's sample is dropped);
- data parallel: each rank fills its own banks; at a refresh every rank contributes an equal share of its bank to an
  all_gather, all ranks cluster the same union, and rank 0's prototypes are broadcast so that they are bitwise
  identical everywhere (scatter/index_add on GPUs is not bitwise deterministic).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed

from fsgr.models.config import PMAConfig
from fsgr.models.memory import LayerMemory
from fsgr.core.distributed import DistInfo


class MemoryHook:
    def __init__(self, layers: list[LayerMemory], cfg: Optional[PMAConfig], dist: DistInfo = DistInfo()):
        self.layers, self.cfg, self.dist = layers, cfg, dist

    @classmethod
    def for_decoder(cls, decoder, dist: DistInfo = DistInfo()) -> "MemoryHook":
        """The hook of a decoder's memory layers (none: every call is a no-op)."""
        return cls(decoder.memory_layers(), decoder.pma, dist)

    def after_step(self, step: int, phase: str) -> bool:
        """After optimiser step `step` (1-based, both phases). Returns True when the prototypes were refreshed."""
        if not self.layers:
            return False
        if phase == "scst" and self.cfg.frozen_in_scst:
            for mem in self.layers:
                mem.clear_stage()
            return False
        for mem in self.layers:
            mem.commit()
        if step % self.cfg.refresh_every:
            return False
        self.refresh(step)
        return True

    def refresh(self, step: int) -> None:
        """Re-cluster every layer's bank (the union of every rank's share under DDP)."""
        for i, mem in enumerate(self.layers):
            gen = torch.Generator(device=mem.bank_k.device)
            gen.manual_seed((self.cfg.seed * 1_000_003 + step * 101 + i) % (2 ** 63))
            mem.refresh(gen, bank=self._bank_union(mem) if self.dist.enabled else None)
            if self.dist.enabled:
                for t in (mem.proto_k, mem.proto_v):
                    torch.distributed.broadcast(t, 0)

    def _bank_union(self, mem: LayerMemory) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(keys, values, valid) bank rows of every rank: each contributes an equal, strided share of its bank."""
        world, rank = self.dist.world_size, self.dist.rank
        share = mem.bank_k.shape[0] // world
        mine = slice(rank, rank + share * world, world)
        parts = []
        for t in (mem.bank_k[mine].contiguous(), mem.bank_v[mine].contiguous(),
                  mem.bank_valid[mine].to(torch.uint8).contiguous()):
            out = [torch.empty_like(t) for _ in range(world)]
            torch.distributed.all_gather(out, t)
            parts.append(torch.cat(out))
        return parts[0], parts[1], parts[2].bool()
