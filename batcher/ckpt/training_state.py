"""What a checkpoint holds: the training state of a run (with its ``Position`` in the loops), versioned, as ``torch.load(weights_only=True)``
reads it back (tensors, numbers, strings, lists, tuples, dicts: loading can never run code).

Written by the segment loop, read back by it on resume, by :func:`batcher.load_checkpoint` and by
the workflow's publish step. Format 2 stores ``seg.values`` as tensors and containers; format 1
(a JSON string) is still read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from batcher.errors import BatcherError

__all__ = ["FORMAT", "READS", "Position", "TrainingState"]

FORMAT = 2
READS = (1, 2)


@dataclass
class Position:
    """The loop's place: ``batch`` batches done in ``epoch``; ``step`` steps (batches, or epochs
    without ``seg.iterate``) done over the run; ``tick`` boundaries passed (steps and epoch ends);
    ``samples``: the epoch's samples consumed across all ranks (per-rank batch size times world
    size, per step; 0 when the loader gives no batch size), where an ``ElasticSampler`` resumes."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    tick: int = 0
    samples: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Position:
        epoch, batch, step, tick = (int(doc[k]) for k in ("epoch", "batch", "step", "tick"))
        return cls(epoch, batch, step, tick, samples=int(doc.get("samples", 0)))


@dataclass
class TrainingState:
    """One checkpoint's contents.

    ``objects``: each checkpointed object's ``state_dict()`` by name (the replicated ones; FSDP's
    sharded objects are in the checkpoint folder's shards, named in ``sharded``). ``values``:
    ``seg.values`` as :func:`batcher.ckpt.captured.save_values` made it. RNG states are per rank;
    ``epoch_rng_by_rank`` is the RNG at the start of the epoch, for a mid-epoch resume.
    ``timing``: the stop decision's measurements, carried to the next segment.
    """

    objects: dict[str, Any]
    values: Any
    pos: Position
    rng_by_rank: list[Any]
    epoch_rng_by_rank: list[Any] = field(default_factory=lambda: [None])
    sharded: list[str] = field(default_factory=list)
    total: int | None = None
    metrics_seq: int = 0
    timing: dict[str, Any] = field(default_factory=dict)
    loader_live: bool = False  # a DataLoader's persistent workers were running (see batcher.api.replay)
    segment: int = 0
    done: bool = False
    sharded_dir: str | None = None  # set on load: the folder whose shards hold ``sharded``

    def position_on(self, world: int) -> tuple[Position, str | None]:
        """Where a resume on ``world`` ranks continues, and, when that is not the world size that
        saved it, what the resume cannot keep (a warning for the log)."""
        saved = len(self.rng_by_rank)
        pos = Position(**self.pos.as_dict())
        if saved == world:
            return pos, None
        # the epoch's first batch x saved batches (of its one shuffled order, which a
        # DistributedSampler splits among the ranks) are done: as many per rank on this world
        # size are skipped (rounded down: a few samples may be seen twice, none is left out)
        pos.batch = pos.batch * saved // world
        return pos, (
            f"this checkpoint was saved by {saved} process(es) and resumes on {world}: training "
            "continues, but the data order from here on differs from a run on one rank count (a "
            "DistributedSampler's split of the current epoch too; batcher.ElasticSampler keeps "
            "every sample of it exactly once)"
        )

    def rng_of(self, rank: int) -> tuple[Any, Any]:
        """(RNG states, epoch-start RNG states) for ``rank``; a run resumed on more ranks than
        saved it deals the saved ones out round robin."""
        return (
            self.rng_by_rank[rank % len(self.rng_by_rank)],
            self.epoch_rng_by_rank[rank % len(self.epoch_rng_by_rank)],
        )

    def encode(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "objects": self.objects,
            "sharded": self.sharded,
            "values": self.values,
            "rng": self.rng_by_rank[0],  # the single-process reading of format 1
            "epoch_rng": self.epoch_rng_by_rank[0],
            "rng_by_rank": self.rng_by_rank,
            "epoch_rng_by_rank": self.epoch_rng_by_rank,
            "pos": self.pos.as_dict(),
            "total": self.total,
            "metrics_seq": self.metrics_seq,
            "timing": self.timing,
            "loader_live": self.loader_live,
            "segment": self.segment,
            "done": self.done,
        }

    @classmethod
    def decode(cls, state: dict[str, Any], *, where: str) -> TrainingState:
        """Read a loaded checkpoint; another format raises :class:`BatcherError` naming ``where``."""
        if state.get("format") not in READS:
            raise BatcherError(
                f"{where} has state format {state.get('format')!r}, this torch-batcher reads formats "
                f"{', '.join(map(str, READS))}; use the torch-batcher version that wrote it"
            )
        return cls(
            objects=state["objects"],
            values=state["values"],
            pos=Position.from_dict(state["pos"]),
            rng_by_rank=state.get("rng_by_rank") or [state["rng"]],
            epoch_rng_by_rank=state.get("epoch_rng_by_rank") or [state.get("epoch_rng")],
            sharded=list(state.get("sharded") or []),
            total=state.get("total"),
            metrics_seq=int(state.get("metrics_seq", 0)),
            timing=state.get("timing") or {},
            loader_live=bool(state.get("loader_live", False)),
            segment=int(state.get("segment", 0)),
            done=bool(state.get("done")),
            sharded_dir=state.get("sharded_dir"),
        )
