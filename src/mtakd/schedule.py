"""What the training loop iterates over: the data order, the learning rate and the optimiser steps.

``EpochSampler``: one seeded permutation of the training items per epoch, split across ranks,
resumable mid-epoch. ``lr_factor``: linear warm-up, then cosine decay. ``step_groups``: consecutive
micro-batches that make one optimiser step (``optim.grad_accum``).
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """A seeded permutation per epoch, starting at ``start`` (so a resumed epoch continues).

    Distributed: every rank computes the same permutation and takes every ``world``-th item
    from ``start + rank``. The ranks' shares are disjoint and together cover it, and the
    micro-batches of all ranks at one step hold exactly the items ``k*B .. (k+1)*B - 1`` of
    the permutation, the global batch a one-process run uses at step ``k``. ``total`` (whole
    global batches) cuts the tail so that every rank runs the same number of steps.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, total: int | None = None):
        self.n, self.seed, self.epoch, self.start = n, seed, 0, 0
        self.rank, self.world = rank, world
        self.total = n if total is None else min(n, total)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)[: self.total]
        return iter(perm[self.start + self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return len(range(self.start + self.rank, self.total, self.world))


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def step_groups(batches, n: int):
    """Consecutive groups of ``n`` micro-batches (one optimiser step each); a short tail is dropped."""
    group: list = []
    for b in batches:
        group.append(b)
        if len(group) == n:
            yield group
            group = []
