"""Reading a finished (or paused) run's state outside the training loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from batcher.store import CheckpointStore

__all__ = ["load_checkpoint"]


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """Return the newest good checkpoint of ``run_dir`` as ``{"objects", "values", "epoch", "step", "done"}``.

    ``objects`` maps the names given to ``batcher.segment(...)`` to their state dicts, so
    ``model.load_state_dict(load_checkpoint("runs/exp")["objects"]["model"])`` restores the weights.
    Raises :class:`FileNotFoundError` when the run has no checkpoint yet.
    """
    store = CheckpointStore(Path(run_dir) / "ckpt")
    loaded = store.load_latest()
    if loaded is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet (looked in {store.directory})")
    state = loaded.state
    return {
        "objects": state["objects"],
        "values": json.loads(state["values"]),
        "epoch": state["pos"]["epoch"],
        "step": state["pos"]["step"],
        "done": bool(state.get("done")),
        "file": str(store.directory / loaded.info.file),
    }
