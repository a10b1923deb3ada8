"""Spreading scheduled sweeps (ndr_sweeper/spread.py) and how the service uses it."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from hypothesis import given
from hypothesis import strategies as st

from ndr_sweeper import service as svc
from ndr_sweeper import spread
from ndr_sweeper.config import Account, Config

NAMES = [f"user{i}@example.org" for i in range(1000)]


def test_fraction_is_stable_and_in_range() -> None:
    values = [spread.fraction(n) for n in NAMES]
    assert values == [spread.fraction(n) for n in NAMES]  # the same on every call
    assert all(0.0 <= v < 1.0 for v in values)
    # blake2b of the name: the same in every process (unlike hash(), which is salted)
    assert spread.fraction("home") == spread.fraction("home")
    assert len(set(values)) == len(values)


def test_1000_accounts_every_minute_are_spread_over_the_minute() -> None:
    seconds = Counter(int(spread.fraction(n) * 60) for n in NAMES)
    assert len(seconds) == 60  # every second of the minute has some
    assert max(seconds.values()) <= 35  # ~17 a second on average; never the old 1,000


def test_first_runs_are_soon_for_few_and_spread_for_many() -> None:
    assert spread.first_run_delay("only", 1, 900.0) < spread.FIRST_RUN_STEP
    delays = [spread.first_run_delay(n, len(NAMES), 900.0) for n in NAMES]
    assert max(delays) <= len(NAMES) * spread.FIRST_RUN_STEP  # 50 s
    assert max(delays) - min(delays) > 45
    assert max(Counter(int(d) for d in delays).values()) <= 45  # about 20 a second
    # never later than one interval
    assert all(spread.first_run_delay(n, len(NAMES), 10.0) < 10.0 for n in NAMES)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


@given(
    every=st.sampled_from([0.2, 1.0, 60.0, 900.0, 3600.0]),
    frac=st.floats(0.0, 0.999999),
    start=st.floats(1.6e9, 1.9e9),
    jump=st.floats(0.0, 5000.0),
)
def test_phased_interval_fires_on_its_slots_only(
    every: float, frac: float, start: float, jump: float
) -> None:
    trig = spread.PhasedInterval(IntervalTrigger(seconds=every, timezone=UTC), frac)
    phase = frac * every

    def on_slot(t: datetime) -> bool:
        k = (t.timestamp() - phase) / every
        return abs(k - round(k)) * every < 1e-3

    first = trig.get_next_fire_time(None, _utc(start))
    assert first.timestamp() >= start - 1e-6 and first.timestamp() - start <= every + 1e-3
    assert on_slot(first)
    # after a run at its slot: the next slot, one interval on
    nxt = trig.get_next_fire_time(first, _utc(start))
    assert on_slot(nxt) and math.isclose(nxt.timestamp() - first.timestamp(), every, abs_tol=1e-3)
    # after a run at any other time (a watcher's, the first run): the next slot, never before
    other = _utc(start + jump)
    after = trig.get_next_fire_time(other, other)
    assert on_slot(after) and other < after <= other + timedelta(seconds=every + 1e-3)


def test_phased_interval_catches_up_like_apscheduler_does() -> None:
    """APScheduler collects missed runs by calling the trigger until it passes `now`: that
    must end (each time strictly later), and coalesce then runs once."""
    trig = spread.PhasedInterval(IntervalTrigger(seconds=60, timezone=UTC), 0.25)
    t = trig.get_next_fire_time(None, _utc(1.7e9))
    now = t + timedelta(hours=3)
    runs = []
    while t <= now:
        runs.append(t)
        t = trig.get_next_fire_time(t, now)
    assert len(runs) == 181 and runs == sorted(set(runs))


def test_cron_keeps_its_time_within_a_few_seconds() -> None:
    cron = CronTrigger(minute="0", hour="8", timezone=UTC)
    assert spread.spread(cron, "only", 1) is cron  # one cron account: exactly as configured
    now = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    offsets = []
    for name in NAMES[:200]:
        trig = spread.spread(cron, name, 200)
        when = trig.get_next_fire_time(None, now)
        offsets.append((when - datetime(2026, 3, 2, 8, 0, tzinfo=UTC)).total_seconds())
        again = trig.get_next_fire_time(when, when)  # the next day, same offset
        assert (again - when) == timedelta(days=1)
    assert min(offsets) >= 0 and max(offsets) <= spread.CRON_SPREAD
    assert statistics.pstdev(offsets) > 1.0  # spread, not all on the same second


def test_service_spreads_1000_accounts(tmp_path: Path) -> None:
    accounts = tuple(
        Account(name=n, host="127.0.0.1", username=n, every=60.0, min_age=0.0) for n in NAMES
    )
    cfg = Config(
        path=tmp_path / "c.toml",
        source="cli",
        accounts=accounts,
        state_dir=tmp_path / "state",
        max_parallel=4,
    )
    s = svc.Service(cfg, sweep=lambda *a, **k: None, mailbox_factory=lambda a: None)
    t0 = datetime.now(UTC)
    s.start()
    try:
        s._scheduler.pause()
        jobs = s._scheduler.get_jobs()
        first = [(j.next_run_time - t0).total_seconds() for j in jobs]
        # the first runs: over ~50 s, never more than ~45 in one second
        assert max(first) > 40 and max(first) <= 51
        assert max(Counter(int(x) for x in first).values()) <= 45
        # afterwards: each at its own second of the minute, stable across restarts
        for j in jobs[:50]:
            nxt = j.trigger.get_next_fire_time(j.next_run_time, j.next_run_time)
            slot = nxt.timestamp() % 60
            assert math.isclose(slot, spread.fraction(j.args[0]) * 60, abs_tol=1e-3)
    finally:
        s.stop()
