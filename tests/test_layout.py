"""The run folder's paths: one place, and the Snakemake patterns agree with it."""

from __future__ import annotations

from pathlib import Path

from batcher.run.layout import FINAL_PATTERN, LOG_PATTERN, STATUS_PATTERN, RunLayout


def test_paths_of_a_workflow_run_and_their_patterns_agree() -> None:
    run = RunLayout.of("exp", "0123abcd", base=Path("/w"))
    assert run.root == Path("/w/runs/exp/0123abcd")
    assert run.status(7) == Path("/w") / STATUS_PATTERN.format(exp="exp", run="0123abcd", n="0007")
    assert run.log(7) == Path("/w") / LOG_PATTERN.format(exp="exp", run="0123abcd", n="0007")
    assert run.final_summary(40) == Path("/w") / FINAL_PATTERN.format(exp="exp", run="0123abcd", length=40)
    assert (run.ckpt, run.metrics, run.lock, run.command) == (
        run.root / "ckpt",
        run.root / "metrics.jsonl",
        run.root / "lock",
        run.root / "command.json",
    )


def test_statuses_are_listed_in_segment_order(tmp_path: Path) -> None:
    run = RunLayout(tmp_path)
    for n in (10, 2, 0):
        run.status(n).parent.mkdir(parents=True, exist_ok=True)
        run.status(n).write_text("{}")
    assert [p.name for p in run.statuses()] == ["seg-0000.json", "seg-0002.json", "seg-0010.json"]
    assert RunLayout.by_hand("train").root == Path("runs/train")
