"""A real, small training script: an MLP classifies two interleaved spirals (data generated here).

Runs anywhere: ``python examples/train.py --epochs 20`` trains to the end; under
``BATCHER_TIME_LIMIT=30s`` or a Slurm job it stops in time, saves, and the next run continues.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import batcher


def spirals(n: int, noise: float, seed: int) -> TensorDataset:
    """Two spirals of ``n`` points each, with Gaussian noise; deterministic for a seed."""
    g = torch.Generator().manual_seed(seed)
    t = torch.sqrt(torch.rand(n, generator=g)) * 3 * math.pi
    arm = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / (3 * math.pi)
    x = torch.cat([arm, -arm]) + noise * torch.randn(2 * n, 2, generator=g)
    y = torch.cat([torch.zeros(n), torch.ones(n)]).long()
    return TensorDataset(x, y)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--samples", type=int, default=2000, help="points per spiral arm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step-sleep", type=float, default=0.0, help="extra seconds per step (demos, tests)")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    data = spirals(args.samples, noise=0.03, seed=args.seed)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    model = nn.Sequential(
        nn.Linear(2, args.hidden),
        nn.ReLU(),
        nn.Dropout(args.dropout),
        nn.Linear(args.hidden, args.hidden),
        nn.ReLU(),
        nn.Dropout(args.dropout),
        nn.Linear(args.hidden, 2),
    )
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.7)
    loss_fn = nn.CrossEntropyLoss()

    # Plain values that must survive a stop live in seg.values (a segment may end mid-epoch,
    # and the code before seg.iterate() runs again when it resumes there).
    seg = batcher.segment(
        model=model,
        optimizer=opt,
        scheduler=sched,
        values={"best_loss": None, "loss_sum": 0.0, "seen": 0},
    )
    v = seg.values
    for epoch in seg.range(args.epochs):
        model.train()
        for x, y in seg.iterate(loader):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            v["loss_sum"] += loss.item() * len(y)
            v["seen"] += len(y)
            if args.step_sleep:
                time.sleep(args.step_sleep)
        sched.step()
        epoch_loss = v["loss_sum"] / max(v["seen"], 1)
        v["best_loss"] = epoch_loss if v["best_loss"] is None else min(v["best_loss"], epoch_loss)
        seg.log(epoch=epoch, loss=epoch_loss, lr=sched.get_last_lr()[0])
        v["loss_sum"], v["seen"] = 0.0, 0
    seg.done()

    model.eval()
    with torch.no_grad():
        x, y = data.tensors
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    print(f"final accuracy {accuracy:.3f}, best epoch loss {seg.values['best_loss']:.4f}")


if __name__ == "__main__":
    main()
