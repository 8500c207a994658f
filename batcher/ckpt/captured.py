"""Captured state: the user's stateful objects (anything with ``state_dict``) and the RNGs.

Everything is converted to types that ``torch.load(weights_only=True)`` accepts (tensors,
numbers, strings, lists, tuples, dicts), so loading a checkpoint can never run code.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from batcher.errors import BatcherError, CheckpointMismatchError

__all__ = [
    "Stateful",
    "capture_rng",
    "load_objects",
    "load_values",
    "restore_rng",
    "save_objects",
    "save_values",
    "state_bytes",
    "uncompiled",
]


@runtime_checkable
class Stateful(Protocol):
    """Anything that can be checkpointed: model, optimizer, scheduler, GradScaler, loaders, yours."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any, /) -> Any: ...


def capture_rng() -> dict[str, Any]:
    """Return the states of Python's ``random``, NumPy's global RNG (if installed) and torch (CPU, CUDA)."""
    version, internal, gauss = random.getstate()
    rng: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        st = np.random.get_state(legacy=False)
        assert isinstance(st, dict)
        rng["numpy"] = {
            "bit_generator": st["bit_generator"],
            "key": torch.from_numpy(st["state"]["key"].astype("int64")),
            "pos": int(st["state"]["pos"]),
            "has_gauss": int(st["has_gauss"]),
            "gauss": float(st["gauss"]),
        }
    return rng


def restore_rng(rng: Mapping[str, Any]) -> None:
    """Put back RNG states captured by :func:`capture_rng` (missing parts are left alone)."""
    if "python" in rng:
        py = rng["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        states = rng["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
        else:  # a different GPU count: seed what we have from what we saved
            for i in range(torch.cuda.device_count()):
                torch.cuda.set_rng_state(states[i % len(states)], i)
    if "numpy" in rng:
        try:
            import numpy as np
        except ImportError:
            return
        st = rng["numpy"]
        np.random.set_state(
            {
                "bit_generator": st["bit_generator"],
                "state": {"key": st["key"].numpy().astype("uint32"), "pos": st["pos"]},
                "has_gauss": st["has_gauss"],
                "gauss": st["gauss"],
            }
        )


def save_objects(objects: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``{name: obj.state_dict()}`` for every named object."""
    return {name: obj.state_dict() for name, obj in objects.items()}


def _mismatch_hint(name: str, obj: Any, saved: Any) -> str | None:
    if not isinstance(obj, torch.nn.Module) or not isinstance(saved, Mapping):
        return None
    current = obj.state_dict()
    missing = sorted(set(current) - set(saved))
    unexpected = sorted(set(saved) - set(current))
    shapes = [
        f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(current[k].shape)}"
        for k in sorted(set(current) & set(saved))
        if isinstance(saved[k], torch.Tensor) and saved[k].shape != current[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"missing in checkpoint: {', '.join(missing[:10])}")
    if unexpected:
        parts.append(f"not in the model: {', '.join(unexpected[:10])}")
    if shapes:
        parts.append("shape differs: " + "; ".join(shapes[:10]))
    return " | ".join(parts) or None


_COMPILED = "_orig_mod."  # torch.compile's wrapper module holds the original as `_orig_mod`


def _as_compiled_or_not(obj: Any, saved: Any) -> Any:
    """``saved`` with its keys renamed for ``obj`` when one of the two is a ``torch.compile``d
    module and the other is not (the weights are the same; only the ``_orig_mod.`` prefix differs)."""
    if not isinstance(obj, torch.nn.Module) or not isinstance(saved, Mapping):
        return saved
    current = set(obj.state_dict())
    keys = set(saved)
    if keys == current:
        return saved
    if {k.removeprefix(_COMPILED) for k in keys} == current and all(k.startswith(_COMPILED) for k in keys):
        return {k.removeprefix(_COMPILED): v for k, v in saved.items()}
    if {_COMPILED + k for k in keys} == current:
        return {_COMPILED + k: v for k, v in saved.items()}
    return saved


def uncompiled(saved: Any) -> Any:
    """A module's state dict saved from a ``torch.compile``d model with the ``_orig_mod.`` prefix
    taken off its keys, so that it loads into the plain model; anything else as it is."""
    if isinstance(saved, Mapping) and saved and all(str(k).startswith(_COMPILED) for k in saved):
        return {k.removeprefix(_COMPILED): v for k, v in saved.items()}
    return saved


def load_objects(objects: Mapping[str, Any], saved: Mapping[str, Any], *, where: str) -> None:
    """Load each object's saved state; a mismatch names the object, the keys and what to do."""
    missing_objects = sorted(set(objects) - set(saved))
    extra_objects = sorted(set(saved) - set(objects))
    if missing_objects or extra_objects:
        raise CheckpointMismatchError(
            f"checkpoint {where} holds objects {sorted(saved)} but this script passes "
            f"{sorted(objects)} (missing: {missing_objects}, extra: {extra_objects}); pass the same "
            "names to batcher.segment(...) as the run that wrote it, or start a new run folder"
        )
    for name, obj in objects.items():
        try:
            obj.load_state_dict(_as_compiled_or_not(obj, saved[name]))
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
            detail = _mismatch_hint(name, obj, saved[name]) or f"{type(exc).__name__}: {exc}"
            raise CheckpointMismatchError(
                f"checkpoint {where}: cannot load {name!r} ({detail}); the script's {name} differs "
                "from the one that wrote this run (changed architecture or hyper-parameters?) — "
                "use a new run folder for a changed model"
            ) from exc


def save_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """``seg.values`` as checkpoint state: JSON-like values and tensors, nested in dicts, lists
    and tuples (what ``torch.load(weights_only=True)`` reads back). Tensors are detached copies,
    so training may go on changing the originals.

    Raises :class:`BatcherError` naming the first value of another type.
    """

    def walk(value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, torch.Tensor):
            return value.detach().clone()
        if isinstance(value, (list, tuple)):
            items = [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, Mapping):
            for key in value:
                if not isinstance(key, (str, int)):
                    raise BatcherError(f"seg.values{path} has a key {key!r}; use str or int keys")
            return {k: walk(v, f"{path}[{k!r}]") for k, v in value.items()}
        raise BatcherError(
            f"seg.values{path} is a {type(value).__name__}, which a checkpoint cannot hold safely; "
            "store numbers, strings, None, tensors and lists/tuples/dicts of them in seg.values, and "
            "objects with state_dict() as keyword arguments to batcher.segment()"
        )

    return {k: walk(v, f"[{k!r}]") for k, v in values.items()}


def load_values(saved: Any, current: Mapping[str, Any]) -> dict[str, Any]:
    """The saved ``seg.values``; a tensor goes to the device of the value it replaces (the one
    given in ``values={...}``), since checkpoints are read onto the CPU."""
    if isinstance(saved, str):  # state format 1: a JSON document
        loaded: dict[str, Any] = json.loads(saved)
        return loaded

    def place(value: Any, like: Any) -> Any:
        if isinstance(value, torch.Tensor) and isinstance(like, torch.Tensor):
            return value.to(like.device)
        if isinstance(value, dict) and isinstance(like, Mapping):
            return {k: place(v, like.get(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and isinstance(like, (list, tuple)) and len(like) == len(value):
            items = [place(v, w) for v, w in zip(value, like, strict=True)]
            return items if isinstance(value, list) else tuple(items)
        return value

    return {k: place(v, current.get(k)) for k, v in dict(saved).items()}


def state_bytes(state: Any) -> int:
    """Bytes of the tensors in ``state`` (a first guess of a checkpoint's size before one is saved)."""
    if hasattr(state, "numel") and hasattr(state, "element_size"):
        return int(state.numel() * state.element_size())
    if isinstance(state, Mapping):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return 16


def check_stateful(objects: Mapping[str, Any]) -> None:
    """Raise a clear error for an object that cannot be checkpointed."""
    for name, obj in objects.items():
        if not isinstance(obj, Stateful):
            raise BatcherError(
                f"batcher.segment({name}=...): a {type(obj).__name__} has no state_dict() and "
                "load_state_dict(); pass only checkpointable objects, and plain values via values={...}"
            )
