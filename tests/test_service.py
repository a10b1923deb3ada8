"""The service without a server: schedules, login backoff, shutdown, reload, watchers, status.

The sweep and the mailbox are fakes here; tests/test_service_imap.py runs the real thing.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ndr_sweeper import cli, logs
from ndr_sweeper import service as svc
from ndr_sweeper.config import Account, Config
from ndr_sweeper.errors import AuthenticationError, ConfigError, NdrSweeperError
from ndr_sweeper.state import account_lock, open_state
from ndr_sweeper.sweep import AccountResult, run_sweep


def account(name: str, **kw: object) -> Account:
    values: dict[str, object] = {"host": "127.0.0.1", "username": name, "min_age": 0.0}
    values.update(kw)
    return Account(name=name, **values)  # type: ignore[arg-type]


def config(tmp_path: Path, *accounts: Account, max_parallel: int = 4) -> Config:
    return Config(
        path=tmp_path / "config.toml",
        source="cli",
        accounts=accounts,
        state_dir=tmp_path / "state",
        max_parallel=max_parallel,
    )


class FakeMailbox:
    def __init__(self, client: object = None) -> None:
        self.client = client

    def logout(self) -> None:
        pass


RUN_SWEEP = inspect.signature(run_sweep)


class FakeSweep:
    """Stands in for sweep.run_sweep, with its signature: a call the real one would refuse
    fails here too (so a parameter added to the real sweep cannot be left out by the service
    unnoticed). Logs in through the factory, counts its calls."""

    def __init__(self, seconds: float = 0.0, refuse: set[str] | None = None) -> None:
        self.seconds = seconds
        self.refuse = refuse if refuse is not None else set()
        self.calls: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}
        self.active = 0
        self.max_active = 0
        self.arguments: list[dict[str, object]] = []
        self.by_mailbox: Counter[tuple[str, int, str]] = Counter()  # sweeps going, per mailbox
        self.max_by_mailbox = 0
        self._lock = threading.Lock()

    def mailbox(self, acc: Account) -> FakeMailbox:
        if acc.name in self.refuse:
            raise AuthenticationError(f"{acc.host} refused the login of {acc.username}")
        return FakeMailbox()

    def __call__(self, *args: object, **kwargs: object) -> AccountResult:
        bound = RUN_SWEEP.bind(*args, **kwargs)  # TypeError when the real one would refuse
        bound.apply_defaults()
        acc, state = bound.arguments["account"], bound.arguments["state"]
        factory, reporter = bound.arguments["mailbox_factory"], bound.arguments["reporter"]
        self.arguments.append(dict(bound.arguments))
        with account_lock(bound.arguments["config"].state_dir, acc.name):  # as run_sweep does
            return self._sweep(acc, state, factory, reporter)

    def _sweep(self, acc, state, factory, reporter) -> AccountResult:  # type: ignore[no-untyped-def]
        mailbox = (acc.host, acc.port, acc.username)
        with self._lock:
            self.by_mailbox[mailbox] += 1
            self.max_by_mailbox = max(self.max_by_mailbox, self.by_mailbox[mailbox])
        try:
            return self._sweep_one(acc, state, factory, reporter)
        finally:
            with self._lock:
                self.by_mailbox[mailbox] -= 1

    def _sweep_one(self, acc, state, factory, reporter) -> AccountResult:  # type: ignore[no-untyped-def]
        with self._lock:
            self.calls[acc.name] += 1
            self.times.setdefault(acc.name, []).append(time.monotonic())
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        result = AccountResult(
            acc.name, run_id=state.start_run(acc.name, dry_run=False, command="t")
        )
        try:
            reporter.stage(acc.name, "connecting")
            factory(acc)
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline:
                reporter.stage(acc.name, "scanning INBOX")
                time.sleep(0.02)
            result.scanned = 3
            result.backscatter = 1
            result.acted = 1
        except NdrSweeperError as exc:  # as sweep_account does
            result.error = str(exc)
        finally:
            with self._lock:
                self.active -= 1
        return result


def wait_until(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@pytest.fixture
def make_service():
    started: list[svc.Service] = []

    def make(cfg: Config, fake: FakeSweep, **kw: object) -> svc.Service:
        s = svc.Service(cfg, sweep=fake, mailbox_factory=fake.mailbox, **kw)  # type: ignore[arg-type]
        s.start()
        started.append(s)
        return s

    yield make
    for s in started:
        if not s.stopping.is_set():
            s.stop()


# ---------------------------------------------------------------- schedules


def test_triggers_every_cron_and_default() -> None:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    trig, grace, text = svc.build_trigger(account("a", every=30.0))
    assert isinstance(trig, IntervalTrigger) and trig.interval == timedelta(seconds=30)
    assert grace >= 30 and text == "every 30s"
    trig, grace, text = svc.build_trigger(account("a"))
    assert trig.interval == timedelta(minutes=15) and text == "every 15m"
    assert grace >= 15 * 60  # a machine that slept runs the missed sweep once on waking
    trig, grace, text = svc.build_trigger(account("a", cron="0 8 * * 1-5"))
    assert isinstance(trig, CronTrigger) and text == "cron 0 8 * * 1-5"
    # crontab counts 0 as Sunday, APScheduler 3 as Monday: Friday 2026-11-27 08:00 is next
    # after Thursday evening, and Saturday/Sunday are skipped.
    tz = trig.timezone
    thu = datetime(2026, 11, 26, 20, 0, tzinfo=tz)
    assert trig.get_next_fire_time(None, thu).replace(tzinfo=None) == datetime(2026, 11, 27, 8, 0)
    sat = datetime(2026, 11, 28, 9, 0, tzinfo=tz)
    assert trig.get_next_fire_time(None, sat).replace(tzinfo=None) == datetime(2026, 11, 30, 8, 0)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("sat,sun", "sun,sat"),
        ("Mon-Wed", "mon,tue,wed"),
    ],
)
def test_cron_day_of_week_is_crontab_numbering(field: str, expected: str) -> None:
    assert svc.cron_day_of_week(field) == expected


def test_cron_with_day_of_month_and_day_of_week_runs_when_either_matches() -> None:
    """As cron does (crontab(5)): "0 3 1,15 * 1" is 03:00 on the 1st, the 15th and every
    Monday. APScheduler alone wanted both, so the first run came months late."""
    trig, _grace, _text = svc.build_trigger(account("a", cron="0 3 1,15 * 1"))
    tz = getattr(trig, "timezone", None) or trig.triggers[0].timezone
    t = datetime(2026, 12, 2, 12, 0, tzinfo=tz)  # a Wednesday
    fires = []
    for _ in range(5):
        t = trig.get_next_fire_time(None, t + timedelta(seconds=1))
        fires.append(t.replace(tzinfo=None))
    assert fires == [
        datetime(2026, 12, 7, 3, 0),  # Monday
        datetime(2026, 12, 14, 3, 0),  # Monday
        datetime(2026, 12, 15, 3, 0),  # the 15th
        datetime(2026, 12, 21, 3, 0),
        datetime(2026, 12, 28, 3, 0),
    ]
    # only one of them restricted: as before
    trig, _grace, _text = svc.build_trigger(account("a", cron="0 3 1,15 * *"))
    first = trig.get_next_fire_time(None, datetime(2026, 12, 2, 12, 0, tzinfo=trig.timezone))
    assert first.replace(tzinfo=None) == datetime(2026, 12, 15, 3, 0)


def test_unschedulable_cron_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot be scheduled"):
        svc.build_trigger(account("a", cron="99 * * * *"))


def test_jobs_have_no_overlap_and_coalesce(tmp_path: Path, make_service) -> None:
    fake = FakeSweep()
    s = make_service(config(tmp_path, account("a", every=3600.0), max_parallel=3), fake)
    job = s._scheduler.get_job("sweep:a")
    assert job.max_instances == 1 and job.coalesce is True and job.misfire_grace_time >= 3600
    assert s._scheduler._lookup_executor("default")._pool._max_workers == 3


# ---------------------------------------------------------------- runs


def test_runs_each_account_at_start_and_records_status(tmp_path: Path, make_service) -> None:
    fake = FakeSweep()
    cfg = config(tmp_path, account("a", every=3600.0), account("b", every=3600.0))
    s = make_service(cfg, fake)
    assert wait_until(lambda: fake.calls["a"] == 1 and fake.calls["b"] == 1)
    assert wait_until(lambda: len(open_state(cfg.state_dir).account_status()) == 2)
    with open_state(cfg.state_dir) as state:
        rows = {r.account: r for r in state.account_status()}
    assert rows["a"].counts["backscatter"] == 1 and rows["a"].error is None
    assert rows["a"].next_run is not None and rows["a"].next_run > datetime.now(UTC)
    assert s.stop() is True
    with open_state(cfg.state_dir) as state:
        assert all(r.next_run is None for r in state.account_status())  # not scheduled now


def test_max_parallel_bounds_concurrent_sweeps(tmp_path: Path, make_service) -> None:
    fake = FakeSweep(seconds=0.3)
    accounts = [account(f"acc{i}", every=3600.0) for i in range(4)]
    make_service(config(tmp_path, *accounts, max_parallel=2), fake)
    assert wait_until(lambda: sum(fake.calls.values()) == 4)
    assert fake.max_active == 2


def test_disabled_accounts_are_not_scheduled(tmp_path: Path, make_service) -> None:
    fake = FakeSweep()
    s = make_service(config(tmp_path, account("a"), account("off", enabled=False)), fake)
    assert s._scheduler.get_job("sweep:off") is None
    assert wait_until(lambda: fake.calls["a"] == 1)


def test_locked_account_is_skipped_with_a_log_line(tmp_path: Path, make_service, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ndr_sweeper")
    fake = FakeSweep()
    cfg = config(tmp_path, account("a", every=3600.0))
    with account_lock(cfg.state_dir, "a"):
        make_service(cfg, fake)
        assert wait_until(lambda: "skipped this run" in caplog.text)
    assert fake.calls["a"] == 0


def test_refused_login_backs_off_and_is_reported_once(tmp_path: Path, make_service, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="ndr_sweeper")
    fake = FakeSweep(refuse={"bad"})
    cfg = config(tmp_path, account("good", every=0.1), account("bad", every=0.1))
    make_service(cfg, fake, auth_backoff=(0.4, 0.8))
    time.sleep(2.0)
    # Every 0.1 s for 2 s would be ~20 logins; backing off 0.4, 0.8, 0.8 ... leaves a handful.
    assert 2 <= fake.calls["bad"] <= 5
    assert fake.calls["good"] >= 5  # one failing account never stops the others (~20 if idle)
    bad = [r for r in caplog.records if r.getMessage().startswith("bad:")]
    assert [r.levelname for r in bad].count("ERROR") == 1
    assert any(r.levelname == "DEBUG" and "refused again" in r.getMessage() for r in bad)
    assert not [r for r in bad if r.levelname == "INFO" and "scanned" in r.getMessage()]
    fake.refuse.clear()  # the user fixed the password
    assert wait_until(lambda: "bad: login works again" in caplog.text, timeout=10)
    assert [r.levelname for r in caplog.records if r.getMessage().startswith("bad:")].count(
        "ERROR"
    ) == 1
    with open_state(cfg.state_dir) as state:
        assert wait_until(lambda: state.account_status("bad")[0].error is None, timeout=10)


def test_a_server_at_its_limit_is_not_a_wrong_password(
    tmp_path: Path, make_service, caplog
) -> None:
    """BusyError at login (the server closed the connection, NO [UNAVAILABLE], no file
    descriptor for password_command): reported once as such, tried again at the next run,
    never the hour-long back-off of a refused password."""
    from ndr_sweeper.errors import BusyError

    caplog.set_level(logging.DEBUG, logger="ndr_sweeper")

    class Full(FakeSweep):
        def mailbox(self, acc: Account) -> FakeMailbox:
            raise BusyError("127.0.0.1:143 closed the connection at login; not a password problem")

    fake = Full()
    make_service(config(tmp_path, account("a", every=0.1)), fake, auth_backoff=(60.0, 3600.0))
    assert wait_until(lambda: fake.calls["a"] >= 5)  # no back-off: every scheduled run tries
    assert "not trying again" not in caplog.text
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "closed the connection at login" in errors[0].getMessage()


def test_other_errors_are_reported_once_then_recovery(tmp_path: Path, make_service, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="ndr_sweeper")
    broken = {"on": True}

    class Flaky(FakeSweep):
        def mailbox(self, acc: Account) -> FakeMailbox:
            if broken["on"]:
                raise NdrSweeperError("cannot reach 127.0.0.1:1: connection refused")
            return FakeMailbox()

    fake = Flaky()
    make_service(config(tmp_path, account("a", every=0.1)), fake)
    assert wait_until(lambda: fake.calls["a"] >= 5)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "connection refused" in errors[0].getMessage()
    broken["on"] = False
    assert wait_until(lambda: "a: works again" in caplog.text)


def test_summary_line_per_run(tmp_path: Path, make_service, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ndr_sweeper")
    fake = FakeSweep()
    make_service(config(tmp_path, account("a", every=3600.0)), fake)
    assert wait_until(lambda: "a: scanned 3, NDRs 0, own 0, backscatter 1, acted 1" in caplog.text)


# ---------------------------------------------------------------- stopping


def test_stop_ends_sweeps_at_next_stage_without_pool_errors(
    tmp_path: Path, make_service, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeSweep(seconds=30)  # a long scan: stops at its next stage
    accounts = [account(f"a{i}", every=0.05) for i in range(3)]
    s = make_service(config(tmp_path, *accounts, max_parallel=2), fake)
    assert wait_until(lambda: fake.active == 2)
    time.sleep(0.3)  # triggers keep firing (and are skipped: max_instances) meanwhile
    t0 = time.monotonic()
    assert s.stop() is True
    assert time.monotonic() - t0 < 2
    time.sleep(0.3)  # anything queued in the pool runs (and does nothing) now
    assert "cannot schedule new futures" not in caplog.text
    assert "Error submitting job" not in caplog.text
    assert "stopped for shutdown" in caplog.text
    assert "a0: the previous sweep is still running: skipping this run" in caplog.text
    assert "maximum number of running instances" not in caplog.text
    assert sum(fake.calls.values()) == 2  # nothing new started


def test_a_stuck_sweep_is_reported_once_and_then_when_it_ends(
    tmp_path: Path, make_service, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeSweep(seconds=1.0)  # a sweep far longer than the schedule and its timeout
    make_service(config(tmp_path, account("a", every=0.05, timeout=0.5)), fake)
    assert wait_until(lambda: "the long sweep ended after" in caplog.text, timeout=10)
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "still running" in r.message
    ]
    assert len(warnings) == 1, [r.message for r in warnings]
    assert "a: the sweep started" in warnings[0].message and "timeout = 0.5s" in warnings[0].message
    assert "maximum number of running instances" not in caplog.text


def test_the_fake_sweep_has_the_real_signature(tmp_path: Path, make_service) -> None:
    """The service calls the one sweep every command uses (rules, lock, credentials); the
    fake accepts exactly what the real one accepts, and the service passes its config."""
    cfg = config(tmp_path, account("a", rules=(tmp_path / "r.toml",)))
    fake = FakeSweep()
    make_service(cfg, fake)
    assert wait_until(lambda: fake.calls["a"] == 1)
    (args,) = fake.arguments
    assert args["config"] is cfg and args["account"].rules == (tmp_path / "r.toml",)
    with pytest.raises(TypeError):
        fake(cfg, cfg.accounts[0], None, rule_hook=None)  # sweep_account's way: not this one
    assert "rule_hook" not in RUN_SWEEP.parameters  # rules come from the account, always


def test_stop_gives_up_waiting_after_timeout(tmp_path: Path, make_service, caplog) -> None:
    gate = threading.Event()

    class Stuck(FakeSweep):
        def _sweep(self, acc, state, factory, reporter):  # type: ignore[no-untyped-def]
            self.calls[acc.name] += 1
            gate.wait(10)  # e.g. a dead server, inside one network call
            return AccountResult(acc.name)

    fake = Stuck()
    s = make_service(config(tmp_path, account("a")), fake, stop_timeout=0.3)
    assert wait_until(lambda: fake.calls["a"] == 1)
    t0 = time.monotonic()
    assert s.stop() is False
    assert time.monotonic() - t0 < 1.5
    assert "still running" in caplog.text
    gate.set()


# ---------------------------------------------------------------- watch wake-ups


def test_requested_sweep_runs_before_the_schedule(tmp_path: Path, make_service) -> None:
    fake = FakeSweep()
    s = make_service(config(tmp_path, account("a", every=3600.0)), fake, watch_settle=0.0)
    assert wait_until(lambda: fake.calls["a"] == 1)
    t0 = time.monotonic()
    s.mail_arrived("a")
    assert wait_until(lambda: fake.calls["a"] == 2, timeout=10)
    assert time.monotonic() - t0 < 1.5


def test_requested_sweep_waits_for_min_age(tmp_path: Path, make_service) -> None:
    fake = FakeSweep()
    s = make_service(config(tmp_path, account("a", every=3600.0, min_age=0.8)), fake)
    assert wait_until(lambda: fake.calls["a"] == 1)
    t0 = time.monotonic()
    s.mail_arrived("a")  # arrival + min_age (+ settle 1 s)
    assert wait_until(lambda: fake.calls["a"] == 2, timeout=10)
    assert fake.times["a"][1] - t0 >= 0.8 + svc.WATCH_SETTLE - 0.05


def test_request_during_a_run_is_not_lost(tmp_path: Path, make_service) -> None:
    fake = FakeSweep(seconds=0.5)
    s = make_service(config(tmp_path, account("a", every=3600.0)), fake, watch_settle=0.0)
    assert wait_until(lambda: fake.active == 1)
    scheduled = s._scheduler.get_job("sweep:a").next_run_time
    s.request_sweep("a", datetime.now(UTC) + timedelta(seconds=0.7))  # after this run ends
    assert wait_until(lambda: fake.calls["a"] == 2, timeout=10)

    def on_schedule() -> bool:  # the account's place in the hour is kept
        nxt = s._scheduler.get_job("sweep:a").next_run_time
        return nxt > datetime.now(UTC) and round((nxt - scheduled).total_seconds(), 3) in (0, 3600)

    assert wait_until(on_schedule)  # and the schedule goes on as before


# ---------------------------------------------------------------- reload


def test_reload_reschedules_adds_and_removes(tmp_path: Path, make_service, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ndr_sweeper")
    fake = FakeSweep()
    s = make_service(config(tmp_path, account("a", every=3600.0), account("b", every=3600.0)), fake)
    assert wait_until(lambda: fake.calls["a"] == 1 and fake.calls["b"] == 1)
    s.reload(config(tmp_path, account("a", every=0.2), account("c", every=3600.0)))
    assert s._scheduler.get_job("sweep:b") is None
    assert s._scheduler.get_job("sweep:a").trigger.interval == timedelta(seconds=0.2)
    assert wait_until(lambda: fake.calls["a"] >= 4 and fake.calls["c"] == 1)
    assert "added c, changed a, removed b" in caplog.text


@pytest.mark.parametrize("change", ["rename", "state_dir"])
def test_reload_never_sweeps_one_mailbox_twice_at_once(
    tmp_path: Path, make_service, caplog, change: str
) -> None:
    """SIGHUP while a sweep runs, with the account renamed (or the state moved): the lock it
    holds has the old name (or lives in the old folder), so only the service can tell that
    the new job is the same mailbox. It waits for the sweep in progress."""
    caplog.set_level(logging.DEBUG, logger="ndr_sweeper")
    fake = FakeSweep(seconds=1.0)
    s = make_service(config(tmp_path, account("old", username="me", every=0.05)), fake)
    assert wait_until(lambda: fake.active == 1)
    if change == "rename":
        new = config(tmp_path, account("new", username="me", every=0.05))
    else:
        new = dataclasses.replace(
            config(tmp_path, account("old", username="me", every=0.05)),
            state_dir=tmp_path / "elsewhere",
        )
    s.reload(new)
    name = "new" if change == "rename" else "old"
    assert wait_until(lambda: fake.calls[name] >= (1 if change == "rename" else 2), timeout=10)
    assert fake.max_by_mailbox == 1, "two sweeps of one mailbox at the same time"


def test_reload_without_enabled_accounts_keeps_the_old(tmp_path: Path, make_service) -> None:
    fake = FakeSweep()
    s = make_service(config(tmp_path, account("a", every=3600.0)), fake)
    with pytest.raises(ConfigError):
        s.reload(config(tmp_path, account("a", enabled=False)))
    assert s._scheduler.get_job("sweep:a") is not None


def test_serve_handles_sighup_and_sigterm(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ndr_sweeper")
    fake = FakeSweep()
    s = svc.Service(
        config(tmp_path, account("a", every=3600.0)), sweep=fake, mailbox_factory=fake.mailbox
    )
    loads = iter(
        [
            ConfigError("config.toml: line 3: invalid TOML"),
            config(tmp_path, account("a", every=0.1)),
        ]
    )

    def loader() -> Config:
        item = next(loads)
        if isinstance(item, Exception):
            raise item
        return item

    def signals() -> None:
        wait_until(lambda: fake.calls["a"] == 1)
        os.kill(os.getpid(), signal.SIGHUP)  # bad file: logged, old one kept
        time.sleep(0.8)
        os.kill(os.getpid(), signal.SIGHUP)  # every 0.1 s now
        wait_until(lambda: fake.calls["a"] >= 4)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=signals, daemon=True).start()
    t0 = time.monotonic()
    assert svc.serve(s, loader) is True
    assert time.monotonic() - t0 < 8
    assert "keeping the running configuration" in caplog.text
    assert "configuration reloaded" in caplog.text
    assert fake.calls["a"] >= 4
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------- logging and status


def test_cli_has_run_and_status() -> None:
    """cli.py must wire `run` and `status` (the service's report gives the lines)."""
    from ndr_sweeper import cli

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "run" in sub.choices and "status" in sub.choices, "cli.py has no run/status yet"
    args = cli.build_parser().parse_args(["status", "--config", "x.toml", "--json"])
    assert args.config == "x.toml" and args.json is True
    args = cli.build_parser().parse_args(["run", "--config", "x.toml"])
    assert args.config == "x.toml" and args.log_level is None


def test_plain_log_lines_when_not_a_terminal(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    with open(tmp_path / "log", "w") as f:
        try:
            handler = logs.setup_service("info", stream=f)
            assert handler.formatter._fmt == logs.PLAIN_FORMAT
            assert logging.getLogger("apscheduler").getEffectiveLevel() == logging.WARNING
            logging.getLogger("ndr_sweeper.service").info("a: scanned %d", 5)
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
            logging.getLogger("apscheduler").setLevel(logging.NOTSET)
    line = (tmp_path / "log").read_text().strip()
    assert line.endswith(" INFO ndr_sweeper.service: a: scanned 5")


def write_toml(path: Path, state_dir: Path) -> Path:
    path.write_text(
        f'state_dir = "{state_dir}"\n'
        '[[accounts]]\nname = "work"\nhost = "127.0.0.1"\nusername = "me"\nevery = "5m"\n'
        '[[accounts]]\nname = "home"\nhost = "127.0.0.1"\nusername = "me"\n'
        'cron = "*/30 * * * *"\nwatch = true\n'
    )
    return path


def test_status_table_and_json(tmp_path: Path, capsys) -> None:
    cfg = write_toml(tmp_path / "config.toml", tmp_path / "state")
    last = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    with open_state(tmp_path / "state") as state:
        state.set_account_status(
            "work",
            last,
            {"scanned": 12, "ndrs": 3, "own": 1, "backscatter": 2, "acted": 2},
            None,
            last + timedelta(minutes=5),
            run_id="r1",
        )
    assert cli.cmd_status(argparse.Namespace(config=str(cfg), json=True)) == 0
    doc = {r["account"]: r for r in json.loads(capsys.readouterr().out)}
    assert doc["work"]["counts"]["backscatter"] == 2
    assert doc["work"]["last_run"] == last.isoformat()
    assert doc["work"]["next_run"] == (last + timedelta(minutes=5)).isoformat()
    assert doc["work"]["schedule"] == "every 5m"
    assert (
        doc["home"]["last_run"] is None and doc["home"]["schedule"] == "cron */30 * * * * + watch"
    )
    assert cli.cmd_status(argparse.Namespace(config=str(cfg), json=False)) == 0
    out = capsys.readouterr().out
    assert "work" in out and "home" in out and "never" in out and "not scheduled" in out


def test_endless_new_mail_reports_keep_a_few_wakeups(tmp_path: Path, make_service) -> None:
    """A server that reports new mail without end (EXISTS after EXPUNGE) does not grow the
    wake-up list by one entry a report: each settle time keeps one."""
    fake = FakeSweep()
    s = make_service(config(tmp_path, account("a", every=3600.0, min_age=600.0)), fake)
    assert wait_until(lambda: fake.calls["a"] == 1)
    for _ in range(20_000):
        s.mail_arrived("a")
    assert 1 <= len(s._accounts["a"].wakeups) <= 3
