"""Summarize a finished chain: runs/{exp}/{run}/final-{length}.json (no torch needed)."""

import json
from pathlib import Path

from batcher.run.atomic_files import atomic_write_bytes, checkpoint_digest, checkpoint_size
from batcher.run.layout import RunLayout
from batcher.run.metrics import read_metrics
from batcher.run.status import read_status

snakemake = globals()["snakemake"]
last = Path(snakemake.input[0])
status = read_status(last)
assert status is not None and status.checkpoint is not None, f"{last} is not a finished segment's status"
run = RunLayout(Path(status.run_dir))
statuses = [s for s in (read_status(p) for p in run.statuses()) if s is not None]
ckpt = Path(status.checkpoint.file)
algorithm = status.checkpoint.algorithm
digest = checkpoint_digest(ckpt, algorithm)  # a file, or a sharded (FSDP) folder
if digest != status.checkpoint.digest:
    raise SystemExit(f"{ckpt} fails its {algorithm} check; it changed after the run finished")
rows = read_metrics(run.metrics)
summary = {
    "experiment": status.experiment,
    "run_dir": str(run.root),
    "segments": len(statuses),
    "epochs": status.epoch,
    "steps": status.step,
    "total": status.total,
    "final_metrics": {k: v for k, v in rows[-1].items() if not k.startswith("_")} if rows else {},
    "train_seconds": sum(s.seconds.train for s in statuses),
    "wall_seconds": sum(s.seconds.wall for s in statuses),
    "checkpoint": {
        "file": str(ckpt),
        "digest": digest,
        "algorithm": algorithm,
        "size": checkpoint_size(ckpt),
    },
}
atomic_write_bytes(Path(snakemake.output[0]), (json.dumps(summary, indent=1) + "\n").encode())
