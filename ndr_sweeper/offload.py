"""Classifying a first sweep's possible reports on the second core, while this process reads on.

A first sweep of a large mailbox has two long pieces of work after its header scan: the
possible reports must be classified (pure CPU), and the Sent index must be read (the server's
work, then ours).  They do not depend on each other, so :class:`Classifying` hands the first
to a helper process and the sweep does the second meanwhile; whatever the helper has not
started on when the sweep needs the verdicts, this process classifies itself (the last batch
first), so both cores work to the end and neither waits on the other for long.

Same answers: the helper runs the very same function on the same bytes.  Bounded: at most
:data:`MAX_WAITING_BYTES` of messages wait for the helper (beyond that this process
classifies them as they come).  Never in the way: the helper is a ``spawn``-ed process (never
``fork``: the service has threads) that ignores Ctrl-C; a helper that cannot start, dies or
takes longer than :data:`BATCH_TIMEOUT` for a batch leaves its work to this process, with one
line in the log.  Small sweeps never start one.

Why not ``concurrent.futures.ProcessPoolExecutor``: taking work back means cancelling its
futures, and on Python 3.11 a worker that dies then makes the executor's thread fail on a
cancelled future (a traceback on the user's terminal).  A pipe, two threads that send and
receive over it, and a queue both processes' work is taken from are all this needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections import deque
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from ndr_sweeper.classify import Verdict

log = logging.getLogger(__name__)

# A helper is started for a sweep with at least this many new messages to scan: its start
# (~0.3 s of the other core) and the copying of bodies only pay off past a few hundred
# possible reports.  Measured on real mail (benchmarks/sweep.py --compare, 3 runs each): at
# 2,000 a sweep with a helper took 1.12 of the time of one without, at 5,000 0.84.
MIN_NEW_MESSAGES = 5000
SCAN_CHUNK = 4000  # with a helper: headers read before their possible reports are (one chunk)
BATCH_MESSAGES = 32  # messages per batch sent to the helper, at most ...
BATCH_BYTES = 512 * 1024  # ... and bytes (a batch is the unit this process can take back)
MAX_WAITING_BYTES = 64 * 1024 * 1024  # held for the helper at once, at most
AT_HELPER = 3  # batches sent to the helper and not yet answered, at most
BATCH_TIMEOUT = 120.0  # seconds the helper may take to start, or for one batch

Result = tuple["Verdict", tuple[str, ...]]  # a verdict, and every ID an NDR quotes


def _mode(env: Mapping[str, str] | None = None) -> str:
    mode = (os.environ if env is None else env).get("NDR_SWEEPER_HELPER", "auto").lower()
    if mode in ("off", "0", "no", "false"):
        return "off"
    return "on" if mode in ("on", "1", "yes", "true") else "auto"


def forced(env: Mapping[str, str] | None = None) -> bool:
    """``NDR_SWEEPER_HELPER=on``: the helper classifies all it is sent, nothing is taken
    back from it (tests see it at work whatever the timing)."""
    return _mode(env) == "on"


def wanted(new_messages: int, env: Mapping[str, str] | None = None) -> bool:
    """Is a helper worth starting for a sweep of this many new messages?  ``auto``: past
    :data:`MIN_NEW_MESSAGES`, on a machine with two cores or more for us.  The environment
    variable ``NDR_SWEEPER_HELPER`` says ``off`` (never: one core, or no new processes
    allowed) or ``on`` (for any sweep with something new: tests)."""
    mode = _mode(env)
    if mode != "auto":
        return mode == "on" and new_messages > 0
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return new_messages >= MIN_NEW_MESSAGES and cores >= 2


_READY = "ready"  # the helper's first word: its imports are done


def classify_one(raw: bytes) -> Result:
    """What the sweep needs of one possible report: its verdict and, for an NDR, every
    Message-ID it quotes (the Sent check's safety net)."""
    from ndr_sweeper.classify import classify
    from ndr_sweeper.sentids import ids_in_message

    verdict = classify(raw)
    return verdict, tuple(ids_in_message(raw)) if verdict.is_ndr else ()


def classify_batch(raws: list[bytes]) -> list[Result]:
    """The helper's work (and this process's, for a batch it takes back)."""
    return [classify_one(raw) for raw in raws]


def _serve(conn: Connection) -> None:  # the helper process
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the sweep, which stops us
    logging.disable(logging.WARNING)  # nothing of ours on the user's terminal from here
    import ndr_sweeper.classify.engine  # noqa: F401  (loaded before the first batch arrives)

    try:
        conn.send(_READY)
        while True:
            try:
                raws = conn.recv()
            except EOFError:  # the sweep is done with us
                return
            conn.send(classify_batch(raws))
    except OSError:  # the sweep went away
        return


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while the helper is started: it inherits that, so a Ctrl-C meant for
    the sweep never reaches it, not even before its first line runs (a KeyboardInterrupt
    there would print a traceback on the user's terminal).  Only the main thread may change
    a signal handler; elsewhere (the service's worker threads) there is no terminal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass(eq=False)
class _Batch:
    keys: list[Hashable] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    size: int = 0
    results: list[Result] | None = None
    at_helper: bool = False  # taken by the feeding thread: this process waits for it


class Classifying:
    """``add(key, raw)`` each possible report as it is read, do other work, then
    ``results()``: ``(key, verdict, quoted_ids)`` for every one, in the order they were added.

    ``helper=False`` (a small sweep): everything is classified here, as it is added, unless
    ``start_helper`` is called later."""

    def __init__(self, helper: bool) -> None:
        self._batches: list[_Batch] = []
        self._open = _Batch()
        self._queue: deque[_Batch] = deque()  # for the helper, not yet taken: oldest first
        self._waiting = 0  # bytes in the queue and at the helper
        self._cond = threading.Condition()
        self._proc: Any = None
        self._conn: Connection | None = None
        self._threads: list[threading.Thread] = []
        self._sent: deque[_Batch] = deque()  # at the helper, in the order sent
        self._alive = False  # a helper is up or starting, and has not failed
        self._up = threading.Event()  # it said it is ready (or failed: then _alive is False)
        self._closing = False
        self._tried = False  # a helper was started (or could not be): never a second one
        self._take_back = True
        self.by_helper = 0  # messages the helper classified (tests, the debug log)
        if helper:
            self.start_helper()

    @property
    def helping(self) -> bool:
        """Is a helper at work on (or about to take) some of the messages?"""
        with self._cond:
            return self._alive and (bool(self._queue) or self._waiting > 0)

    @property
    def waiting_bytes(self) -> int:
        """Bytes of messages handed to the helper's side and not yet answered for."""
        return self._waiting

    # ---------------------------------------------------------------- the helper
    def start_helper(self, take_back: bool = True) -> None:
        """Start the helper (once); work added while it starts up waits for it.
        ``take_back=False``: when the verdicts are due, wait for the helper's rather than
        classify here what it has not taken yet."""
        if self._tried:
            return
        self._tried = True
        self._take_back = take_back
        import multiprocessing

        try:
            ctx = multiprocessing.get_context("spawn")
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(theirs,), daemon=True, name="ndr-classify")
            with _sigint_ignored():
                proc.start()
            theirs.close()
        except Exception as exc:  # no processes here (a sandbox, a limit): one core it is
            log.debug("no helper process for classifying: %s", exc)
            return
        self._proc, self._conn, self._alive = proc, ours, True
        for loop in (self._send_loop, self._receive_loop):
            t = threading.Thread(target=loop, name=f"ndr-classify-{loop.__name__}", daemon=True)
            self._threads.append(t)
            t.start()

    def wait_until_up(self, timeout: float) -> bool:
        """Wait for the helper to be up (tests); False when there is none."""
        self._up.wait(timeout)
        return self._up.is_set() and self._alive and not self._closing

    # Two threads, so that the helper always has the next batches at hand: one sends (it may
    # wait for the helper to read), one receives (the helper may wait for us to read).  With a
    # single thread each batch would wait for it to get a turn at the GIL (up to 5 ms each
    # time) while the sweep reads on, and the helper would idle half the time.

    def _send_loop(self) -> None:
        conn = self._conn
        assert conn is not None
        # Nothing is sent before the helper is up: until then all of it can be taken back,
        # and a helper that never comes up holds up nothing.
        self._up.wait()
        try:
            while True:
                with self._cond:
                    while (
                        self._alive
                        and not self._closing
                        and (not self._queue or len(self._sent) >= AT_HELPER)
                    ):
                        self._cond.wait()
                    if self._closing or not self._alive:
                        return
                    b = self._queue.popleft()
                    b.at_helper = True
                    self._sent.append(b)
                    self._cond.notify_all()
                conn.send(b.raws)
        except Exception as exc:  # it died (a broken pipe)
            self._failed(exc)

    def _receive_loop(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            if not conn.poll(BATCH_TIMEOUT) or conn.recv() != _READY:
                raise TimeoutError(f"did not start within {BATCH_TIMEOUT:g} s")
            self._up.set()
            log.debug("the helper process is up")
            while True:
                with self._cond:
                    while self._alive and not self._closing and not self._sent:
                        self._cond.wait()
                    if self._closing or not self._alive:
                        return
                if not conn.poll(BATCH_TIMEOUT):
                    raise TimeoutError(f"took more than {BATCH_TIMEOUT:g} s for a batch")
                results = conn.recv()
                with self._cond:
                    b = self._sent[0]
                    if not isinstance(results, list) or len(results) != len(b.raws):
                        raise ValueError("its answer is not one verdict per message")
                    self._sent.popleft()
                    b.results, b.raws, b.at_helper = results, [], False
                    self._waiting -= b.size
                    self.by_helper += len(results)
                    self._cond.notify_all()
        except Exception as exc:  # it died (EOF), hung, or said something else
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        with self._cond:
            if not self._closing and self._alive:
                log.warning(
                    "classifying on one core from here: the helper process failed (%s)",
                    f"{type(exc).__name__}: {exc}"[:200],
                )
            self._fail()

    def _fail(self) -> None:
        """Under the lock: the helper is done for; what it had (or was to have) is this
        process's again."""
        self._alive = False
        self._up.set()
        for b in self._sent:
            b.at_helper = False
        self._sent.clear()
        self._queue.clear()
        self._waiting = 0
        self._cond.notify_all()
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    # ---------------------------------------------------------------- feeding
    def add(self, key: Hashable, raw: bytes) -> None:
        b = self._open
        b.keys.append(key)
        b.raws.append(raw)
        b.size += len(raw)
        if len(b.raws) >= BATCH_MESSAGES or b.size >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Hand on (or classify here) the messages added since the last batch."""
        b, self._open = self._open, _Batch()
        if not b.raws:
            return
        self._batches.append(b)
        with self._cond:
            if self._alive and self._waiting + b.size <= MAX_WAITING_BYTES:
                self._queue.append(b)
                self._waiting += b.size
                self._cond.notify_all()
                return
        b.results, b.raws = classify_batch(b.raws), []

    # ---------------------------------------------------------------- collecting
    def results(self) -> Iterator[tuple[Hashable, Verdict, tuple[str, ...]]]:
        """Every message's verdict, in the order they were added (once; then the helper
        stops)."""
        self.flush()
        while True:  # take back what the helper has not taken, the last first
            with self._cond:
                if not self._queue or (not self._take_back and self._alive):
                    break
                b = self._queue.pop()
                self._waiting -= b.size
            b.results, b.raws = classify_batch(b.raws), []
        for b in self._batches:
            with self._cond:
                while b.results is None and (b.at_helper or b in self._queue):
                    self._cond.wait()
            if b.results is None:  # the helper failed before answering for it
                b.results, b.raws = classify_batch(b.raws), []
            for key, (verdict, quoted) in zip(b.keys, b.results, strict=True):
                yield key, verdict, quoted
        total = sum(len(b.keys) for b in self._batches)
        log.debug("classified %d possible reports, %d of them by the helper", total, self.by_helper)
        self._batches = []
        self.close()

    def close(self) -> None:
        """Stop the helper (it is idle, or its work is no longer wanted)."""
        with self._cond:
            self._closing = True
            self._queue.clear()
            self._up.set()  # (the sending thread may still wait for it)
            self._cond.notify_all()
        threads, conn, proc = self._threads, self._conn, self._proc
        self._threads, self._conn, self._proc = [], None, None
        for t in threads:
            t.join(0.5)
        if any(t.is_alive() for t in threads) and proc is not None:
            proc.kill()  # it is at a batch no longer wanted (a thread waits on it)
            for t in threads:
                t.join(2)
        if conn is not None and not any(t.is_alive() for t in threads):
            conn.close()  # the helper's recv() gets EOF and it returns
        if proc is not None:
            proc.join(1)
            if proc.is_alive():
                proc.kill()
                proc.join(1)

    def __enter__(self) -> Classifying:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
