"""The background service (`ndr-sweeper run`) and its status (`ndr-sweeper status`).

One APScheduler 3 job per enabled account (``every`` -> interval, ``cron`` -> crontab, else
every 15 minutes), run in a thread pool of ``max_parallel`` workers. Each job holds the
account's lock, sweeps it, and records the outcome with ``StateDB.set_account_status``.
Jobs are spread over their interval (``spread``), so many accounts do not start at once.
``watch = true`` keeps one IMAP IDLE connection per swept folder, all of them in one thread
(``watch.WatchLoop``), and pulls the account's next run forward when mail arrives (to
arrival + ``min_age``). At start the open-file limit is raised to the hard limit; watched
folders beyond what it allows are not watched, in one warning (``fdlimit``).

Shutdown (SIGTERM/SIGINT) is ordered so APScheduler never submits to a closed pool: pause
the scheduler, remove the jobs (which waits for a job-processing pass in progress), tell
running sweeps to stop at their next stage (never while acting), wait for them on our own
count, then ``shutdown(wait=False)``. SIGHUP re-reads the configuration; a bad file is
logged and the running configuration kept.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ndr_sweeper.config import format_duration
from ndr_sweeper.errors import (
    AuthenticationError,
    ConfigError,
    CredentialError,
    Interrupted,
    LockedError,
    NdrSweeperError,
)

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from ndr_sweeper.config import Account, Config
    from ndr_sweeper.fdlimit import OpenFiles
    from ndr_sweeper.state import StateDB
    from ndr_sweeper.sweep import AccountResult
    from ndr_sweeper.watch import WatchLoop

log = logging.getLogger(__name__)
# The scheduler's own messages; passed to APScheduler, filtered by _SkippedRunFilter.
scheduler_log = logging.getLogger(f"{__name__}.scheduler")

DEFAULT_EVERY: Final = 15 * 60.0  # seconds, when an account has neither every nor cron
AUTH_BACKOFF: Final = (60.0, 3600.0)  # first wait after a refused login, and the cap
RECONNECT_BACKOFF: Final = (5.0, 300.0)  # IDLE reconnect: first wait and cap
IDLE_RENEW: Final = 600.0  # re-issue IDLE well before servers drop it (RFC 2177: 29 min)
WATCH_SETTLE: Final = 1.0  # after an arrival, wait this long so a burst makes one sweep
STOP_TIMEOUT: Final = 8.0  # how long shutdown waits for sweeps in progress
SAME_MAILBOX_RETRY: Final = 1.0  # a run that found its mailbox being swept tries again then

SweepFn = Callable[..., "AccountResult"]  # sweep.run_sweep, or a test double of it
MailboxFactory = Callable[["Account"], Any]


class ShuttingDown(Interrupted):
    """Raised between stages of a sweep when the service stops; the next run continues."""


# ---------------------------------------------------------------- schedules

_CRON_DAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _cron_day(token: str) -> int:
    t = token.lower()
    if t[:3] in _CRON_DAYS and t.isalpha():
        return _CRON_DAYS.index(t[:3])
    n = int(t)
    if not 0 <= n <= 7:
        raise ValueError(f"day of week {token!r} is not 0-7 or sun-sat")
    return n % 7


def cron_day_of_week(field_: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as APScheduler 3 day names.

    APScheduler 3 counts 0 as Monday (its issue #286), so numbers are never passed through.
    """
    if field_ in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field_.split(","):
        rng, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1
        if step < 1:
            raise ValueError(f"step {step_s!r} must be 1 or more")
        if rng in ("*", "?"):
            lo, hi = 0, 6
        elif "-" in rng:
            a, b = rng.split("-", 1)
            lo, hi = _cron_day(a), _cron_day(b)
            if b.strip() == "7":
                hi = 7
        else:
            lo = hi = _cron_day(rng)
            if step_s:
                hi = 6
        if hi < lo:
            raise ValueError(f"range {rng!r} goes backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_CRON_DAYS[d] for d in sorted(days))


def build_trigger(account: Account) -> tuple[Any, int, str]:
    """(APScheduler trigger, misfire grace in seconds, readable schedule) for an account.

    The grace covers the last missed run of a machine that slept: with coalesce that one
    run happens on wake-up, never the dozens it missed. Raises ConfigError.
    """
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if account.cron:
        parts = account.cron.replace("?", "*").split()

        def cron(day: str, day_of_week: str) -> Any:
            return CronTrigger(
                minute=parts[0],
                hour=parts[1],
                day=day,
                month=parts[3],
                day_of_week=cron_day_of_week(day_of_week),
            )

        try:
            if len(parts) != 5:
                raise ValueError(f"a crontab line has 5 fields, not {len(parts)}")
            if parts[2] != "*" and parts[4] != "*":
                # cron runs when EITHER the day of month or the day of week matches (crontab(5));
                # APScheduler's CronTrigger wants both: one trigger for each, either one fires.
                from apscheduler.triggers.combining import OrTrigger

                trigger = OrTrigger([cron(parts[2], "*"), cron("*", parts[4])])
            else:
                trigger = cron(parts[2], parts[4])
        except (ValueError, IndexError) as exc:
            raise ConfigError(
                f"account {account.name!r}: cron {account.cron!r} cannot be scheduled: {exc}"
            ) from None
        return trigger, 24 * 3600, f"cron {account.cron}"
    every = account.every or DEFAULT_EVERY
    return IntervalTrigger(seconds=every), max(int(every), 60), f"every {format_duration(every)}"


def schedule_text(account: Account) -> str:
    if account.cron:
        text = f"cron {account.cron}"
    else:
        text = f"every {format_duration(account.every or DEFAULT_EVERY)}"
    return text + (" + watch" if account.watch else "")


class _SkippedRunFilter(logging.Filter):
    """Drops APScheduler's WARNING (with its job repr) for a run skipped because the
    account's previous sweep is still going: the service gives its own account of it (told
    by the EVENT_JOB_MAX_INSTANCES event, not by this text), once at WARNING with how long
    the sweep has been going, then quietly."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in str(record.msg)


# ---------------------------------------------------------------- per-account runtime state


@dataclass
class _Runtime:
    """What the service knows about one account between runs (guarded by ``lock``)."""

    account: Account
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: bool = False
    running_since: float = 0.0  # time.monotonic() when the sweep in progress began
    stuck_reported: bool = False  # a skipped run was reported for the sweep in progress
    wakeups: list[datetime] = field(default_factory=list)  # sweeps asked for by watchers
    auth_failures: int = 0
    auth_retry_at: float = 0.0  # time.monotonic() before which logins are not tried
    last_error: str | None = None  # reported once; repeats go to DEBUG

    @property
    def job_id(self) -> str:
        return f"sweep:{self.account.name}"


class _StopReporter:
    """A Reporter that ends a sweep at its next stage once the service stops.

    Never after the "acting" stage has begun: a batch and its journal entries finish.
    """

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._acting = False

    def _check(self) -> None:
        if self._stopping.is_set() and not self._acting:
            raise ShuttingDown("the service is stopping: this sweep ends here, the next continues")

    def stage(self, account: str, name: str, total: int | None = None) -> None:
        self._check()
        if name == "acting":
            self._acting = True

    def advance(self, n: int = 1) -> None:
        self._check()

    @property
    def stopping(self) -> threading.Event:
        return self._stopping


# ---------------------------------------------------------------- the service


class Service:
    """Schedules and runs the sweeps; `serve` adds signals around it."""

    def __init__(
        self,
        config: Config,
        *,
        sweep: SweepFn | None = None,
        mailbox_factory: MailboxFactory | None = None,
        auth_backoff: tuple[float, float] = AUTH_BACKOFF,
        reconnect_backoff: tuple[float, float] = RECONNECT_BACKOFF,
        idle_renew: float = IDLE_RENEW,
        watch_settle: float = WATCH_SETTLE,
        stop_timeout: float = STOP_TIMEOUT,
        watch_connectors: int | None = None,
        watch_connect_rate: float | None = None,
        open_file_limit: Callable[[], OpenFiles | None] | None = None,
    ) -> None:
        if sweep is None:
            from ndr_sweeper.sweep import run_sweep as sweep
        if mailbox_factory is None:
            from ndr_sweeper.connect import open_mailbox as mailbox_factory
        self.config = config
        self._sweep = sweep
        self._mailbox_factory = mailbox_factory
        self.auth_backoff = auth_backoff
        self.reconnect_backoff = reconnect_backoff
        self.idle_renew = idle_renew
        self.watch_settle = watch_settle
        self.stop_timeout = stop_timeout
        self.stopping = threading.Event()
        self._accounts: dict[str, _Runtime] = {}
        from ndr_sweeper import fdlimit, watch

        self._watch_connectors = watch_connectors or watch.CONNECTORS
        self._watch_connect_rate = watch_connect_rate or watch.CONNECT_RATE
        self._open_file_limit = open_file_limit or fdlimit.raise_open_file_limit
        self._open_files: OpenFiles | None = None
        self._watch: WatchLoop | None = None  # created with the first watched folder
        self._watched: dict[str, int] = {}  # account -> folders handed to the loop
        self._inflight = 0
        self._inflight_cond = threading.Condition()
        # Mailboxes being swept, by (host, port, username), and by which account: the file lock
        # is named after the account and lives in state_dir, so after a reload that renamed an
        # account or moved the state, only this tells that a new job is the same mailbox.
        self._sweeping: dict[tuple[str, int, str], str] = {}
        self._sweeping_lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None

    # --- lifecycle

    @property
    def started(self) -> bool:
        return self._scheduler is not None

    def start(self) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        from ndr_sweeper.state import open_state

        accounts = self.config.select(None)
        triggers = {a.name: build_trigger(a) for a in accounts}
        with open_state(self.config.state_dir):  # fail now, not in every job, when unusable
            pass
        self._skip_filter = _SkippedRunFilter()
        scheduler_log.addFilter(self._skip_filter)
        self._raise_open_file_limit()
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(self.config.max_parallel)},
            job_defaults={"coalesce": True, "max_instances": 1},
            logger=scheduler_log,
        )
        self._scheduler.add_listener(
            lambda event: self._skipped(event.job_id.removeprefix("sweep:")),
            EVENT_JOB_MAX_INSTANCES,
        )
        for acc in accounts:
            self._accounts[acc.name] = _Runtime(acc)
        for acc in accounts:  # once all are known: the spread counts them
            self._add_job(acc, triggers[acc.name], starting=len(accounts))
        self._scheduler.start()
        self._start_all_watchers(accounts)
        log.info(
            "started: %d account(s) (%s), up to %d at a time",
            len(accounts),
            "; ".join(f"{a.name}: {schedule_text(a)}" for a in accounts),
            self.config.max_parallel,
        )

    def stop(self) -> bool:
        """Stop everything; True when no sweep was left running after ``stop_timeout``."""
        self.stopping.set()
        self._stop_all_watchers()
        sched = self._scheduler
        if sched is not None and sched.running:
            sched.pause()
            # Takes the job store lock: a job-processing pass in progress finishes first,
            # and none can submit afterwards (what makes shutdown(wait=True) race).
            sched.remove_all_jobs()
        deadline = time.monotonic() + self.stop_timeout
        with self._inflight_cond:
            while self._inflight and (left := deadline - time.monotonic()) > 0:
                self._inflight_cond.wait(left)
            clean = self._inflight == 0
        if not clean:
            log.warning(
                "%d sweep(s) still running after %gs: leaving them; the journal lets the next "
                "run finish what they started",
                self._inflight,
                self.stop_timeout,
            )
        if sched is not None and sched.running:
            sched.shutdown(wait=False)
        self._record_stopped()
        scheduler_log.removeFilter(self._skip_filter)
        log.info("stopped")
        return clean

    def reload(self, config: Config) -> None:
        """Apply a new configuration; ConfigError (the old one stays) when it cannot be."""
        assert self._scheduler is not None
        accounts = {a.name: a for a in config.select(None)}
        triggers = {n: build_trigger(a) for n, a in accounts.items()}
        added, changed, removed = [], [], []
        for name in list(self._accounts):
            if name not in accounts:
                removed.append(name)
                self._stop_watchers(name)
                with contextlib.suppress(Exception):
                    self._scheduler.remove_job(self._accounts[name].job_id)
                del self._accounts[name]
        for name, acc in accounts.items():
            rt = self._accounts.get(name)
            if rt is not None and rt.account == acc:
                continue
            if rt is None:
                added.append(name)
                self._accounts[name] = _Runtime(acc)
            else:
                changed.append(name)
                self._stop_watchers(name)
                with rt.lock:
                    rt.account = acc
                    rt.auth_failures, rt.auth_retry_at = 0, 0.0
            self._add_job(acc, triggers[name])
            self._start_watchers(acc)
        if config.max_parallel != self.config.max_parallel:
            log.warning(
                "max_parallel changed from %d to %d: that takes effect when the service restarts",
                self.config.max_parallel,
                config.max_parallel,
            )
        self.config = config
        log.info(
            "configuration reloaded: %d account(s); added %s, changed %s, removed %s",
            len(accounts),
            ", ".join(added) or "none",
            ", ".join(changed) or "none",
            ", ".join(removed) or "none",
        )

    # --- scheduling

    def _add_job(self, acc: Account, trigger_info: tuple[Any, int, str], starting: int = 1) -> None:
        """Schedule ``acc``: its runs at its stable place in the interval (``spread``), the
        first one soon, spread over ``starting`` accounts that start together."""
        from ndr_sweeper import spread

        assert self._scheduler is not None
        trigger, grace, _ = trigger_info
        crons = sum(1 for rt in self._accounts.values() if rt.account.cron)
        interval = getattr(trigger, "interval_length", None)
        first = spread.first_run_delay(acc.name, starting, interval)
        self._scheduler.add_job(
            self._run_job,
            spread.spread(trigger, acc.name, crons),
            args=[acc.name],
            id=f"sweep:{acc.name}",
            name=f"sweep {acc.name}",
            replace_existing=True,
            next_run_time=datetime.now(UTC) + timedelta(seconds=first),
            misfire_grace_time=grace,
            coalesce=True,
            max_instances=1,
        )

    def next_run(self, name: str) -> datetime | None:
        rt = self._accounts.get(name)
        if rt is None or self._scheduler is None or self.stopping.is_set():
            return None
        job = self._scheduler.get_job(rt.job_id)
        nxt: datetime | None = job.next_run_time if job is not None else None
        wait = rt.auth_retry_at - time.monotonic()
        if nxt is not None and wait > 0:
            nxt = max(nxt, datetime.now(UTC) + timedelta(seconds=wait))
        return nxt

    def request_sweep(self, name: str, at: datetime) -> None:
        """Sweep ``name`` at ``at`` (or sooner): what a watcher asks for when mail arrives.
        A sweep already asked for within ``watch_settle`` before ``at`` takes this mail too
        (it is old enough by then): a server that reports new mail without end keeps one
        wake-up per settle time, not one per report."""
        rt = self._accounts.get(name)
        if rt is None or self.stopping.is_set():
            return
        with rt.lock:
            last = rt.wakeups[-1] if rt.wakeups else None
            if last is not None and at - timedelta(seconds=self.watch_settle) <= last <= at:
                return
            rt.wakeups.append(at)
            if rt.running:
                return  # the run in progress reschedules when it ends
        self._reschedule(rt)

    def mail_arrived(self, name: str) -> None:
        rt = self._accounts.get(name)
        if rt is None:
            return
        at = datetime.now(UTC) + timedelta(seconds=rt.account.min_age + self.watch_settle)
        log.debug("%s: new mail: sweeping at %s", name, at.astimezone().strftime("%H:%M:%S"))
        self.request_sweep(name, at)

    def _reschedule(self, rt: _Runtime) -> None:
        with rt.lock:
            if not rt.wakeups:
                return
            earliest = min(rt.wakeups)
        sched = self._scheduler
        if sched is None or self.stopping.is_set():
            return
        job = sched.get_job(rt.job_id)
        if job is None:
            return
        if job.next_run_time is None or earliest < job.next_run_time:
            with contextlib.suppress(Exception):  # removed meanwhile (reload, shutdown)
                job.modify(next_run_time=earliest)

    # --- one run

    def _run_job(self, name: str) -> None:
        if self.stopping.is_set():
            return
        rt = self._accounts.get(name)
        if rt is None:
            return
        with self._inflight_cond:
            self._inflight += 1
        try:
            self._run_account(rt)
        except Exception:  # a bug in one account's run must not stop the service
            log.exception("%s: the run failed unexpectedly", name)
        finally:
            with self._inflight_cond:
                self._inflight -= 1
                self._inflight_cond.notify_all()

    def _run_account(self, rt: _Runtime) -> None:
        from ndr_sweeper.state import open_state

        started = datetime.now(UTC)
        with rt.lock:
            rt.running, rt.running_since, rt.stuck_reported = True, time.monotonic(), False
            rt.wakeups = [w for w in rt.wakeups if w > started]
            account = rt.account
        name = account.name
        mailbox = (
            (f"maildir:{account.maildir}", 0, "")
            if account.maildir is not None
            else (account.host.lower(), account.port, account.username)
        )
        with self._sweeping_lock:
            holder = self._sweeping.get(mailbox)
            if holder is None:
                self._sweeping[mailbox] = name
        if holder is not None:
            # One mailbox, two account names (a reload renamed it, or two entries name the same
            # mailbox): never two sweeps of it at once. This run comes back once that one ends.
            log.debug("%s: the same mailbox is being swept as %r: this run waits", name, holder)
            with rt.lock:
                rt.running = False
                rt.wakeups.append(datetime.now(UTC) + timedelta(seconds=SAME_MAILBOX_RETRY))
            self._reschedule(rt)
            return
        try:
            wait = rt.auth_retry_at - time.monotonic()
            if wait > 0:
                log.debug("%s: login was refused: not trying again for %.0fs", name, wait)
                return
            config = self.config
            try:
                with open_state(config.state_dir) as state:
                    self._sweep_with(rt, config, account, state, started)
            except LockedError as exc:
                log.info("%s: skipped this run: %s", name, exc)
            except NdrSweeperError as exc:
                self._report_error(rt, str(exc))
        finally:
            with self._sweeping_lock:
                self._sweeping.pop(mailbox, None)
            with rt.lock:
                rt.running = False
                pending = bool(rt.wakeups)
                stuck, took = rt.stuck_reported, time.monotonic() - rt.running_since
            if stuck:
                log.info("%s: the long sweep ended after %s", name, format_duration(round(took)))
            if pending:
                self._reschedule(rt)

    def _sweep_with(
        self, rt: _Runtime, config: Config, account: Account, state: StateDB, started: datetime
    ) -> None:
        auth_error: list[NdrSweeperError] = []

        def factory(acc: Account) -> Any:
            try:
                mb = self._mailbox_factory(acc)
            except (AuthenticationError, CredentialError) as exc:
                auth_error.append(exc)
                self._auth_failed(rt, exc)
                raise
            self._auth_ok(rt)
            return mb

        # The same sweep as `ndr-sweeper sweep` (rules, lock, credentials): only when it runs and
        # how its outcome is shown differ.
        result = self._sweep(
            config,
            account,
            state,
            reporter=_StopReporter(self.stopping),
            mailbox_factory=factory,
        )
        name = account.name
        if result.error and self.stopping.is_set() and not auth_error:
            log.info("%s: sweep stopped for shutdown; the next run continues", name)
            return
        if not auth_error:
            log.info(
                "%s: scanned %d, NDRs %d, own %d, backscatter %d, acted %d, undetermined %d, "
                "too young %d, errors %d (%.1fs)",
                name,
                result.scanned,
                result.ndrs,
                result.own,
                result.backscatter,
                result.acted,
                result.undetermined,
                result.too_young,
                result.errors + (1 if result.error else 0),
                result.seconds,
            )
            if result.error:
                self._report_error(rt, result.error)
            else:
                self._clear_error(rt)
            for note in result.notes:
                log.info("%s: note: %s", name, note)
        state.set_account_status(
            name,
            started,
            result.counts(),
            result.error,
            self.next_run(name),
            run_id=result.run_id,
        )

    def _skipped(self, name: str) -> None:
        """A scheduled run found the account's previous sweep still going (a slow first
        sweep, or a server that stopped answering: every command ends at its deadline)."""
        rt = self._accounts.get(name)
        if rt is None:
            return
        with rt.lock:
            took = time.monotonic() - rt.running_since
            # Overlapping a sweep that began moments ago (a watcher's wake-up) is no news; one
            # that outlasts a command's whole timeout is worth a line.
            first = rt.running and not rt.stuck_reported and took >= rt.account.timeout
            rt.stuck_reported = rt.stuck_reported or first
        if first:
            log.warning(
                "%s: the sweep started %s ago is still running (a large first sweep, or a server "
                "that stopped answering: each command gives up after timeout = %s); later runs "
                "wait for it",
                name,
                format_duration(round(took)),
                format_duration(rt.account.timeout),
            )
        else:
            log.debug("%s: the previous sweep is still running: skipping this run", name)

    # --- errors, reported once

    def _report_error(self, rt: _Runtime, text: str) -> None:
        with rt.lock:
            repeat = rt.last_error == text
            rt.last_error = text
        log.log(logging.DEBUG if repeat else logging.ERROR, "%s: %s", rt.account.name, text)

    def _clear_error(self, rt: _Runtime) -> None:
        with rt.lock:
            had, rt.last_error = rt.last_error, None
        if had is not None:
            log.info("%s: works again", rt.account.name)

    def _auth_failed(self, rt: _Runtime, exc: NdrSweeperError) -> None:
        first, cap = self.auth_backoff
        with rt.lock:
            rt.auth_failures += 1
            n = rt.auth_failures
            delay = min(first * 2 ** (n - 1), cap)
            rt.auth_retry_at = time.monotonic() + delay
            rt.last_error = str(exc)
        if n == 1:
            log.error(
                "%s: %s (not trying again for %s, then less and less often, up to every %s, "
                "so the server does not lock the account)",
                rt.account.name,
                exc,
                format_duration(delay),
                format_duration(cap),
            )
        else:
            log.debug(
                "%s: login refused again (%d times): next try in %s",
                rt.account.name,
                n,
                format_duration(delay),
            )

    def _auth_ok(self, rt: _Runtime) -> None:
        with rt.lock:
            n, rt.auth_failures, rt.auth_retry_at = rt.auth_failures, 0, 0.0
            if n:
                rt.last_error = None
        if n:
            log.info("%s: login works again (after %d refused attempt(s))", rt.account.name, n)

    def open_mailbox(self, name: str) -> Any:
        """Log in to ``name`` (for watchers), with the same refused-login bookkeeping."""
        rt = self._accounts[name]
        try:
            mb = self._mailbox_factory(rt.account)
        except (AuthenticationError, CredentialError) as exc:
            self._auth_failed(rt, exc)
            raise
        self._auth_ok(rt)
        return mb

    def auth_wait(self, name: str) -> float:
        rt = self._accounts.get(name)
        return 0.0 if rt is None else max(rt.auth_retry_at - time.monotonic(), 0.0)

    # --- watchers

    def _raise_open_file_limit(self) -> None:
        limits = self._open_file_limit()
        self._open_files = limits
        if limits is not None and limits.soft != limits.before:
            log.debug("open-file limit raised from %d to %d", limits.before, limits.soft)

    def _watch_capacity(self) -> int | None:
        """How many folders may be watched in all (None: no limit known)."""
        from ndr_sweeper import fdlimit

        limit = self._open_files.soft if self._open_files is not None else None
        return fdlimit.capacity(limit, self.config.max_parallel, self._watch_connectors)

    def _start_all_watchers(self, accounts: Sequence[Account]) -> None:
        """Watch what fits under the open-file limit, in configuration order; one warning
        names what does not."""
        skipped = [s for acc in accounts for s in self._start_watchers(acc, report=False)]
        if skipped:
            self._report_unwatched(skipped)

    def _start_watchers(self, acc: Account, report: bool = True) -> list[str]:
        """Hand ``acc``'s folders to the watch loop; returns the "account/folder" names that
        did not fit under the open-file limit (and, with ``report``, says so)."""
        from ndr_sweeper.watch import WatchLoop

        if not acc.watch or acc.is_maildir:  # IDLE is IMAP's; a Maildir runs on its schedule
            return []
        cap = self._watch_capacity()
        room = len(acc.folders) if cap is None else max(cap - sum(self._watched.values()), 0)
        folders = acc.folders[:room]
        skipped = [f"{acc.name}/{f}" for f in acc.folders[room:]]
        if folders:
            if self._watch is None:
                self._watch = WatchLoop(
                    self,
                    connectors=self._watch_connectors,
                    connect_rate=self._watch_connect_rate,
                ).start()
            self._watch.add(acc, folders)
            self._watched[acc.name] = len(folders)
        if skipped and report:
            self._report_unwatched(skipped)
        return skipped

    def _report_unwatched(self, skipped: list[str]) -> None:
        from ndr_sweeper import fdlimit

        assert self._open_files is not None  # only a known limit leaves anything out
        log.warning(
            "%s",
            fdlimit.shortage(
                self._open_files,
                sum(self._watched.values()) + len(skipped),
                skipped,
                self.config.max_parallel,
                self._watch_connectors,
            ),
        )

    def _stop_watchers(self, name: str) -> None:
        self._watched.pop(name, None)
        if self._watch is not None:
            self._watch.remove(name)

    def _stop_all_watchers(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        self._watch = None
        self._watched.clear()

    # --- status

    def _record_stopped(self) -> None:
        """Clear next_run: `status` then shows the service is not scheduling anything."""
        from ndr_sweeper.state import open_state

        try:
            with open_state(self.config.state_dir) as state:
                for s in state.account_status():
                    if s.account in self._accounts:
                        state.set_account_status(
                            s.account, s.last_run, s.counts, s.error, None, run_id=s.run_id
                        )
        except NdrSweeperError as exc:
            log.warning("could not record the stop in the state database: %s", exc)


# ---------------------------------------------------------------- signals and main loop


def serve(service: Service, reload_config: Callable[[], Config]) -> bool:
    """Run ``service`` until SIGTERM or SIGINT; SIGHUP reloads. Must run in the main thread.

    Returns what ``Service.stop`` returns (False: a sweep was still running).
    """
    wake = threading.Event()
    requests: list[str] = []

    def on_signal(signum: int, frame: object) -> None:
        requests.append("reload" if signum == signal.SIGHUP else "stop")
        wake.set()

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    for s in previous:
        signal.signal(s, on_signal)
    try:
        service.start()
        while True:
            wake.wait(0.5)
            wake.clear()
            if "stop" in requests:
                log.info("stopping (signal received)")
                break
            if requests:
                requests.clear()
                try:
                    service.reload(reload_config())
                except ConfigError as exc:
                    log.error("reload: %s; keeping the running configuration", exc)
    finally:
        for s in previous:  # a second signal during shutdown does not interrupt it
            signal.signal(s, signal.SIG_IGN)
        try:
            clean = service.stop() if service.started else True
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    return clean
