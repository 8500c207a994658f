"""A copy of the training state in host memory, for writing while training goes on.

A background save must not write tensors that the next optimizer step changes in place, so the
state is copied first: that copy is all a periodic save stalls training for. Each tensor's whole
storage is copied once (tensors sharing a storage, such as tied weights or views, stay shared,
exactly as ``torch.save`` would write them) into a host buffer that is kept and reused by the
next snapshot of the same storage: allocating fresh memory costs about four times the copy
(1 GB here: 1.0 s against 0.24 s). CUDA tensors are copied into pinned memory without blocking,
then synchronised once.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch

__all__ = ["HostSnapshot"]


class HostSnapshot:
    """Copies nested state (dicts, lists, tuples, tensors, plain values) into reused host buffers.

    >>> snap = HostSnapshot()
    >>> w = torch.ones(3)
    >>> copied = snap.take({"w": w, "n": 1})
    >>> _ = w.add_(1)
    >>> copied["w"].tolist(), copied["n"]
    ([1.0, 1.0, 1.0], 1)

    A snapshot's buffers are overwritten by the next :meth:`take`: write one out before taking
    the next. :meth:`release` drops them.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[int, int, str], torch.UntypedStorage] = {}
        self._cuda = False

    @property
    def nbytes(self) -> int:
        """Host memory held by the buffers."""
        return sum(b.nbytes() for b in self._buffers.values())

    def take(self, state: Any) -> Any:
        """Return a copy of ``state`` that later in-place changes to its tensors do not reach."""
        self._cuda = False
        used: dict[tuple[int, int, str], torch.UntypedStorage] = {}
        out = self._copy(state, used)
        if self._cuda:
            torch.cuda.synchronize()
        self._buffers = used  # storages gone since the last snapshot free their buffers
        return out

    def release(self) -> None:
        self._buffers = {}

    def _copy(self, value: Any, used: dict[tuple[int, int, str], torch.UntypedStorage]) -> Any:
        if isinstance(value, torch.Tensor):
            return self._tensor(value, used)
        if isinstance(value, dict):
            copied = {k: self._copy(v, used) for k, v in value.items()}
            return OrderedDict(copied) if isinstance(value, OrderedDict) else copied
        if isinstance(value, list):
            return [self._copy(v, used) for v in value]
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(self._copy(v, used) for v in value)
        if value is None or isinstance(
            value, (bool, int, float, complex, str, bytes, torch.dtype, torch.device)
        ):
            return value
        return copy.deepcopy(value)

    def _tensor(
        self, t: torch.Tensor, used: dict[tuple[int, int, str], torch.UntypedStorage]
    ) -> torch.Tensor:
        t = t.detach()
        src = t.untyped_storage()
        size = src.nbytes()
        if size == 0 or t.device.type == "meta":
            return t.clone()
        key = (src.data_ptr(), size, str(t.device))
        buf = used.get(key)
        if buf is None:
            buf = self._buffers.get(key)
            if buf is None:
                cuda = t.device.type == "cuda"
                buf = torch.empty(size, dtype=torch.uint8, pin_memory=cuda).untyped_storage()
            buf.copy_(src, non_blocking=t.device.type == "cuda")
            self._cuda |= t.device.type == "cuda"
            used[key] = buf
        out = torch.empty(0, dtype=t.dtype)
        out.set_(buf, t.storage_offset(), t.size(), t.stride())
        return out
