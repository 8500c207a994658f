"""Copy a finished run's summary and final checkpoint to results/{exp}/ (verified, atomic, durable)."""

import shutil
from pathlib import Path

from batcher.run.atomic_files import atomic_path, checkpoint_digest, file_digest
from batcher.run.summary import read_summary, write_summary

snakemake = globals()["snakemake"]
summary = read_summary(Path(snakemake.input[0]))
source = Path(summary.checkpoint.file)
algorithm, digest = summary.checkpoint.algorithm, summary.checkpoint.digest
out = Path(snakemake.output.state)
mismatch = f"{source} does not match the digest in {snakemake.input[0]}; rerun that experiment"
keep_note = f"The run's own checkpoint {source} is intact."
with atomic_path(out, keep_note=keep_note, what="published checkpoint") as tmp:
    if source.is_dir():  # a sharded (FSDP) checkpoint: verify the folder, then join its shards
        if checkpoint_digest(source, algorithm) != digest:
            raise SystemExit(mismatch)
        import torch

        from batcher.ckpt.load_checkpoint import whole_state

        torch.save(whole_state(source), tmp)
    else:
        shutil.copyfile(source, tmp)
        if file_digest(tmp, algorithm) != digest:
            raise SystemExit(mismatch)
write_summary(Path(snakemake.output.summary), summary.published(out))
