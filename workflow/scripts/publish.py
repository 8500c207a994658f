"""Copy a finished run's summary and final checkpoint to results/{exp}/ (verified, atomic)."""

import json
import os
import shutil
from pathlib import Path

from batcher.files import atomic_write_bytes, file_digest

snakemake = globals()["snakemake"]
summary = json.loads(Path(snakemake.input[0]).read_text())
source = Path(summary["checkpoint"]["file"])
out = Path(snakemake.output.state)
tmp = out.with_name(f".{out.name}.tmp")
if source.is_dir():  # a sharded (FSDP) checkpoint: verify the folder, then join its shards
    from batcher.checkpoint import whole_state
    from batcher.files import checkpoint_digest

    if checkpoint_digest(source, summary["checkpoint"]["algorithm"]) != summary["checkpoint"]["digest"]:
        raise SystemExit(f"{source} does not match the digest in {snakemake.input[0]}; rerun that experiment")
    import torch

    torch.save(whole_state(source), tmp)
else:
    shutil.copyfile(source, tmp)
    if file_digest(tmp, summary["checkpoint"]["algorithm"]) != summary["checkpoint"]["digest"]:
        tmp.unlink()
        raise SystemExit(f"{source} does not match the digest in {snakemake.input[0]}; rerun that experiment")
os.replace(tmp, out)
summary["checkpoint"] = {**summary["checkpoint"], "file": str(out), "source": str(source)}
summary["load_weights"] = "torch.load('results/<exp>/final.pt', weights_only=True)['objects']['model']"
atomic_write_bytes(Path(snakemake.output.summary), (json.dumps(summary, indent=1) + "\n").encode())
