"""Reading a finished (or paused) run's state outside the training loop."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from batcher.ckpt.captured import load_values, uncompiled
from batcher.ckpt.manifest import REST
from batcher.ckpt.sharded import full_sharded_state
from batcher.ckpt.store import CheckpointStore
from batcher.ckpt.training_state import TrainingState
from batcher.run.layout import RunLayout

__all__ = ["load_checkpoint", "whole_state"]


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """Return the newest good checkpoint of ``run_dir`` as ``{"objects", "values", "epoch", "step", "done"}``.

    ``objects`` maps the names given to ``batcher.segment(...)`` to their state dicts, so
    ``model.load_state_dict(load_checkpoint("runs/exp")["objects"]["model"])`` restores the weights
    (into the plain model also when the run trained a ``torch.compile``d one).
    ``file`` names the checkpoint used; when newer ones failed their checks, ``problems`` says
    why and a warning is issued, as a resumed segment reports it.
    Raises :class:`FileNotFoundError` when the run has no checkpoint yet.
    """
    store = CheckpointStore(RunLayout(Path(run_dir)).ckpt)
    loaded = store.load_latest()
    if loaded is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet (looked in {store.directory})")
    for problem in loaded.problems:
        warnings.warn(f"{run_dir}: {problem}; using the older {loaded.info.file}", stacklevel=2)
    where = str(store.directory / loaded.info.file)
    saved = TrainingState.decode(loaded.state, where=where)
    objects = dict(saved.objects)
    if saved.sharded_dir is not None:  # FSDP: put the shards back together
        objects.update(full_sharded_state(Path(saved.sharded_dir)))
    return {
        "objects": {name: uncompiled(obj) for name, obj in objects.items()},
        "values": load_values(saved.values, {}),
        "epoch": saved.pos.epoch,
        "step": saved.pos.step,
        "done": saved.done,
        "file": where,
        "problems": list(loaded.problems),
    }


def whole_state(path: Path) -> dict[str, Any]:
    """The state saved in a checkpoint file, or in a sharded checkpoint folder with its shards joined."""
    import torch

    if not path.is_dir():
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert isinstance(state, dict)
        return state
    rest: dict[str, Any] = torch.load(path / REST, map_location="cpu", weights_only=True)
    rest["objects"] = {**rest["objects"], **full_sharded_state(path)}
    return rest
