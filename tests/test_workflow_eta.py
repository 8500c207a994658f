from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from batcher.limits.policy import Das5Policy, FixedPolicy
from batcher.workflow.eta import SegmentCost, simulate_finish

AMS = ZoneInfo("Europe/Amsterdam")
COST = SegmentCost(overhead_s=40, gap_s=30)


def test_friday_evening_start_finishes_sooner_than_monday_morning() -> None:
    work = 10 * 3600.0
    friday = datetime(2026, 11, 27, 20, 0, tzinfo=AMS)
    monday = datetime(2026, 11, 30, 8, 0, tzinfo=AMS)
    f_end, f_segments = simulate_finish(now=friday, remaining_train_s=work, policy=Das5Policy(), cost=COST)
    m_end, m_segments = simulate_finish(now=monday, remaining_train_s=work, policy=Das5Policy(), cost=COST)
    assert f_segments == 1 and f_end - friday == timedelta(seconds=work + 40)
    assert m_segments > 40  # 14-minute slots all day
    assert m_end - monday > f_end - friday


def test_fixed_policy_counts_slots_and_gaps() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=AMS)
    end, n = simulate_finish(
        now=now, remaining_train_s=250, policy=FixedPolicy(timedelta(seconds=100)), cost=COST
    )
    # 60 useful seconds per 100 s slot: 5 slots (4 full, then 10 s), 30 s gaps between them
    assert n == 5
    assert end - now == timedelta(seconds=4 * 130 + 10 + 40)


def test_nothing_left_is_now() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=AMS)
    assert simulate_finish(now=now, remaining_train_s=0, policy=None) == (now, 0)
