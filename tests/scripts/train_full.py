"""Test training script: shuffled loader, dropout, Adam, a scheduler, GradScaler, and all RNGs in use.

Logs the loss of every step with seg.log, so that segmented and uninterrupted runs can be compared.
Importable (``train(...)``) for the fork-based kill tests, runnable as a script everywhere else.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import batcher


def train(*, epochs: int = 3, step_sleep: float = 0.0, hidden: int = 16, no_iterate: bool = False) -> int:
    """Train to the end (or until the segment stops the process); return the number of steps."""
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 4, generator=g)
    y = (x.sum(1, keepdim=True) > 0).float()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    model = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(hidden, 1))
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
        if step_sleep:
            time.sleep(step_sleep)

    for _epoch in seg.range(epochs):
        model.train()
        batches = loader if no_iterate else seg.iterate(loader)
        for xb, yb in batches:
            step(xb, yb)
        sched.step()
    seg.done()
    return int(seg.values["steps"])


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--step-sleep", type=float, default=0.0)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--no-iterate", action="store_true", help="stop only at epoch boundaries")
    a = p.parse_args()
    print(
        "FINISHED", train(epochs=a.epochs, step_sleep=a.step_sleep, hidden=a.hidden, no_iterate=a.no_iterate)
    )
