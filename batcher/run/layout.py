"""The run folder: where each file of one training run lives. The only module that spells the
paths out; Python code, the Snakemake rules and their scripts all ask it.

    runs/<experiment>/<run-id>/          (by hand: runs/<script name>/)
      ckpt/                              checkpoints and manifest.json (batcher.ckpt.store, batcher.ckpt.manifest)
      status/seg-NNNN.json               each segment's outcome (batcher.run.status)
      heartbeat/seg-NNNN-<attempt>.json  how far each attempt at a segment got (batcher.run.heartbeat)
      metrics.jsonl                      the rows of seg.log() (batcher.run.metrics)
      logs/seg-NNNN.log                  a segment's output (written by the workflow)
      lock                               held while a process trains the run (batcher.run.lock)
      command.json                       the command line of a run started by hand (batcher.run.command)
      final-<length>.json                a finished chain's summary (batcher.run.summary)

    results/<experiment>/                what the workflow publishes of a finished run
      final.json, final.pt               its summary and final checkpoint (the workflow's publish)
      curves.png                         its metric curves
      timeline.png                       where each second of its chain went (batcher.workflow.account)
    results/summary.png, summary.tsv     all experiments compared
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FINALIZE_LOG_PATTERN",
    "FINAL_PATTERN",
    "LOG_PATTERN",
    "RESULTS",
    "RUN_PATTERN",
    "STATUS_PATTERN",
    "ResultsLayout",
    "RunLayout",
]

RESULTS = "results"  # where the workflow publishes finished runs (ResultsLayout)

# The same paths as wildcard patterns, for Snakemake rules ({exp}, {run}, {n}: 4 digits, {length})
RUN_PATTERN = "runs/{exp}/{run}"
STATUS_PATTERN = RUN_PATTERN + "/status/seg-{n}.json"
LOG_PATTERN = RUN_PATTERN + "/logs/seg-{n}.log"
FINAL_PATTERN = RUN_PATTERN + "/final-{length}.json"
FINALIZE_LOG_PATTERN = RUN_PATTERN + "/logs/finalize-{length}.log"


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder, rooted at ``root``."""

    root: Path

    @classmethod
    def of(cls, experiment: str, run_id: str, *, base: Path = Path(".")) -> RunLayout:
        """The run folder the workflow gives ``experiment``'s settings ``run_id``, under ``base``."""
        return cls(base / RUN_PATTERN.format(exp=experiment, run=run_id))

    @classmethod
    def by_hand(cls, script: str) -> RunLayout:
        """The default run folder of a script started without a workflow: ``runs/<script name>``."""
        return cls(Path("runs") / script)

    @property
    def ckpt(self) -> Path:
        return self.root / "ckpt"

    @property
    def status_dir(self) -> Path:
        return self.root / "status"

    def status(self, segment: int) -> Path:
        return self.status_dir / f"seg-{segment:04d}.json"

    def statuses(self) -> list[Path]:
        """Every status file of the run, in segment order."""
        return sorted(self.status_dir.glob("seg-*.json"))

    def heartbeat(self, segment: int, attempt: str) -> Path:
        """The heartbeat of one attempt at ``segment`` (``attempt``: the Slurm job id, else ``pid<N>``)."""
        return self.root / "heartbeat" / f"seg-{segment:04d}-{attempt}.json"

    def heartbeats(self) -> list[Path]:
        """Every heartbeat file of the run."""
        return sorted((self.root / "heartbeat").glob("seg-*-*.json"))

    def log(self, segment: int) -> Path:
        return self.root / "logs" / f"seg-{segment:04d}.log"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def command(self) -> Path:
        return self.root / "command.json"

    def final_summary(self, length: int) -> Path:
        return self.root / f"final-{length}.json"


@dataclass(frozen=True)
class ResultsLayout:
    """The published results of one experiment (``root``: ``results/<experiment>``); the
    class methods give the Snakemake patterns (``{exp}``) and the files across experiments."""

    root: Path

    @classmethod
    def of(cls, experiment: str, *, base: Path = Path(".")) -> ResultsLayout:
        return cls(base / RESULTS / experiment)

    @classmethod
    def pattern(cls) -> ResultsLayout:
        """The same paths with ``{exp}`` for the experiment, as strings for the rules: ``str(...)``."""
        return cls(Path(RESULTS) / "{exp}")

    @property
    def summary(self) -> Path:
        return self.root / "final.json"

    @property
    def state(self) -> Path:
        return self.root / "final.pt"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def timeline(self) -> Path:
        return self.root / "timeline.png"

    def log(self, rule: str) -> Path:
        return self.root / f"{rule}.log"

    @staticmethod
    def across(name: str, *, base: Path = Path(".")) -> Path:
        """A file about every experiment: ``summary.png``, ``summary.tsv``, ``summary.log``."""
        return base / RESULTS / name
