"""torch-batcher: finish a PyTorch training run of any length as a chain of short jobs.

>>> import batcher
>>> seg = batcher.segment(model=model, optimizer=opt)      # doctest: +SKIP
>>> for epoch in seg.range(100):                           # doctest: +SKIP
...     for batch in seg.iterate(loader):
...         ...
...     seg.log(epoch=epoch, loss=loss.item())
>>> seg.done()                                             # doctest: +SKIP
"""

from batcher.checkpoint import load_checkpoint
from batcher.errors import (
    BatcherError,
    CheckpointMismatchError,
    ConfigError,
    NoUsableCheckpointError,
    NotFinishedError,
    PolicyError,
    RunLockedError,
    SaveError,
    SlotTooShortError,
    TimeSpecError,
)
from batcher.policy import Das5Policy, FixedPolicy, policy_from_spec
from batcher.segment import Segment, SegmentStopped, segment

__all__ = [
    "BatcherError",
    "CheckpointMismatchError",
    "ConfigError",
    "Das5Policy",
    "FixedPolicy",
    "NoUsableCheckpointError",
    "NotFinishedError",
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
