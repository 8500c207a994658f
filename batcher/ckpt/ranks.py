"""Coordination across torch.distributed ranks: one stop decision, one save, per-rank RNG.

Every rank reaches the same step boundaries, so at each one they all-reduce a small "stop" code
(MAX): a signal or a deadline seen by any rank stops them all at the same step, and no rank is
left waiting in a collective while another saves. Rank 0 writes the checkpoint (replicated DDP
state), the metric log and the status; each rank's RNG states travel in the checkpoint.
"""

from __future__ import annotations

import time
from typing import Any

import torch

__all__ = ["Ranks"]

_SETTLE_S = 0.05


class Ranks:
    """This process's place among the ranks; a single process is rank 0 of 1 and does no collectives."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self._dist = dist
        self.active = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1

    @property
    def main(self) -> bool:
        """True on the rank that writes files (rank 0)."""
        return self.rank == 0

    def _device(self) -> torch.device:
        if self._dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def agree_stop(self, code: int) -> int:
        """Return the highest code of all ranks (:mod:`batcher.stopping.decision`'s codes; 0/1 for a yes/no)."""
        if not self.active:
            return code
        t = torch.tensor([code], dtype=torch.int32, device=self._device())
        self._dist.all_reduce(t, op=self._dist.ReduceOp.MAX)
        return int(t.item())

    def all_good(self, ok: bool) -> bool:
        """True when ``ok`` is True on every rank (a collective)."""
        return self.agree_stop(0 if ok else 1) == 0

    def gather(self, obj: Any) -> list[Any]:
        """Return every rank's ``obj``, in rank order (just ``[obj]`` for one process)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        self._dist.all_gather_object(out, obj)
        return out

    def settle(self) -> None:
        """Let gloo's worker threads release the last collective's buffers before the process ends.

        A gloo worker frees a finished collective's tensors itself, which needs the GIL. If the
        interpreter is already shutting down by then, the main thread holds the GIL while
        DistributedDataParallel's reducer destroys the process group and joins that very
        worker: the process hangs at exit (seen in about 1 of 6 two-rank runs; the root cause is
        PyTorch's, pytorch/pytorch#190489). Sleeping releases the GIL so the worker can finish.
        """
        if self.active:
            time.sleep(_SETTLE_S)

    def finish(self) -> None:
        """Leave together at the end of a stopped segment: barrier, let the workers settle, and
        tear the default process group down (the process exits next)."""
        if self.active:
            self._dist.barrier()
            self.settle()
            self._dist.destroy_process_group()
            self.active = False

    def from_main(self, obj: Any) -> Any:
        """Return rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj if self.main else None]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]
