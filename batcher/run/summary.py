"""A finished run's summary: ``final-<length>.json`` in the run folder, ``results/<exp>/final.json``.

Its owner: :func:`summarize` makes it from a finished chain's last status file (the workflow's
``finalize``), :meth:`FinalSummary.published` says where ``publish`` copied the final checkpoint,
and everything that reads one (the plots, the summary table, scripts) goes through
:func:`read_summary`, which says what is wrong with a file that is not one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from batcher.errors import BatcherError
from batcher.run.atomic_files import atomic_write_bytes, checkpoint_digest, checkpoint_size
from batcher.run.layout import RunLayout
from batcher.run.metrics import read_metrics
from batcher.run.status import read_status

__all__ = ["FinalCheckpoint", "FinalSummary", "read_summary", "summarize", "write_summary"]


@dataclass(frozen=True)
class FinalCheckpoint:
    """The run's final checkpoint: ``file`` (a file, or a sharded folder), verified by ``digest``;
    once published, ``file`` is the copy and ``source`` the run's own."""

    file: str
    digest: str
    algorithm: str
    size: int
    source: str | None = None


@dataclass(frozen=True)
class FinalSummary:
    """What a finished run did: where it ran, how far, its last metrics, its time, its checkpoint."""

    experiment: str
    run_dir: str
    segments: int
    epochs: int
    steps: int
    total: int | None
    checkpoint: FinalCheckpoint
    final_metrics: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    load_weights: str | None = None  # published: how to load the model's weights

    @property
    def run(self) -> RunLayout:
        return RunLayout(Path(self.run_dir))

    def published(self, state: Path) -> FinalSummary:
        """This summary with its checkpoint published as ``state`` (results/<exp>/final.pt)."""
        moved = replace(self.checkpoint, file=str(state), source=self.checkpoint.file)
        load = f"torch.load({str(state)!r}, weights_only=True)['objects']['model']"
        return replace(self, checkpoint=moved, load_weights=load)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, where: str = "summary") -> FinalSummary:
        known = {f.name for f in fields(cls)}
        missing = [name for name in sorted(_REQUIRED) if name not in doc]
        if missing:
            raise BatcherError(
                f"{where} is not a run summary: it lacks {', '.join(missing)}; make it anew "
                "(delete it and run snakemake again)"
            )
        values = {k: v for k, v in doc.items() if k in known}
        try:
            values["checkpoint"] = FinalCheckpoint(**values["checkpoint"])
            return cls(**values)
        except TypeError as exc:
            raise BatcherError(f"{where}: its checkpoint entry is not one ({exc}); make it anew") from None


_REQUIRED = {"experiment", "run_dir", "segments", "epochs", "steps", "total", "checkpoint"}


def summarize(last_status: Path) -> FinalSummary:
    """The summary of the finished run whose last segment wrote ``last_status``. Its final
    checkpoint is verified against the digest the segment recorded."""
    status = read_status(last_status)
    if status is None or status.checkpoint is None:
        raise BatcherError(f"{last_status} is not a finished segment's status; rerun its experiment")
    run = RunLayout(Path(status.run_dir))
    statuses = [s for s in (read_status(p) for p in run.statuses()) if s is not None]
    ckpt, algorithm = Path(status.checkpoint.file), status.checkpoint.algorithm
    digest = checkpoint_digest(ckpt, algorithm)  # a file, or a sharded (FSDP) folder
    if digest != status.checkpoint.digest:
        raise BatcherError(
            f"{ckpt} fails its {algorithm} check; it changed after the run finished. Move the run "
            f"folder {run.root} aside and train the experiment again"
        )
    rows = read_metrics(run.metrics)
    return FinalSummary(
        experiment=status.experiment,
        run_dir=str(run.root),
        segments=len(statuses),
        epochs=status.epoch,
        steps=status.step,
        total=status.total,
        checkpoint=FinalCheckpoint(str(ckpt), digest, algorithm, checkpoint_size(ckpt)),
        final_metrics={k: v for k, v in rows[-1].items() if not k.startswith("_")} if rows else {},
        train_seconds=sum(s.seconds.train for s in statuses),
        wall_seconds=sum(s.seconds.wall for s in statuses),
    )


def write_summary(path: Path, summary: FinalSummary) -> None:
    """Write ``summary`` atomically (a reader sees no file or a whole one)."""
    doc = asdict(summary)  # "total": null stays (a required key); the optional ones go when unset
    if summary.load_weights is None:
        del doc["load_weights"]
    if summary.checkpoint.source is None:
        del doc["checkpoint"]["source"]
    atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode(), what="run summary")


def read_summary(path: Path) -> FinalSummary:
    """Read a summary; a missing, damaged or foreign file is a :class:`BatcherError` that says so."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BatcherError(f"{path} does not exist: the experiment has not finished yet") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BatcherError(f"{path} is not JSON ({exc}); delete it and run snakemake again") from None
    if not isinstance(doc, dict):
        raise BatcherError(f"{path} is not a run summary; delete it and run snakemake again")
    return FinalSummary.from_dict(doc, where=str(path))
