"""Sharded state (FSDP) saved and restored with ``torch.distributed.checkpoint`` (DCP).

Under FSDP every rank holds only its shard of the model and optimizer, so no single rank can
write them: each rank writes its own shard files into one folder with DCP, and the store then
commits that folder like a single-file checkpoint (fsync, hash, rename, manifest). Everything
else (values, RNG, loop position, replicated objects such as a scheduler) is saved by rank 0
beside the shards.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch

from batcher.errors import BatcherError, CheckpointMismatchError

__all__ = ["ShardedState", "full_sharded_state", "load_sharded"]


def load_sharded(sharded: ShardedState | None, folder: str | None, *, where: str) -> None:
    """Load this rank's shards from a checkpoint's ``folder`` (None: the checkpoint has none);
    a checkpoint and a script that disagree about FSDP raise :class:`CheckpointMismatchError`."""
    if (folder is None) != (sharded is None):
        was = "with sharded (FSDP) state" if folder else "without FSDP"
        now = "has no FSDP model under torch.distributed" if folder else "passes an FSDP model"
        raise CheckpointMismatchError(
            f"checkpoint {where} was written {was} but this script {now}; resume a run the way it "
            "was started, or start a new run folder"
        )
    if sharded is not None and folder is not None:
        sharded.load(Path(folder))


def _is_fsdp(obj: Any) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch built without distributed
        return False
    return isinstance(obj, FSDPModule)


class ShardedState:
    """The FSDP model and its optimizers among the objects passed to ``batcher.segment``."""

    def __init__(self, model_name: str, model: Any, optimizers: Mapping[str, Any]) -> None:
        self.model_name = model_name
        self.model = model
        self.optimizers = dict(optimizers)
        self._group: Any = None  # the process group of background saves
        self._stager: Any = None  # keeps the host copies of the shards between background saves
        self._read: tuple[Path, dict[str, list[tuple[int, int]] | None]] | None = None  # by load()

    @classmethod
    def find(cls, objects: Mapping[str, Any]) -> ShardedState | None:
        """Return the sharded part of ``objects``, or None when no object is an FSDP model."""
        models = {name: obj for name, obj in objects.items() if _is_fsdp(obj)}
        if not models:
            return None
        if len(models) > 1:
            raise BatcherError(
                f"batcher.segment got {len(models)} FSDP models ({', '.join(sorted(models))}); pass the "
                "one root module you called fully_shard on (its submodules are saved with it)"
            )
        ((name, model),) = models.items()
        optimizers = {n: o for n, o in objects.items() if isinstance(o, torch.optim.Optimizer)}
        return cls(name, model, optimizers)

    @property
    def names(self) -> set[str]:
        return {self.model_name, *self.optimizers}

    def state(self) -> dict[str, Any]:
        """This rank's shards, keyed by object name (parameter names, not ids, in optimizer state)."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        out: dict[str, Any] = {self.model_name: get_model_state_dict(self.model)}
        for name, opt in self.optimizers.items():
            out[name] = get_optimizer_state_dict(self.model, opt)
        return out

    def save(self, folder: Path) -> None:
        """Write this rank's shards into ``folder`` (a collective: every rank calls it)."""
        from torch.distributed.checkpoint.state_dict_saver import save

        save(self.state(), checkpoint_id=str(folder), planner=_replicated_first())

    def save_async(self, folder: Path) -> Future[Any]:
        """Copy this rank's shards to host memory, then write them into ``folder`` on a thread
        (a collective; every rank calls it). The returned future fails on every rank when any
        rank's write failed.

        The writes' own collectives run on a separate gloo group: on the training group they
        would interleave with the training's collectives, which the main thread goes on issuing.
        """
        import torch.distributed as dist
        from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions
        from torch.distributed.checkpoint.state_dict_saver import async_save

        if self._group is None:
            self._group = dist.new_group(backend="gloo")
            cuda = torch.cuda.is_available()
            # pinned host memory for GPU shards; CPU shards are copied too (never written while
            # the next step changes them); staged synchronously, the buffers kept for the next save
            self._stager = DefaultStager(
                StagingOptions(
                    use_pinned_memory=cuda,
                    use_shared_memory=False,
                    use_async_staging=False,
                    use_non_blocking_copy=cuda,
                )
            )
        future = async_save(
            self.state(),
            checkpoint_id=str(folder),
            process_group=self._group,
            async_stager=self._stager,
            planner=_replicated_first(),
        )
        assert isinstance(future, Future)
        return future

    def close(self) -> None:
        """Free the host copies of the last background save."""
        if self._stager is not None:
            self._stager.close()
            self._stager = None

    def files_read(self, folder: Path) -> dict[str, list[tuple[int, int]] | None]:
        """What :meth:`load` reads of checkpoint ``folder`` on this rank: the metadata and the
        non-sharded rest whole, and the (offset, length) byte ranges of this rank's items in the
        shard files, from DCP's own load plan (the one :meth:`load` just followed, or made anew).
        Items that every rank holds (an optimizer's settings and step counts) are written once,
        into one rank's file, first (see :func:`_replicated_first`); every rank reads them."""
        if self._read is not None and self._read[0] == folder:
            return self._read[1]
        from torch.distributed.checkpoint.filesystem import FileSystemReader

        planner = _recording_load_planner()
        planner.set_up_planner(
            self.state(), FileSystemReader(str(folder)).read_metadata(), is_coordinator=False
        )
        planner.create_local_plan()
        reads: dict[str, list[tuple[int, int]] | None] = planner.reads(folder)
        return reads

    def load(self, folder: Path) -> None:
        """Read this rank's shards from ``folder`` into the live model and optimizers (a collective)."""
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict
        from torch.distributed.checkpoint.state_dict_loader import load

        state = self.state()  # the layout to fill: DCP reads each rank's part in place
        planner = _recording_load_planner()
        self._read = None
        load(state, checkpoint_id=str(folder), planner=planner)
        self._read = (folder, planner.reads(folder))
        set_model_state_dict(self.model, state[self.model_name])
        for name, opt in self.optimizers.items():
            set_optimizer_state_dict(self.model, opt, state[name])


def _recording_load_planner() -> Any:
    """DCP's default load planner, keeping this rank's plan: which byte ranges of which files it reads."""
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.planner import LoadPlan

    from batcher.ckpt.manifest import REST

    class RecordingLoadPlanner(DefaultLoadPlanner):
        items: tuple[Any, ...] = ()

        def create_local_plan(self) -> LoadPlan:
            plan = super().create_local_plan()
            self.items = tuple(plan.items)
            return plan

        def reads(self, folder: Path) -> dict[str, list[tuple[int, int]] | None]:
            assert self.metadata is not None, "set_up_planner() first"
            storage = self.metadata.storage_data
            out: dict[str, list[tuple[int, int]] | None] = {".metadata": None, REST: None}
            for item in self.items:
                where = storage.get(item.storage_index)
                name = getattr(where, "relative_path", None)
                if not isinstance(name, str):
                    raise BatcherError(
                        f"{folder} names no file for {item.storage_index.fqn}: not written by "
                        "torch-batcher's FSDP save (torch.distributed.checkpoint, FileSystemWriter)"
                    )
                ranges = out.setdefault(name, [])
                assert ranges is not None
                ranges.append((int(getattr(where, "offset", 0)), int(getattr(where, "length", 0))))
            return out

    return RecordingLoadPlanner()


def _replicated_first() -> Any:
    """DCP's default save planner, writing each rank's items that every rank reads back (the
    optimizer's settings and step counts: bytes and whole tensors) before its shards.

    DCP writes one file per rank in plan order, which interleaves an optimizer's step count with
    each parameter's moments; a rank reading the step counts from another rank's file would
    then touch every piece of it (see :meth:`ShardedState.files_read`). First, they share the
    file's first piece.
    """
    import dataclasses

    from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
    from torch.distributed.checkpoint.planner import SavePlan, WriteItemType

    first = {WriteItemType.BYTE_IO: 0, WriteItemType.TENSOR: 1}

    class ReplicatedFirst(DefaultSavePlanner):
        def finish_plan(self, new_plan: SavePlan) -> SavePlan:
            plan = super().finish_plan(new_plan)
            items = sorted(plan.items, key=lambda item: first.get(item.type, 2))  # stable
            return dataclasses.replace(plan, items=items)

    return ReplicatedFirst()


def full_sharded_state(folder: Path) -> dict[str, Any]:
    """Return the sharded objects of a checkpoint folder as whole (unsharded) state dicts.

    Needs no process group: for reading a finished run's weights on one machine.
    """
    import tempfile

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "full.pt"
        dcp_to_torch_save(str(folder), str(out))
        state = torch.load(out, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise BatcherError(f"{folder} does not hold sharded torch-batcher state")
    return state
