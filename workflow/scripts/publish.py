"""Copy a finished run's summary and final checkpoint to results/{exp}/ (verified, atomic, durable)."""

import json
import shutil
from pathlib import Path

from batcher.run.atomic_files import atomic_path, atomic_write_bytes, checkpoint_digest, file_digest

snakemake = globals()["snakemake"]
summary = json.loads(Path(snakemake.input[0]).read_text())
source = Path(summary["checkpoint"]["file"])
algorithm, digest = summary["checkpoint"]["algorithm"], summary["checkpoint"]["digest"]
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
summary["checkpoint"] = {**summary["checkpoint"], "file": str(out), "source": str(source)}
summary["load_weights"] = "torch.load('results/<exp>/final.pt', weights_only=True)['objects']['model']"
atomic_write_bytes(Path(snakemake.output.summary), (json.dumps(summary, indent=1) + "\n").encode())
