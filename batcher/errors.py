"""Every error torch-batcher raises derives from :class:`BatcherError`.

Each message says what was wrong, where, and how to fix it, so that a user reading a
Slurm log at 3 a.m. does not need to open the source.
"""

from __future__ import annotations

__all__ = [
    "BatcherError",
    "CheckpointMismatchError",
    "ConfigError",
    "NoUsableCheckpointError",
    "NotFinishedError",
    "PolicyError",
    "RunLockedError",
    "SaveError",
    "SlotTooShortError",
    "TimeSpecError",
]


class BatcherError(Exception):
    """Base class of all torch-batcher errors."""

    #: process exit status used when the error ends a segment (0 is reserved for a clean stop)
    exit_code: int = 2


class TimeSpecError(BatcherError, ValueError):
    """A duration or deadline string could not be read."""


class PolicyError(BatcherError, ValueError):
    """A time-limit policy is unknown, cannot be loaded, or returned nonsense."""


class ConfigError(BatcherError, ValueError):
    """The experiments configuration is invalid."""


class RunLockedError(BatcherError):
    """Another live process is training the same run folder."""

    exit_code = 3


class NoUsableCheckpointError(BatcherError):
    """Checkpoints exist but none of them passed the integrity check."""

    exit_code = 4


class CheckpointMismatchError(BatcherError):
    """A checkpoint does not fit the objects it is loaded into (keys, shapes, names)."""

    exit_code = 4


class SaveError(BatcherError, OSError):
    """A checkpoint or status file could not be written (disk full, permissions, ...)."""

    exit_code = 5


class SlotTooShortError(BatcherError):
    """A segment could not make any progress before its deadline."""

    exit_code = 6


class NotFinishedError(BatcherError):
    """``done()`` was called before the training loop reached its end."""
