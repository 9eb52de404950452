"""Global batches split over processes: any batch size on any number of processes.

The epoch's order is a function of (seed, epoch) only. It is cut into global batches (one per optimiser step; the
last, incomplete one is dropped); each global batch into `micro_steps` micro-batches (gradient accumulation) and each
micro-batch into `world_size` contiguous parts whose sizes differ by at most one (10 images over 4 processes:
3/3/2/2). Concatenating the parts of all processes gives back the global batch, so one process and N processes see
the same items at every step; the trainer normalises the loss by global counts, so they optimise the same objective.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

from fsgr.errors import ConfigError


def split_sizes(n: int, parts: int) -> list[int]:
    """n items over `parts` as evenly as possible, larger parts first (10 over 4: [3, 3, 2, 2])."""
    return [n // parts + (1 if k < n % parts else 0) for k in range(parts)]


def epoch_order(num_items: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """The epoch's item order: one permutation per (seed, epoch), shared by `ResumableSampler` and the global batches."""
    if not shuffle:
        return list(range(num_items))
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=g).tolist()


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this process's part of every micro-batch of every global batch of one epoch, from `start_step`
    (optimiser steps already taken: a resumed epoch sees exactly the batches the interrupted one had left)."""

    def __init__(self, num_items: int, global_batch: int, micro_steps: int = 1, rank: int = 0, world_size: int = 1,
                 seed: int = 0, epoch: int = 0, start_step: int = 0, shuffle: bool = True, what: str = "batch"):
        if global_batch < micro_steps * world_size:
            raise ConfigError(f"{what}: {global_batch} items per step cannot be split over {world_size} processes "
                              f"x {micro_steps} micro-batches (every process needs at least one item)")
        self.num_items, self.global_batch, self.micro_steps = num_items, global_batch, micro_steps
        self.rank, self.world_size = rank, world_size
        self.seed, self.epoch, self.shuffle = seed, epoch, shuffle
        self.steps_per_epoch = num_items // global_batch
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step {start_step} outside 0..{self.steps_per_epoch}")
        self.start_step = start_step
        self.micro_sizes = split_sizes(global_batch, micro_steps)

    def part(self, micro_batch: list[int]) -> list[int]:
        sizes = split_sizes(len(micro_batch), self.world_size)
        start = sum(sizes[:self.rank])
        return micro_batch[start:start + sizes[self.rank]]

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_order(self.num_items, self.seed, self.epoch, self.shuffle)
        for step in range(self.start_step, self.steps_per_epoch):
            start = step * self.global_batch
            for size in self.micro_sizes:
                yield self.part(order[start:start + size])
                start += size

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.micro_steps
