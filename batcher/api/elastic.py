"""Exact data coverage across a change of world size: :class:`ElasticSampler`, and where a
segment's pass over its loader begins (:func:`begin_pass`).

A ``DistributedSampler`` splits each epoch's one shuffled order among the ranks by rank count, so
a run stopped mid-epoch on 2 ranks and resumed on 1 cannot tell which samples are done. The
elastic sampler keeps the same order (for a start at 0 it yields exactly what
``DistributedSampler`` yields) and can start anywhere in it: the loop counts the global samples
an epoch has consumed (``Position.samples``: the per-rank batch size times the world size, per
step) and, on resume, the sampler leaves out exactly that many of the epoch's order and splits
the rest among the ranks it now has. Every sample of an epoch is then trained on once, whatever
the world sizes its segments ran on; only the padding of the epoch's last step (as
``DistributedSampler``, unless ``drop_last``) repeats a few.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from batcher.api.replay import loader_length
from batcher.ckpt.training_state import Position
from batcher.errors import BatcherError

__all__ = ["ElasticSampler", "EpochPass", "begin_pass"]


class ElasticSampler(Sampler[int]):
    """A ``DistributedSampler`` whose epoch can resume on another number of ranks.

    Use it in place of ``torch.utils.data.DistributedSampler`` (same arguments, same order) with a
    ``DataLoader(batch_size=...)`` given to ``seg.iterate``, and call ``set_epoch(epoch)`` each
    epoch. ``num_replicas``/``rank`` default to the process group's (1 and 0 without one). It
    has no state of its own to checkpoint: where an epoch resumes is the loop's
    (``Position.samples``), which ``seg.iterate`` hands to :meth:`begin_at`.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas is None or rank is None:
            active = dist.is_available() and dist.is_initialized()
            num_replicas = (dist.get_world_size() if active else 1) if num_replicas is None else num_replicas
            rank = (dist.get_rank() if active else 0) if rank is None else rank
        if not 0 <= rank < num_replicas:
            raise BatcherError(
                f"ElasticSampler: rank {rank} is not in [0, {num_replicas}); pass 0 <= rank < num_replicas"
            )
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        self.start = 0  # samples of this epoch's global order left out (done before a resume)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order comes next (``seed + epoch`` seeds the shuffle); a new epoch
        starts at its beginning."""
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    def begin_at(self, samples: int) -> None:
        """The next iteration leaves out the epoch's first ``samples`` (global, across the ranks)."""
        if not 0 <= samples <= len(self.dataset):
            raise BatcherError(
                f"ElasticSampler: cannot begin at sample {samples} of an epoch of {len(self.dataset)}; "
                "was the dataset changed since the checkpoint? Keep it the same within a run"
            )
        self.start = samples

    def order(self) -> list[int]:
        """The epoch's whole order, as every rank draws it (``DistributedSampler``'s)."""
        n = len(self.dataset)
        if not self.shuffle:
            return list(range(n))
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return torch.randperm(n, generator=g).tolist()

    def _rest_size(self) -> int:
        rest, world = len(self.dataset) - self.start, self.num_replicas
        return (rest // world) * world if self.drop_last else math.ceil(rest / world) * world

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        rest = order[self.start :]
        size = self._rest_size()
        if size <= len(rest):
            rest = rest[:size]
        else:  # pad to an equal share per rank with the order's beginning, as DistributedSampler
            need = size - len(rest)
            rest += (order * math.ceil(need / max(len(order), 1)))[:need]
        return iter(rest[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return self._rest_size() // self.num_replicas


@dataclass(frozen=True)
class EpochPass:
    """Where ``seg.iterate`` begins: ``length`` batches in the epoch as the loop counts them (those
    done, then what the loader yields), ``skip`` batches the loader must leave out, ``per_step``
    global samples a step consumes (0 when the loader does not say), and ``mid_epoch``: a
    resumed epoch (its starting RNG state is put back before the loader starts)."""

    length: int | None
    skip: int
    per_step: int
    mid_epoch: bool


def begin_pass(loader: Any, pos: Position, world: int) -> EpochPass:
    """Plan a pass over ``loader`` from ``pos`` on ``world`` ranks. An :class:`ElasticSampler`
    is set to leave out the ``pos.samples`` the epoch has consumed, and nothing is skipped."""
    batch_size = _batch_size(loader)
    per_step = batch_size * world if batch_size else 0
    sampler = _elastic_sampler(loader)
    if sampler is None:
        return EpochPass(loader_length(loader), pos.batch, per_step, pos.batch > 0)
    if not per_step:
        raise BatcherError(
            "ElasticSampler needs a DataLoader with a batch size (DataLoader(dataset, batch_size=B, "
            "sampler=ElasticSampler(dataset))) so that the samples each step consumes are known"
        )
    if sampler.num_replicas != world:
        raise BatcherError(
            f"ElasticSampler was made for {sampler.num_replicas} rank(s) but this segment runs on "
            f"{world}; create it after torch.distributed.init_process_group(...) (or pass "
            "num_replicas and rank)"
        )
    sampler.begin_at(pos.samples)
    rest = loader_length(loader) or 0
    return EpochPass(pos.batch + rest, 0, per_step, pos.samples > 0)


def _elastic_sampler(loader: Any) -> ElasticSampler | None:
    for owner in (loader, getattr(loader, "batch_sampler", None)):
        sampler = getattr(owner, "sampler", None)
        if isinstance(sampler, ElasticSampler):
            return sampler
    return None


def _batch_size(loader: Any) -> int:
    size = getattr(loader, "batch_size", None) or getattr(
        getattr(loader, "batch_sampler", None), "batch_size", None
    )
    return size if isinstance(size, int) else 0
