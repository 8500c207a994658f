"""The segment chain of one experiment: which status file ends it, and which segment runs next.

Reads the small status files already on disk instead of asking Snakemake about every segment,
so restarting a long finished chain costs one file read per segment, not a DAG re-evaluation.
This is also what orders a chain: segment N is asked for only once segment N-1's status file
says unfinished, so at most one segment per experiment is ever scheduled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from batcher.errors import ConfigError
from batcher.run.layout import RunLayout
from batcher.run.status import read_status

__all__ = ["final_segment"]


def final_segment(run: RunLayout, length: int, request: Callable[[int], object]) -> Path:
    """Return the status file that ends ``run``'s chain for ``length``.

    ``request(n)`` is called for the first segment with no status file yet; under Snakemake it
    is ``checkpoints.segment.get(...)``, which raises until that segment has run.
    """
    n = 0
    while True:
        path = run.status(n)
        status = read_status(path)
        if status is None:
            request(n)
            status = read_status(path)
            if status is None:
                raise ConfigError(
                    f"{path} is not a torch-batcher status file; remove it to rerun that segment"
                )
        if status.is_final(length):
            return path
        n += 1
