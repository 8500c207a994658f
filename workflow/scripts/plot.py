"""Curves of one experiment (rule curves), its time account (rule timeline), or the curves of
all of them plus a table (rule summary)."""

import csv
from pathlib import Path

from batcher.run.summary import read_summary
from batcher.workflow.account import account_run
from batcher.workflow.plots import plot_run, plot_summary, plot_timeline

snakemake = globals()["snakemake"]
summaries = {Path(p).parent.name: read_summary(Path(p)) for p in snakemake.input}
if snakemake.rule == "curves":
    ((name, summary),) = summaries.items()
    plot_run(summary.run.metrics, Path(snakemake.output[0]), title=name)
elif snakemake.rule == "timeline":
    ((name, summary),) = summaries.items()
    plot_timeline(account_run(summary.run), Path(snakemake.output[0]), title=name)
else:
    plot_summary({n: s.run.metrics for n, s in summaries.items()}, Path(snakemake.output.plot))
    keys = sorted({k for s in summaries.values() for k in s.final_metrics if k not in ("time", "segment")})
    with open(snakemake.output.table, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["experiment", "segments", "train_seconds", *keys])
        for n, s in summaries.items():
            w.writerow(
                [n, s.segments, round(s.train_seconds, 1), *(s.final_metrics.get(k, "") for k in keys)]
            )
