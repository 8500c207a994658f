"""Test training under torch.distributed (gloo, CPU): DDP (or FSDP with --fsdp), DistributedSampler
(or batcher.ElasticSampler with --elastic) with shuffling, dropout, Adam.

Run one process per rank with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set (as torchrun does).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import batcher

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--step-sleep", type=float, default=0.0)
p.add_argument("--signal-at-step", type=int, default=0, help="this rank sends itself SIGUSR1 after step N")
p.add_argument(
    "--kill-in-save",
    action="store_true",
    help="SIGKILL this rank during the first save: rank 0 after writing the temp file, before it is "
    "committed; another rank while it waits for rank 0 to finish writing",
)
p.add_argument(
    "--kill-in-save-after",
    type=int,
    default=0,
    help="with --kill-in-save: the first save after N steps of the run, not the segment's first save",
)
p.add_argument(
    "--kill-at-step",
    type=int,
    default=0,
    help="SIGKILL this rank when step N begins (a background save of step N may have just started)",
)
p.add_argument(
    "--full-disk-at-save",
    type=int,
    default=0,
    help="rank 0's N-th checkpoint write (and every later one) fails as on a full disk",
)
p.add_argument("--fsdp", action="store_true", help="shard the model with FSDP2 (fully_shard) instead of DDP")
p.add_argument(
    "--fault-rank",
    type=int,
    default=None,
    help="--signal-at-step, --kill-in-save and --kill-at-step act on this rank only (default: on every rank)",
)
p.add_argument(
    "--fault-once",
    default="",
    help="a file: a kill creates it first, and no kill fires while it exists (the retried job runs clean)",
)
p.add_argument(
    "--signal-once",
    default="",
    help="a file: --signal-at-step creates it as it fires, and does not fire while it exists (a resume "
    "from before that step does not stop there again)",
)
p.add_argument("--report-host", action="store_true", help="print each rank's host name and address")
p.add_argument(
    "--dump-start",
    default="",
    help="rank 0 writes the whole (unsharded) model and optimizer state, as the segment starts "
    "(after any resume), to this file ({segment}: the segment's number, from BATCHER_SEGMENT)",
)
p.add_argument("--elastic", action="store_true", help="batcher.ElasticSampler instead of DistributedSampler")
p.add_argument("--samples", type=int, default=256, help="the data set's size")
p.add_argument("--workers", type=int, default=0, help="the DataLoader's num_workers")
p.add_argument(
    "--ledger",
    default="",
    help="each rank appends one JSON line per batch (epoch, steps done before it, sample indices) to "
    "this path plus .job<SLURM_JOB_ID> (under Slurm) and .rank<R>",
)
args = p.parse_args()

dist.init_process_group("gloo")
rank = dist.get_rank()
if args.report_host:
    import socket

    host = socket.gethostname()
    where = f"rank {rank} of {dist.get_world_size()} on {host} ({socket.gethostbyname(host)})"
    print(f"{where}, local rank {os.environ['LOCAL_RANK']} of {os.environ['LOCAL_WORLD_SIZE']}", flush=True)
faulty = args.fault_rank in (None, rank)
if args.signal_once and os.path.exists(args.signal_once):
    args.signal_at_step = 0
if args.fault_once and os.path.exists(args.fault_once):
    args.kill_in_save, args.kill_at_step = False, 0
if not faulty:
    args.kill_in_save, args.kill_at_step, args.signal_at_step = False, 0, 0


def arm_kill_in_save() -> None:
    """From now on, the next save SIGKILLs this rank (see --kill-in-save)."""
    import batcher.ckpt.ranks
    import batcher.ckpt.store

    def _die(*_: object, **__: object) -> None:
        if args.fault_once:
            open(args.fault_once, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)

    if rank == 0:
        real_save = batcher.ckpt.store.torch.save

        def save_then_die(obj: object, f: object, **k: object) -> None:
            real_save(obj, f, **k)  # type: ignore[arg-type]
            if isinstance(f, str):  # the checkpoint file, not the in-memory size estimate
                _die()

        batcher.ckpt.store.torch.save = save_then_die  # type: ignore[assignment]
    else:
        batcher.ckpt.ranks.Ranks.from_main = _die  # type: ignore[assignment,method-assign]


if args.kill_in_save and not args.kill_in_save_after:
    arm_kill_in_save()
if args.full_disk_at_save and rank == 0:
    import errno

    import batcher.ckpt.store

    real_torch_save, writes = batcher.ckpt.store._torch_save, [0]

    def full_disk(state: object, tmp: object) -> None:
        writes[0] += 1
        if writes[0] >= args.full_disk_at_save:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_torch_save(state, tmp)  # type: ignore[arg-type]

    batcher.ckpt.store._torch_save = full_disk  # type: ignore[assignment]
torch.manual_seed(0)
torch.set_num_threads(1)
g = torch.Generator().manual_seed(1)
x = torch.randn(args.samples, 4, generator=g)
y = (x.sum(1, keepdim=True) > 0).float()
data = TensorDataset(x, y, torch.arange(args.samples))
sampler = (batcher.ElasticSampler if args.elastic else DistributedSampler)(data, shuffle=True, seed=3)
loader = DataLoader(data, batch_size=8, sampler=sampler, num_workers=args.workers)
job = f".job{os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else ""  # one file per attempt
ledger = open(f"{args.ledger}{job}.rank{rank}", "a") if args.ledger else None
net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
if args.fsdp:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    for layer in (net[0], net[3]):
        fully_shard(layer, mesh=mesh)
    model = fully_shard(net, mesh=mesh)
else:
    model = DistributedDataParallel(net)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
loss_fn = nn.BCEWithLogitsLoss()

seg = batcher.segment(model=model, optimizer=opt, values={"steps": 0})
if args.dump_start:
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    whole = StateDictOptions(full_state_dict=True, cpu_offload=True)  # a collective under FSDP
    start = {
        "model": get_model_state_dict(model, options=whole),
        "optimizer": get_optimizer_state_dict(model, opt, options=whole),
    }
    if rank == 0:
        torch.save(start, args.dump_start.format(segment=os.environ.get("BATCHER_SEGMENT", "0")))
for epoch in seg.range(args.epochs):
    sampler.set_epoch(epoch)
    model.train()
    for xb, yb, ib in seg.iterate(loader):
        if ledger:
            print(json.dumps({"epoch": epoch, "step": seg.step, "idx": ib.tolist()}), file=ledger, flush=True)
        if args.kill_at_step and seg.step == args.kill_at_step:
            if args.fault_once:
                open(args.fault_once, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        opt.zero_grad()
        loss = loss_fn(model(xb), yb) * (1 + 1e-3 * torch.rand(()).item())  # per-rank RNG in use
        loss.backward()
        opt.step()
        seg.values["steps"] += 1
        if args.kill_in_save and seg.values["steps"] == args.kill_in_save_after:
            arm_kill_in_save()
        seg.log(loss=loss.item())
        if args.step_sleep:
            time.sleep(args.step_sleep)
        if args.signal_at_step and seg.values["steps"] == args.signal_at_step:
            if args.signal_once:
                open(args.signal_once, "w").close()
            os.kill(os.getpid(), signal.SIGUSR1)
seg.done()
dist.destroy_process_group()
