"""Test training script: shuffled loader, dropout, Adam, a scheduler, GradScaler, and all RNGs in use.

Writes the loss of every step with seg.log, so that segmented and uninterrupted runs can be compared.
"""

from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import batcher

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--step-sleep", type=float, default=0.0)
p.add_argument("--hidden", type=int, default=16)
p.add_argument("--no-iterate", action="store_true", help="stop only at epoch boundaries")
args = p.parse_args()

torch.manual_seed(0)
random.seed(0)
np.random.seed(0)
torch.set_num_threads(1)
g = torch.Generator().manual_seed(1)
x = torch.randn(256, 4, generator=g)
y = (x.sum(1, keepdim=True) > 0).float()
loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
model = nn.Sequential(nn.Linear(4, args.hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(args.hidden, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
scaler = torch.amp.GradScaler("cpu", enabled=False)
loss_fn = nn.BCEWithLogitsLoss()

seg = batcher.segment(model=model, optimizer=opt, scheduler=sched, scaler=scaler, values={"steps": 0})


def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
    opt.zero_grad()
    jitter = 1.0 + 1e-3 * random.random() + 1e-3 * float(np.random.rand())
    loss = loss_fn(model(xb), yb) * jitter
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    seg.values["steps"] += 1
    seg.log(loss=loss.item())
    if args.step_sleep:
        time.sleep(args.step_sleep)
    if os.environ.get("TEST_KILL_AT_STEP") == str(seg.values["steps"]):
        os.kill(os.getpid(), 9)


for _epoch in seg.range(args.epochs):
    model.train()
    if args.no_iterate:
        for xb, yb in loader:
            step(xb, yb)
    else:
        for xb, yb in seg.iterate(loader):
            step(xb, yb)
    sched.step()
seg.done()
print("FINISHED", seg.values["steps"])
