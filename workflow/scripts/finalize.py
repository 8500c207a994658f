"""Summarize a finished chain: runs/{exp}/{run}/final-{length}.json (no torch needed)."""

from pathlib import Path

from batcher.errors import BatcherError
from batcher.run.summary import summarize, write_summary

snakemake = globals()["snakemake"]
try:
    summary = summarize(Path(snakemake.input[0]))
except BatcherError as exc:
    raise SystemExit(str(exc)) from None
write_summary(Path(snakemake.output[0]), summary)
