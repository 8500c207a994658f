"""The run summary's one owner: made from a finished run folder, published, read back, refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from batcher.errors import BatcherError
from batcher.run.atomic_files import file_digest
from batcher.run.layout import ResultsLayout, RunLayout
from batcher.run.metrics import MetricLog
from batcher.run.status import CheckpointRef, SegmentSeconds, SegmentStatus, write_status
from batcher.run.summary import FinalSummary, read_summary, summarize, write_summary


def _finished_run(tmp_path: Path) -> tuple[RunLayout, Path]:
    run = RunLayout(tmp_path / "runs" / "exp" / "abc")
    run.ckpt.mkdir(parents=True)
    ckpt = run.ckpt / "step-000000012.pt"
    ckpt.write_bytes(b"weights")
    ref = CheckpointRef(str(ckpt), file_digest(ckpt, "sha256"), "sha256", 7)
    for n, (state, step) in enumerate([("unfinished", 5), ("done", 12)]):
        write_status(
            run.status(n),
            SegmentStatus(
                status=state, segment=n, experiment="exp", epoch=step // 4, step=step, total=3,  # type: ignore[arg-type]
                seconds=SegmentSeconds(wall=10.0, load=1.0, save=2.0, train=7.0), checkpoint=ref,
                run_dir=str(run.root),
            ),
        )  # fmt: skip
    log = MetricLog(run.metrics)
    log.log({"epoch": 0, "loss": 2.0})
    log.log({"epoch": 2, "loss": 0.5})
    log.close()
    return run, run.status(1)


def test_a_finished_run_is_summarized_published_and_read_back(tmp_path: Path) -> None:
    run, last = _finished_run(tmp_path)
    summary = summarize(last)
    assert (summary.experiment, summary.segments, summary.steps, summary.epochs) == ("exp", 2, 12, 3)
    assert summary.final_metrics == {"epoch": 2, "loss": 0.5}  # the last row, no bookkeeping keys
    assert summary.train_seconds == 14.0 and summary.wall_seconds == 20.0
    assert summary.run == run and summary.checkpoint.size == 7 and summary.load_weights is None
    path = run.final_summary(3)
    write_summary(path, summary)
    assert read_summary(path) == summary
    results = ResultsLayout.of("exp", base=tmp_path)
    published = summary.published(results.state)
    assert published.checkpoint.file == str(results.state)
    assert published.checkpoint.source == summary.checkpoint.file and published.load_weights
    results.root.mkdir(parents=True)
    write_summary(results.summary, published)
    assert read_summary(results.summary) == published
    doc = json.loads(results.summary.read_text())  # the published file scripts read
    assert doc["steps"] == 12 and doc["checkpoint"]["source"] == summary.checkpoint.file


def test_a_changed_checkpoint_or_an_unfinished_status_is_refused(tmp_path: Path) -> None:
    run, last = _finished_run(tmp_path)
    with pytest.raises(BatcherError, match="not a finished segment's status"):
        summarize(run.status(7))
    (run.ckpt / "step-000000012.pt").write_bytes(b"changed")
    with pytest.raises(BatcherError, match=r"fails its sha256 check.*train the experiment again"):
        summarize(last)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "has not finished yet"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not a run summary"),
        ('{"experiment": "e"}', "lacks checkpoint, epochs, run_dir, segments, steps, total"),
        (
            '{"experiment": "e", "run_dir": "r", "segments": 1, "epochs": 1, "steps": 1, "total": 1,'
            ' "checkpoint": {"file": "f"}}',
            "its checkpoint entry is not one",
        ),
    ],
)
def test_a_file_that_is_no_summary_says_what_is_wrong(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "final.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(BatcherError, match=message):
        read_summary(path)


def test_the_results_layout_gives_the_rules_their_patterns(tmp_path: Path) -> None:
    pattern = ResultsLayout.pattern()
    assert str(pattern.summary) == "results/{exp}/final.json"
    assert (
        str(pattern.state) == "results/{exp}/final.pt"
        and str(pattern.log("publish")) == "results/{exp}/publish.log"
    )
    assert ResultsLayout.of("a", base=tmp_path).curves == tmp_path / "results" / "a" / "curves.png"
    assert ResultsLayout.across("summary.png") == Path("results/summary.png")
    assert FinalSummary.__dataclass_fields__["load_weights"].default is None


def test_a_run_without_a_known_total_is_written_and_read_back(tmp_path: Path) -> None:
    """``total`` is required but may be null (a status without it): writing must keep the key."""
    run, last = _finished_run(tmp_path)
    summary = dataclasses.replace(summarize(last), total=None)
    write_summary(run.final_summary(3), summary)
    assert read_summary(run.final_summary(3)) == summary
    assert "load_weights" not in json.loads(run.final_summary(3).read_text())
