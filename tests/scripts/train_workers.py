"""Test training script with DataLoader workers: a plain DataLoader or torchdata's StatefulDataLoader.

The dataset optionally augments each sample with noise drawn inside the worker, from a generator
the dataset owns and returns in ``state_dict()`` (what StatefulDataLoader saves per worker). Every
index a worker fetches is appended to ``$TEST_FETCH_LOG`` (if set), so a test can count what a
resume loaded. ``--stop-at-step N`` sends SIGUSR1 to this process after step N (a deterministic
mid-epoch stop). ``--deadline-at-step N``: the segment has a one-hour ``time_limit``, and after
step N its deadline moves to now (as when Slurm's re-read end time is earlier): a deadline stop at
a chosen step, whatever the machine's speed, with no step measured longer than it took. ``--kill-at-step N:S``: after step N, once the checkpoint of step S (a periodic
save) is committed, SIGKILL this process (once per run: a marker in the run folder). Logs every
step's loss.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, get_worker_info

import batcher

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=2)
p.add_argument("--workers", type=int, default=2)
p.add_argument("--persistent", action="store_true")
p.add_argument("--stateful", action="store_true", help="torchdata's StatefulDataLoader")
p.add_argument("--augment", action="store_true", help="random noise drawn inside the workers")
p.add_argument("--stop-at-step", type=int, action="append", default=[])
p.add_argument("--deadline-at-step", type=int, action="append", default=[])
p.add_argument("--kill-at-step", action="append", default=[], help="N:S")
p.add_argument("--fetch-s", type=float, default=0.0, help="seconds per sample fetched")
p.add_argument("--samples", type=int, default=192)
args = p.parse_args()


class Samples(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    def __init__(self, n: int, augment: bool) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 4, generator=g)
        self.y = (self.x.sum(1, keepdim=True) > 0).float()
        self.augment = augment
        self.gen: torch.Generator | None = None
        self.log = os.environ.get("TEST_FETCH_LOG")

    def _gen(self) -> torch.Generator:
        if self.gen is None:
            info = get_worker_info()
            self.gen = torch.Generator().manual_seed(info.seed if info else 7)
        return self.gen

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{i}\n")
        if args.fetch_s:
            time.sleep(args.fetch_s)
        x = self.x[i]
        if self.augment:
            x = x + 0.1 * torch.randn(4, generator=self._gen())
        return x, self.y[i]

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self._gen().get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._gen().set_state(state["gen"])


torch.manual_seed(0)
torch.set_num_threads(1)
data = Samples(args.samples, args.augment)
options: dict[str, Any] = {"batch_size": 16, "shuffle": True, "num_workers": args.workers}
if args.workers:
    options["persistent_workers"] = args.persistent
if args.stateful:
    from torchdata.stateful_dataloader import StatefulDataLoader

    loader: Any = StatefulDataLoader(data, **options)
else:
    loader = DataLoader(data, **options)
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
loss_fn = nn.BCEWithLogitsLoss()

loaders = {"loader": loader} if args.stateful else {}
deadlines = {"time_limit": "1h"} if args.deadline_at_step else {}
seg = batcher.segment(model=model, optimizer=opt, **loaders, **deadlines)
kills = dict(tuple(int(n) for n in k.split(":")) for k in args.kill_at_step)
run_dir = os.environ["BATCHER_RUN_DIR"]


def kill_after_commit(step: int) -> None:
    marker = os.path.join(run_dir, f"killed-at-{step}")
    if os.path.exists(marker):
        return
    manifest = os.path.join(run_dir, "ckpt", "manifest.json")
    for _ in range(6000):  # the background write of the step's periodic save: 60 s at most
        if os.path.exists(manifest):
            with open(manifest) as f:
                if any(c["step"] == kills[step] for c in json.load(f)["checkpoints"]):
                    break
        time.sleep(0.01)
    else:
        raise SystemExit(f"no checkpoint of step {kills[step]} committed")
    open(marker, "w").close()
    os.kill(os.getpid(), signal.SIGKILL)


for _epoch in seg.range(args.epochs):
    for xb, yb in seg.iterate(loader):
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        seg.log(loss=loss.item())
        if seg.step + 1 in args.stop_at_step:  # the step just taken is seg.step + 1 after the boundary
            os.kill(os.getpid(), signal.SIGUSR1)
        if seg.step + 1 in args.deadline_at_step:
            seg.deadline.at = time.time()
        if seg.step in kills:  # after the boundary that started the periodic save of that step
            kill_after_commit(seg.step)
seg.done()
print("FINISHED", seg.step)
