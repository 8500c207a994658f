"""Which status file ends a chain, and which segment Snakemake is asked for next."""

from __future__ import annotations

from pathlib import Path

import pytest

from batcher.errors import ConfigError
from batcher.run.layout import RunLayout
from batcher.run.status import write_status
from batcher.workflow.chain import final_segment


class NotYet(Exception):
    """What Snakemake's checkpoints.segment.get raises for a segment that has not run."""


def _status(run: RunLayout, n: int, status: str, total: int) -> None:
    write_status(run.status(n), {"segment": n, "status": status, "total": total})


def test_the_chain_asks_for_the_first_missing_segment_only(tmp_path: Path) -> None:
    run = RunLayout(tmp_path / "run")
    asked: list[int] = []

    def request(n: int) -> None:
        asked.append(n)
        raise NotYet

    with pytest.raises(NotYet):
        final_segment(run, 5, request)
    _status(run, 0, "unfinished", 5)
    _status(run, 1, "unfinished", 5)
    with pytest.raises(NotYet):
        final_segment(run, 5, request)
    assert asked == [0, 2]
    _status(run, 2, "done", 5)
    assert final_segment(run, 5, request) == run.status(2)


def test_a_raised_length_goes_on_past_a_done_segment(tmp_path: Path) -> None:
    run = RunLayout(tmp_path / "run")
    _status(run, 0, "done", 3)
    assert final_segment(run, 3, lambda n: None) == run.status(0)
    with pytest.raises(NotYet):
        final_segment(run, 4, lambda n: (_ for _ in ()).throw(NotYet()))


def test_a_file_that_is_no_status_is_named(tmp_path: Path) -> None:
    run = RunLayout(tmp_path / "run")
    run.status(0).parent.mkdir(parents=True)
    run.status(0).write_text("{}")
    with pytest.raises(ConfigError, match=r"seg-0000\.json is not a torch-batcher status file"):
        final_segment(run, 1, lambda n: None)
