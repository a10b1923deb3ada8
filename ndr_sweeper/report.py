"""``ndr-sweeper report``: what the sweeps did lately, drawn rather than listed.

Pure: made from the journal and the runs (``StateDB.report_entries`` and
``sweep_runs_since``), no server. Per account: backscatter moved per day as a bar chart
(per week past 62 days), the servers that bounced most and the domains the forged mail was
sent to, the own bounces kept and the undetermined ones left for review. Lines are plain
text at most ``width`` columns, so they survive a pipe; colour is the renderer's business.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Final, Protocol

from .textsafe import printable

MOVED_STATES: Final = ("done", "copied")  # acted on, and still where the sweep put it
WEEKS_AFTER: Final = 62  # days: past this, one bar per week
TOP: Final = 5


class EntryLike(Protocol):
    @property
    def account(self) -> str: ...
    @property
    def started(self) -> datetime: ...
    @property
    def state(self) -> str: ...
    @property
    def bounce_domain(self) -> str | None: ...
    @property
    def recipient_domain(self) -> str | None: ...


class RunLike(Protocol):
    @property
    def account(self) -> str: ...
    @property
    def counts(self) -> dict[str, int]: ...


@dataclass
class AccountReport:
    account: str
    buckets: list[tuple[date, int]]  # first day of each bar (a day or a week), backscatter moved
    weekly: bool
    moved: int = 0
    undone: int = 0  # moved, then put back by undo
    servers: list[tuple[str, int]] = field(default_factory=list)
    recipient_domains: list[tuple[str, int]] = field(default_factory=list)
    own_kept: int = 0
    undetermined: int = 0
    sweeps: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "moved": self.moved,
            "undone": self.undone,
            "per_week" if self.weekly else "per_day": [
                {"date": d.isoformat(), "moved": n} for d, n in self.buckets
            ],
            "top_bouncing_servers": [{"domain": d, "count": n} for d, n in self.servers],
            "top_recipient_domains": [{"domain": d, "count": n} for d, n in self.recipient_domains],
            "own_kept": self.own_kept,
            "undetermined": self.undetermined,
            "sweeps": self.sweeps,
        }


def build(
    accounts: Sequence[str],
    entries: Iterable[EntryLike],
    runs: Iterable[RunLike],
    *,
    days: int,
    today: date,
    tz: tzinfo | None = None,
) -> list[AccountReport]:
    """One report per account, over the ``days`` days ending with ``today`` (local dates in
    ``tz``; None: the system's). Entries and runs of other accounts are ignored."""
    weekly = days > WEEKS_AFTER
    first = today - timedelta(days=days - 1)

    def bucket(d: date) -> date:
        return d - timedelta(days=(d - first).days % 7) if weekly else d

    starts: list[date] = []
    d = first
    while d <= today:
        if not starts or bucket(d) != starts[-1]:
            starts.append(bucket(d))
        d += timedelta(days=1)
    reports = {
        a: AccountReport(a, [(s, 0) for s in starts], weekly) for a in dict.fromkeys(accounts)
    }
    per: dict[str, Counter[date]] = {a: Counter() for a in reports}
    servers: dict[str, Counter[str]] = {a: Counter() for a in reports}
    rcpts: dict[str, Counter[str]] = {a: Counter() for a in reports}
    for e in entries:
        r = reports.get(e.account)
        if r is None:
            continue
        day = e.started.astimezone(tz).date()
        if not first <= day <= today:
            continue
        if e.state == "undone":
            r.undone += 1
        elif e.state not in MOVED_STATES:
            continue
        r.moved += 1
        per[e.account][bucket(day)] += 1
        servers[e.account][e.bounce_domain or "(unknown)"] += 1
        rcpts[e.account][e.recipient_domain or "(unknown)"] += 1
    for run in runs:
        r = reports.get(run.account)
        if r is None:
            continue
        r.sweeps += 1
        r.own_kept += int(run.counts.get("own", 0) or 0)
        r.undetermined += int(run.counts.get("undetermined", 0) or 0)
    for a, r in reports.items():
        r.buckets = [(s, per[a][s]) for s in starts]
        r.servers = _top(servers[a])
        r.recipient_domains = _top(rcpts[a])
    return list(reports.values())


def _top(counter: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]


def _cut(text: str, width: int) -> str:
    return printable(text, max_len=width)


def chart(r: AccountReport, width: int = 80, bar: str = "#") -> list[str]:
    """The bar chart: one line per day (or week), ``width`` columns at most."""
    peak = max((n for _d, n in r.buckets), default=0)
    count_w = max(len(str(peak)), 1)
    label_w = 16 if r.weekly else 15  # "2026-11-23 week " / "2026-11-27 Fri "
    room = max(width - label_w - count_w - 1, 1)
    lines = []
    for d, n in r.buckets:
        label = f"{d.isoformat()} {'week' if r.weekly else d.strftime('%a')}"
        length = 0 if n == 0 else max(1, round(n / peak * room))
        lines.append(f"{label:<{label_w}}{bar * length}{' ' * (room - length)} {n:>{count_w}}")
    return lines


def summary(r: AccountReport, days: int) -> list[str]:
    """The account's head lines."""
    undone = f" ({r.undone} put back by undo)" if r.undone else ""
    return [
        f"{r.account}: {r.moved} backscatter moved in the last {days} days{undone}",
        f"own bounces kept: {r.own_kept}   undetermined, left for review: {r.undetermined}"
        f"   sweeps: {r.sweeps}",
    ]


def tops(r: AccountReport, width: int = 80) -> list[str]:
    """The top bouncing servers and forged-recipient domains, side by side."""
    half = (width - 2) // 2
    left = ["top bouncing servers"] + [f"{n:>5}  {d}" for d, n in r.servers]
    right = ["top forged-recipient domains"] + [f"{n:>5}  {d}" for d, n in r.recipient_domains]
    rows = max(len(left), len(right))
    left += [""] * (rows - len(left))
    right += [""] * (rows - len(right))
    return [
        f"{_cut(a, half):<{half}}  {_cut(b, half)}".rstrip()
        for a, b in zip(left, right, strict=True)
    ]


def lines(r: AccountReport, days: int, width: int = 80, bar: str = "#") -> list[str]:
    out = [_cut(line, width) for line in summary(r, days)]
    if r.moved == 0 and r.undone == 0:
        out.append("no backscatter moved in this time")
        return out
    out.append("")
    out += chart(r, width, bar)
    out.append("")
    out += tops(r, width)
    return out
