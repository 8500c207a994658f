"""Metric curves per experiment, with segment boundaries marked, a summary across experiments,
and the time account of a run as a timeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from batcher.run.layout import RunLayout
from batcher.run.metrics import read_metrics
from batcher.run.status import read_status
from batcher.workflow.account import CATEGORIES, RunAccount

__all__ = ["plot_run", "plot_summary", "plot_timeline", "segment_stops"]


def segment_stops(run_dir: Path) -> list[float]:
    """The steps at which the run's segments stopped unfinished, from its status files: where
    one segment's training ends and the next one's begins (a segment that logged nothing too)."""
    statuses = (read_status(p) for p in RunLayout(run_dir).statuses())
    return sorted({float(s.step) for s in statuses if s and s.status == "unfinished"})


def _numeric_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    skip = {"_seq", "epoch", "step", "segment", "time"}
    keys: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k not in skip and k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    return keys


def _x(rows: Sequence[Mapping[str, Any]]) -> tuple[list[float], str]:
    if all(isinstance(r.get("step"), (int, float)) for r in rows):
        return [float(r["step"]) for r in rows], "step"
    return [float(r["_seq"]) for r in rows], "row"


def plot_run(metrics_file: Path, out: Path, *, title: str) -> int:
    """Draw every numeric metric of one run (one panel each) to ``out``; return the number of curves.

    ``metrics_file`` is a run folder's ``metrics.jsonl``; dotted lines mark the steps at which
    its segments stopped (:func:`segment_stops`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_file)
    keys = _numeric_keys(rows)
    fig, axes = plt.subplots(max(1, len(keys)), 1, figsize=(8, 2.6 * max(1, len(keys))), squeeze=False)
    x, xlabel = _x(rows) if rows else ([], "step")
    if xlabel == "step":  # where each segment stopped, not where the next one first logged
        boundaries = segment_stops(metrics_file.parent)
    else:
        boundaries = [
            x[i] for i in range(1, len(rows)) if rows[i].get("segment") != rows[i - 1].get("segment")
        ]
    for ax, key in zip(axes[:, 0], keys, strict=False):
        pts = [(xi, r[key]) for xi, r in zip(x, rows, strict=True) if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key)
        for b in boundaries:
            ax.axvline(b, color="grey", linestyle=":", linewidth=0.8)
        ax.set_ylabel(key)
    axes[-1, 0].set_xlabel(f"{xlabel} (dotted lines: segment boundaries)")
    axes[0, 0].set_title(title)
    if not keys:
        axes[0, 0].text(0.5, 0.5, "no metrics logged yet", ha="center", transform=axes[0, 0].transAxes)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return len(keys)


def plot_summary(runs: Mapping[str, Path], out: Path, *, metric: str = "loss") -> int:
    """Draw ``metric`` of several runs on one axis; return the number of curves drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    curves = 0
    for name, metrics_file in runs.items():
        rows = [r for r in read_metrics(metrics_file) if isinstance(r.get(metric), (int, float))]
        if not rows:
            continue
        x, xlabel = _x(rows)
        ax.plot(x, [r[metric] for r in rows], label=name)
        ax.set_xlabel(xlabel)
        curves += 1
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by experiment")
    if curves:
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return curves


#: a colour per category of the time account, training green, losses warm, waiting grey
_COLOURS = {
    "queued": "#bdbdbd", "launch": "#9ecae1", "imports": "#6baed6", "restore": "#3182bd",
    "train": "#31a354", "stalls": "#fdae6b", "lost": "#de2d26", "final_save": "#e6550d",
    "drain": "#756bb1",
}  # fmt: skip


def plot_timeline(account: RunAccount, out: Path, *, title: str) -> int:
    """Draw one bar per attempt on a time axis, coloured by category (:mod:`batcher.workflow.account`),
    unplanned stops marked with a red cross; return the number of bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    attempts = account.attempts
    fig, ax = plt.subplots(figsize=(10, max(3.2, 1.2 + 0.35 * len(attempts))))
    t0 = attempts[0].submit if attempts else 0.0
    span = account.span_s
    scale, unit = (3600.0, "h") if span > 3 * 3600 else (60.0, "min") if span > 600 else (1.0, "s")
    for row, a in enumerate(attempts):
        left = (a.submit - t0) / scale
        for category in CATEGORIES:  # in the order they happen (train and stalls interleave)
            width = a.seconds[category] / scale
            if width > 0:
                ax.barh(row, width, left=left, color=_COLOURS[category], height=0.7)
            left += width
        if a.unplanned:
            ax.plot([left], [row], marker="x", color="#de2d26", markersize=10, markeredgewidth=2.5)
    ax.set_yticks(range(len(attempts)), [f"{a.segment} ({a.attempt})" for a in attempts])
    ax.invert_yaxis()
    ax.set_xlabel(f"{unit} since the first submission")
    ax.set_ylabel("segment (attempt)")
    goodput = account.goodput
    ax.set_title(title + ("" if goodput is None else f": goodput {goodput:.3f}"))
    handles: list[Any] = [Patch(color=c) for c in _COLOURS.values()]
    handles.append(Line2D([], [], marker="x", color="#de2d26", linestyle="", markeredgewidth=2.5))
    ax.legend(
        handles, [*_COLOURS, "unplanned stop"], loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return len(attempts)
