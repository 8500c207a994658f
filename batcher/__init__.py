"""torch-batcher: finish a PyTorch training run of any length as a chain of short jobs.

>>> import batcher
>>> seg = batcher.segment(model=model, optimizer=opt)      # doctest: +SKIP
>>> for epoch in seg.range(100):                           # doctest: +SKIP
...     for batch in seg.iterate(loader):
...         ...
...     seg.log(epoch=epoch, loss=loss.item())
>>> seg.done()                                             # doctest: +SKIP
"""

from typing import TYPE_CHECKING, Any

from batcher.errors import (
    BatcherError,
    CheckpointMismatchError,
    ConfigError,
    NotFinishedError,
    NoUsableCheckpointError,
    PolicyError,
    RunLockedError,
    SaveError,
    SlotTooShortError,
    TimeSpecError,
)
from batcher.limits.policy import Policy, policy_from_spec

if TYPE_CHECKING:
    from batcher.api.elastic import ElasticSampler
    from batcher.api.loop import Segment
    from batcher.api.script_end import SegmentStopped
    from batcher.api.start import segment
    from batcher.ckpt.load_checkpoint import load_checkpoint

# The training loop needs torch; the policies, errors and config checks do not. Importing them
# lazily keeps `import batcher.limits.policy` (the Snakefile, the CLI) free of the seconds torch takes.
_LAZY = {
    "ElasticSampler": "batcher.api.elastic",
    "Segment": "batcher.api.loop",
    "SegmentStopped": "batcher.api.script_end",
    "segment": "batcher.api.start",
    "load_checkpoint": "batcher.ckpt.load_checkpoint",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'batcher' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BatcherError",
    "CheckpointMismatchError",
    "ConfigError",
    "ElasticSampler",
    "NoUsableCheckpointError",
    "NotFinishedError",
    "Policy",
    "PolicyError",
    "RunLockedError",
    "SaveError",
    "Segment",
    "SegmentStopped",
    "SlotTooShortError",
    "TimeSpecError",
    "load_checkpoint",
    "policy_from_spec",
    "segment",
]
__version__ = "0.1.0"
