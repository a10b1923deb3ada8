"""`ndr-sweeper report`: built from the journal and the runs only. The pure part (buckets,
counts, tops, the chart's width) on hand-made rows; then a real sweep of an in-memory
mailbox journals where each bounce came from, and the command draws it at 80 columns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndr_sweeper import report
from ndr_sweeper.actions import plan
from ndr_sweeper.actions.plan import address_domain
from ndr_sweeper.mailbox.memory import MemoryMailbox
from ndr_sweeper.state import open_state

import bounces
from test_sweep_imap import run_cli, xdg_dirs
from test_sweep_memory import NOW, OLD, sweep

TODAY = date(2026, 11, 27)


@dataclass
class E:
    account: str
    started: datetime
    state: str = "done"
    bounce_domain: str | None = "mx.example.net"
    recipient_domain: str | None = "example.net"


@dataclass
class R:
    account: str
    counts: dict[str, int] = field(default_factory=dict)


def at(days_ago: int, hour: int = 12) -> datetime:
    return datetime.combine(TODAY - timedelta(days=days_ago), datetime.min.time(), UTC).replace(
        hour=hour
    )


def test_counts_per_day_and_account() -> None:
    entries = [
        E("a", at(0)),
        E("a", at(0), bounce_domain="mx2.example.com", recipient_domain="victim.example"),
        E("a", at(2), state="undone"),
        E("a", at(2), state="failed"),  # never moved: not counted
        E("a", at(40)),  # before the window
        E("b", at(1), bounce_domain=None, recipient_domain=None),
        E("stranger", at(1)),  # not asked for
    ]
    runs = [R("a", {"own": 2, "undetermined": 1}), R("a", {"own": 1}), R("b", {})]
    a, b = report.build(["a", "b"], entries, runs, days=30, today=TODAY, tz=UTC)
    assert (a.moved, a.undone, a.own_kept, a.undetermined, a.sweeps) == (3, 1, 3, 1, 2)
    assert len(a.buckets) == 30 and a.buckets[-1] == (TODAY, 2)
    assert dict(a.buckets)[TODAY - timedelta(days=2)] == 1
    assert a.servers == [("mx.example.net", 2), ("mx2.example.com", 1)]
    assert a.recipient_domains[0] == ("example.net", 2)
    assert (b.moved, b.servers, b.recipient_domains) == (1, [("(unknown)", 1)], [("(unknown)", 1)])
    doc = json.loads(json.dumps(a.to_dict()))
    assert doc["per_day"][-1] == {"date": "2026-11-27", "moved": 2}


def test_long_windows_are_weekly() -> None:
    entries = [E("a", at(n)) for n in range(0, 90, 3)]
    (r,) = report.build(["a"], entries, [], days=90, today=TODAY, tz=UTC)
    assert r.weekly and len(r.buckets) == 13 and r.moved == 30
    assert sum(n for _d, n in r.buckets) == 30
    assert "per_week" in r.to_dict()


@pytest.mark.parametrize("width", [80, 60, 40])
def test_chart_fits_and_is_proportional(width: int) -> None:
    entries = [E("a", at(0))] * 1000 + [E("a", at(1))] * 500 + [E("a", at(3))]
    (r,) = report.build(["a"], entries, [], days=7, today=TODAY, tz=UTC)
    lines = report.lines(r, 7, width)
    assert all(len(line) <= width for line in lines), lines
    chart = report.chart(r, width)
    bars = [line.count("#") for line in chart]
    assert bars[-1] == 2 * bars[-2] or abs(bars[-1] - 2 * bars[-2]) <= 1
    assert bars[-4] == 1  # one message still shows
    assert bars[0] == 0 and chart[0].endswith(" 0")
    assert chart[-1].startswith("2026-11-27 Fri") and chart[-1].endswith("1000")


def test_hostile_and_long_domains_are_escaped_and_cut() -> None:
    evil = E("a", at(0), bounce_domain="x\x1b[2J" + "y" * 300, recipient_domain="z" * 300)
    (r,) = report.build(["a"], [evil], [], days=3, today=TODAY, tz=UTC)
    text = "\n".join(report.lines(r, 3, 80))
    assert "\x1b" not in text and all(len(line) <= 80 for line in text.splitlines())


@pytest.mark.parametrize(
    ("header", "domain"),
    [
        ("MAILER-DAEMON@mx.example.net (Mail Delivery System)", "mx.example.net"),
        ("Mail Delivery Subsystem <mailer-daemon@GoogleMail.com>", "googlemail.com"),
        ("postmaster@[192.0.2.1]", None),
        ("nobody", None),
        ('"evil" <x@exa"mple.com>', None),
        (None, None),
    ],
)
def test_address_domain(header, domain) -> None:
    assert address_domain(header) == domain


def test_a_sweep_journals_where_bounces_came_from_and_report_draws_it(tmp_path: Path) -> None:
    state_dir = tmp_path / "statedir"
    mb = MemoryMailbox()
    sent_id = bounces.new_id()
    mb.add_message("Sent", bounces.original(sent_id), internaldate=OLD)
    mb.add_message("INBOX", bounces.dsn(sent_id), internaldate=OLD)  # own: kept
    for i in range(5):
        raw = bounces.dsn(bounces.new_id("forged"), rcpt=f"u{i}@victim{i % 2}.example")
        if i == 4:
            raw = raw.replace(b"MAILER-DAEMON@mx.example.net", b"MAILER-DAEMON@mx.other.org")
        mb.add_message("INBOX", raw, internaldate=OLD)
    with open_state(state_dir) as state:
        result = sweep(mb, state, now=lambda: datetime.now(UTC))
        assert (result.acted, result.own) == (5, 1)
        rows = state.report_entries(NOW - timedelta(days=400))
    assert sorted((r.bounce_domain, r.recipient_domain) for r in rows) == [
        ("mx.example.net", "victim0.example"),
        ("mx.example.net", "victim0.example"),
        ("mx.example.net", "victim1.example"),
        ("mx.example.net", "victim1.example"),
        ("mx.other.org", "victim0.example"),
    ]

    xdg = xdg_dirs(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'state_dir = "{state_dir}"\n[[accounts]]\nname = "t"\nhost = "127.0.0.1"\n'
        'username = "u"\nsecurity = "plain"\n'
    )
    cfg.chmod(0o600)
    shown = run_cli(xdg, "report", "--config", str(cfg), env_extra={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "t: 5 backscatter moved in the last 30 days" in text
    assert "own bounces kept: 1" in text and "#" in text
    assert "mx.example.net" in text and "victim0.example" in text
    doc = json.loads(run_cli(xdg, "report", "--json", "--days", "7", "--config", str(cfg)).stdout)
    (acc,) = doc["accounts"]
    assert acc["moved"] == 5 and len(acc["per_day"]) == 7 and acc["per_day"][-1]["moved"] == 5
    assert acc["top_bouncing_servers"][0] == {"domain": "mx.example.net", "count": 4}
    bad = run_cli(xdg, "report", "--days", "0", "--config", str(cfg))
    assert bad.returncode == 2 and "--days" in bad.stderr


def _corpus_addresses() -> list[str]:
    """Every From, To and recipient value of the fixtures and the corpus, as the classifier
    reads them (what decide() asks address_domain about)."""
    import json

    from test_classify_corpus import corpus_dir

    from ndr_sweeper.classify import classify

    raws = [p.read_bytes() for p in (Path(__file__).parent / "fixtures" / "messages").glob("*.eml")]
    d = corpus_dir()
    if d is not None:
        for line in (d / "labels.jsonl").read_text().splitlines():
            raws.append((d / json.loads(line)["path"]).read_bytes())
    out: set[str] = set()
    for raw in raws:
        v = classify(raw)
        out.update(x for x in (v.from_, v.original.to, *(r.address for r in v.recipients)) if x)
    return sorted(out)


def test_the_quick_address_path_agrees_with_the_parser() -> None:
    values = _corpus_addresses()
    assert len(values) > 100
    quick = 0
    for value in values:
        assert address_domain(value) == plan._address_domain(value), value
        quick += plan._PLAIN_ADDRESS.fullmatch(value) is not None
    assert quick > len(values) // 3  # the quick path is the usual one


@given(
    st.lists(
        st.sampled_from(
            [
                "a",
                "Z",
                "0",
                "_",
                "-",
                ".",
                "@",
                "<",
                ">",
                " ",
                "\t",
                "%",
                "+",
                "=",
                '"',
                "(",
                ")",
                ",",
                ":",
                ";",
                "[",
                "]",
                "\\",
                "é",
                "mailer-daemon",
                "example.com",
                "x.y",
            ]
        ),
        max_size=14,
    ).map("".join)
)
@settings(max_examples=3000, deadline=None)
def test_the_quick_address_path_agrees_on_generated_headers(value: str) -> None:
    assert address_domain(value) == plan._address_domain(value) if value else True
