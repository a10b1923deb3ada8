"""Spreading scheduled sweeps so that many accounts do not all start in the same second.

Each account gets a stable fraction of its interval from a hash of its name (the same on every
start, whatever the other accounts are called):

- ``every`` accounts run at ``phase + k * interval`` on the wall clock, ``phase`` being that
  fraction of the interval: 1,000 accounts ``every = "1m"`` start at about 17 a second, not
  all on the minute. A sweep asked for by a watcher runs when asked and leaves the phase
  alone.
- ``cron`` accounts keep their wall-clock times; when several share the service each is moved
  by at most ``CRON_SPREAD`` seconds (stable too).
- The first run after start is spread over ``FIRST_RUN_STEP`` seconds per account (at most
  one interval): one account still runs at once, 1,000 start within 50 s.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta
from typing import Any, Final

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

FIRST_RUN_STEP: Final = 0.05  # seconds of first-run spread per account
CRON_SPREAD: Final = 5.0  # the most a cron run is moved
_EPSILON: Final = 1e-4  # seconds: a fire time this close to the previous one is the same


def fraction(name: str) -> float:
    """A stable number in [0, 1) for an account name."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def first_run_delay(name: str, accounts: int, interval: float | None) -> float:
    """Seconds from start to the account's first run, *accounts* starting together."""
    window = max(accounts, 1) * FIRST_RUN_STEP
    if interval is not None:
        window = min(window, interval)
    return fraction(name) * window


def cron_offset(name: str, cron_accounts: int) -> float:
    """Seconds a cron account's runs are moved, *cron_accounts* sharing the service."""
    return fraction(name) * min(CRON_SPREAD, max(cron_accounts - 1, 0) * FIRST_RUN_STEP)


class PhasedInterval(IntervalTrigger):  # type: ignore[misc]
    """Fires at ``phase + k * interval`` seconds after the epoch, for whole numbers k.

    Unlike IntervalTrigger, the next time does not move when a run happened at another time
    (the first run after start, or a sweep a watcher asked for)."""

    __slots__ = ("phase",)

    def __init__(self, interval: IntervalTrigger, fraction_: float) -> None:
        super().__init__(
            seconds=interval.interval_length,
            timezone=interval.timezone,
            end_date=interval.end_date,
        )
        self.phase = (fraction_ % 1.0) * self.interval_length

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> Any:
        step = self.interval_length
        if previous_fire_time is not None:
            after = previous_fire_time.timestamp()
            k = math.floor((after - self.phase) / step) + 1
            while self.phase + k * step <= after + _EPSILON:
                k += 1
        else:
            k = math.ceil((now.timestamp() - self.phase) / step)
        when = self.phase + k * step
        if self.end_date is not None and when > self.end_date.timestamp():
            return None
        return datetime.fromtimestamp(when, tz=self.timezone)

    def __str__(self) -> str:
        return f"{super().__str__()} at +{self.phase:.1f}s"

    def __repr__(self) -> str:
        return f"<PhasedInterval (interval={self.interval!r}, phase={self.phase:.3f})>"


class Offset(BaseTrigger):  # type: ignore[misc]
    """Another trigger's fire times, *offset* seconds later."""

    __slots__ = ("inner", "offset")

    def __init__(self, inner: Any, offset: float) -> None:
        self.inner = inner
        self.offset = timedelta(seconds=offset)

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> Any:
        previous = previous_fire_time - self.offset if previous_fire_time else None
        when = self.inner.get_next_fire_time(previous, now - self.offset)
        return when + self.offset if when is not None else None

    def __str__(self) -> str:
        return f"{self.inner} +{self.offset.total_seconds():.1f}s"

    def __repr__(self) -> str:
        return f"<Offset {self.inner!r} +{self.offset.total_seconds():.3f}s>"


def spread(trigger: Any, name: str, cron_accounts: int) -> Any:
    """*trigger* (from ``service.build_trigger``) with the account's stable offset."""
    if isinstance(trigger, IntervalTrigger):
        return PhasedInterval(trigger, fraction(name))
    offset = cron_offset(name, cron_accounts)
    return Offset(trigger, offset) if offset > 0 else trigger
