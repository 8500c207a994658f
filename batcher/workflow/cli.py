"""``batcher``: where experiments stand (``status``), where their time went (``timeline``), what a
policy allows (``policy``), curves (``plot``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from batcher.errors import BatcherError
from batcher.limits.policy import policy_from_spec
from batcher.limits.timespec import format_duration, parse_deadline, parse_duration
from batcher.run.layout import ResultsLayout, RunLayout
from batcher.workflow.account import CATEGORIES, RunAccount, account_run
from batcher.workflow.experiments import Experiment, experiments_from
from batcher.workflow.progress import experiment_progress
from batcher.workflow.sources import EffectiveConfig, profile_settings_files, resolve_config

__all__ = ["main"]

# argparse prints descriptions as they are: plain text here, not the reST of the docstrings
_DESCRIPTION = (
    "torch-batcher: where experiments stand, where their time went, what a time-limit policy "
    "allows, metric curves."
)


def _effective(args: argparse.Namespace) -> EffectiveConfig:
    """The settings the jobs use (batcher.workflow.sources), with the profile ``--profile`` names;
    says on stderr which ones were used."""
    config_path = Path(args.config)
    if not config_path.is_file():
        raise BatcherError(f"no config at {config_path}; run in the workflow folder or pass --config PATH")
    profile = profile_settings_files(Path(args.profile)) if args.profile else []
    effective = resolve_config(config_file=config_path, profile_files=profile)
    used = f"profile {args.profile}" if args.profile else "no profile (pass --profile profiles/<name>)"
    print(f"settings: {used}; {effective.describe('policy')}", file=sys.stderr)
    return effective


def _experiments(args: argparse.Namespace, policy_override: str | None) -> dict[str, Experiment]:
    config_path = Path(args.config)
    config = dict(_effective(args).config)
    if policy_override is not None:
        config["policy"] = policy_override
    return experiments_from(config, config_files=[config_path], workflow_dir=config_path.parent)


def _at(text: str | None, zone: str | None = None) -> datetime:
    """The instant ``--at`` names: an ISO time (without an offset, in the policy's time ``zone``,
    else the machine's; said on stderr), ``@unix``, or a duration from now (``12h``, ``-5h``)."""
    now = datetime.now(timezone.utc)
    if text is None:
        return now
    text = text.strip()
    if text.startswith("-") and text[1:2].isdigit():
        return now - parse_duration(text[1:], what="--at")
    tz = ZoneInfo(zone) if zone else None
    at = parse_deadline(text, now=now, what="--at", zone=tz)
    try:
        naive = datetime.fromisoformat(text).tzinfo is None
    except ValueError:  # @unix or a duration
        naive = False
    if naive:
        where = f"the policy's time zone, {zone}" if zone else f"this machine's time zone, {at:%Z}"
        print(f"--at {text}: no UTC offset given, read in {where}", file=sys.stderr)
    return at


def _local(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%a %d %b %H:%M")


def _status(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    exps = _experiments(args, args.policy)
    zones = {getattr(e.policy, "tz", None) for e in exps.values()} - {None}
    now = _at(args.at, zones.pop() if len(zones) == 1 else None)
    rows = [experiment_progress(e, root=config_path.parent, now=now) for e in exps.values()]
    accounts = [_account(e, config_path.parent) for e in exps.values()]
    if args.json:
        docs = [{**r.as_dict(), "account": _account_summary(a)} for r, a in zip(rows, accounts, strict=True)]
        print(json.dumps(docs, indent=1))
        return 0
    header = [
        "experiment", "state", "segments", "progress", "last stop", "useful/segment", "goodput",
        "largest loss", "ETA",
    ]  # fmt: skip
    table = [
        [
            r.experiment,
            r.state,
            str(r.segments),
            f"{r.epoch:g}/{r.length} ({_percent(r.progress)})",
            r.last_stop or "-",
            format_duration(r.useful_s_per_segment) if r.useful_s_per_segment else "-",
            "-" if a.goodput is None else f"{a.goodput:.3f}",
            _loss(a),
            ("finished " if r.state == "done" else "") + _local(r.eta),
        ]
        for r, a in zip(rows, accounts, strict=True)
    ]
    _print_table(header, table)
    for r in rows:
        if r.problem:
            print(f"{r.experiment}: {r.problem}", file=sys.stderr)
    if not any(r.segments for r in rows):
        print("no segment has run yet: start the workflow with snakemake --profile profiles/<name>")
    return 0


def _account(exp: Experiment, root: Path) -> RunAccount:
    return account_run(RunLayout.of(exp.name, exp.run_id, base=root))


def _account_summary(account: RunAccount) -> dict[str, Any]:
    doc = account.as_dict()
    del doc["attempts"]
    return doc


def _loss(account: RunAccount) -> str:
    loss = account.largest_loss
    return "-" if loss is None else f"{loss[0]} {format_duration(loss[1])}"


_TIMELINE_HEADER = ["seg", "attempt", "outcome", "steps", "wall", *CATEGORIES, "gap"]


def _timeline(args: argparse.Namespace) -> int:
    from batcher.workflow.plots import plot_timeline

    config_path = Path(args.config)
    exps = _experiments(args, None)
    if args.experiment is not None:
        if args.experiment not in exps:
            raise BatcherError(
                f"no experiment {args.experiment!r} in {config_path}; it has: {', '.join(exps) or 'none'}"
            )
        exps = {args.experiment: exps[args.experiment]}
    accounts = {name: _account(e, config_path.parent) for name, e in exps.items()}
    if args.json:
        print(json.dumps({name: a.as_dict() for name, a in accounts.items()}, indent=1))
        return 0
    for name, account in accounts.items():
        if not account.attempts:
            print(f"{name}: no segment has run yet")
            continue
        goodput = "-" if account.goodput is None else f"{account.goodput:.3f}"
        print(
            f"{name}: {len(account.attempts)} attempt(s) in {format_duration(account.span_s)}, "
            f"goodput {goodput}, largest loss: {_loss(account)} (seconds)"
        )
        _print_table(_TIMELINE_HEADER, _timeline_rows(account))
        out = (
            Path(args.out) / f"{name}.png"
            if args.out
            else ResultsLayout.of(name, base=config_path.parent).timeline
        )
        plot_timeline(account, out, title=name)
        print(f"{out}: the same as a picture\n")
    return 0


def _timeline_rows(account: RunAccount) -> list[list[str]]:
    """One row per attempt, in seconds, then the run's totals."""
    rows = []
    for a in account.attempts:
        steps = f"{a.start_step}-{a.end_step}" + (f" (>={a.lost_steps} redone)" if a.lost_steps else "")
        outcome = a.outcome + (" (unplanned)" if a.unplanned else "")
        gap = "-" if a.gap_s is None else f"{a.gap_s:.1f}"
        seconds = [f"{a.seconds[c]:.1f}" for c in CATEGORIES]
        attempt = a.attempt + (f" ({a.nodes} node{'s' * (a.nodes > 1)})" if a.nodes else "")
        rows.append([str(a.segment), attempt, outcome, steps, f"{a.wall:.1f}", *seconds, gap])
    t = account.totals
    rows.append(
        ["all", "", "", "", f"{account.span_s:.1f}", *(f"{t[c]:.1f}" for c in CATEGORIES), f"{t['gap']:.1f}"]
    )
    return rows


def _percent(progress: float) -> str:
    """Rounded down: 39.9 of 40 epochs is 99 %, not 100 % (which says finished)."""
    return f"{int(100 * progress + 1e-9)}%"


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
        for line in [header, *rows]:
            print("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
        return
    table = Table(show_edge=False, box=None, pad_edge=False)
    for h in header:
        table.add_column(h)
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)


def _policy(args: argparse.Namespace) -> int:
    spec: Any = args.policy
    if spec is None:
        spec = _effective(args).config.get("policy", "das5") if Path(args.config).is_file() else "das5"
    policy = policy_from_spec(spec)
    tz = getattr(policy, "tz", None)
    at = _at(args.at, tz)
    if tz:  # show the policy's own wall clock
        at = at.astimezone(ZoneInfo(tz))
    if policy is None:
        print("policy 'none': no time limit")
        return 0
    limit = policy(at)
    # in UTC: wall-clock arithmetic in a zone with DST puts the end an hour off across the switch
    end = (at.astimezone(timezone.utc) + limit).astimezone(at.tzinfo)
    print(f"at          {at:%a %Y-%m-%d %H:%M %Z}")
    print(f"time limit  {format_duration(limit.total_seconds())} ({int(limit.total_seconds() // 60)} min)")
    print(f"job ends    {end.astimezone(at.tzinfo):%a %Y-%m-%d %H:%M %Z}")
    change = policy.next_change(at)
    if change is not None:
        print(
            f"next change {change:%a %Y-%m-%d %H:%M %Z} (then {format_duration(policy(change).total_seconds())})"
        )
    return 0


def _plot(args: argparse.Namespace) -> int:
    from batcher.workflow.plots import plot_run, plot_summary

    config_path = Path(args.config)
    exps = _experiments(args, None)
    out = Path(args.out)
    runs = {}
    for e in exps.values():
        metrics = RunLayout.of(e.name, e.run_id, base=config_path.parent).metrics
        if metrics.exists():
            n = plot_run(metrics, out / f"{e.name}.png", title=e.name)
            print(f"{out / f'{e.name}.png'}: {n} curve(s)")
            runs[e.name] = metrics
    if not runs:
        raise BatcherError("no experiment has logged metrics yet (runs/<exp>/<run>/metrics.jsonl)")
    n = plot_summary(runs, out / "summary.png", metric=args.metric)
    print(f"{out / 'summary.png'}: {n} curve(s) of {args.metric!r}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``batcher`` command line; return its exit status."""
    p = argparse.ArgumentParser(prog="batcher", description=_DESCRIPTION)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    config_help = "the workflow's config.yaml (default: %(default)s)"
    profile_help = (
        "the Snakemake profile the workflow runs with, e.g. profiles/das5: its settings (policy, "
        "...) count before config.yaml's, as in the workflow"
    )
    at_help = "ISO time with offset, e.g. 2026-11-27T19:59+01:00, or a duration from now, e.g. 12h"
    st = sub.add_parser("status", help="experiments from config.yaml: state, progress, ETA")
    st.add_argument("--config", default="config.yaml", help=config_help)
    st.add_argument("--profile", help=profile_help)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--policy", help="simulate the ETA under this policy (default: the config's)")
    st.add_argument("--at", help="pretend it is this time for the ETA: " + at_help + " (default: now)")
    tl = sub.add_parser("timeline", help="where each second of each run went, per segment; goodput")
    tl.add_argument("experiment", nargs="?", help="one experiment of config.yaml (default: all)")
    tl.add_argument("--config", default="config.yaml", help=config_help)
    tl.add_argument("--profile", help=profile_help)
    tl.add_argument("--json", action="store_true", help="machine-readable output (seconds, unix times)")
    tl.add_argument(
        "--out",
        help="folder for the pictures, <experiment>.png (default: results/<experiment>/timeline.png)",
    )
    po = sub.add_parser("policy", help="the time limit a policy gives now or at --at")
    po.add_argument("--policy", help="spec such as das5, fixed:15m (default: the config's, else das5)")
    po.add_argument("--at", help=at_help + " (default: now)")
    po.add_argument("--config", default="config.yaml", help=config_help)
    po.add_argument("--profile", help=profile_help)
    pl = sub.add_parser("plot", help="metric curves per experiment with segment boundaries, and a summary")
    pl.add_argument("--config", default="config.yaml", help=config_help)
    pl.add_argument("--profile", help=profile_help)
    pl.add_argument(
        "--out",
        default=str(ResultsLayout.across("plots")),
        help="folder for the PNG files (default: %(default)s)",
    )
    pl.add_argument("--metric", default="loss", help="metric compared in summary.png")
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv[:-1]):  # `--at -5h`: argparse would take -5h for an option
        if arg == "--at" and argv[i + 1].startswith("-"):
            argv[i : i + 2] = [f"--at={argv[i + 1]}"]
            break
    args = p.parse_args(argv)
    try:
        commands = {"status": _status, "timeline": _timeline, "policy": _policy, "plot": _plot}
        return int(commands[args.command](args))
    except BatcherError as exc:
        print(f"batcher {args.command}: {exc}", file=sys.stderr)
        return 2


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch-batcher")
    except PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


if __name__ == "__main__":
    sys.exit(main())
