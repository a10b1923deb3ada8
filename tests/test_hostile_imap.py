"""Hostile servers (the fake IMAP server, scripted): every answer the client reads is bounded
in time and memory.  Each scenario runs the real CLI in a subprocess with a 1 s `timeout` and
checks the outcome (nothing moved or lost), the one-line error naming the server and what it
did, the wall time, and the client's peak RSS (VmHWM of the child, sampled from /proc: wait4's
ru_maxrss would include the test process's own RSS, inherited across fork and exec; an
address-space rlimit stops a regression from eating the machine).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import bounces
from fakeimap import (
    DEFAULT_CAPABILITIES,
    FakeImapServer,
    huge_literal,
    repeat,
)
from test_sweep_fake import env_of
from test_sweep_imap import REPO, write_config, xdg_dirs

TIMEOUT = 1.0  # the accounts' `timeout` in these tests
WALL = 2 * TIMEOUT + 6  # the bound on a whole CLI run: a few commands' worth of slack
RSS_LIMIT_MB = 250  # the bar is 500 MB; a sweep of this mailbox needs about 50
AS_LIMIT = 3 * 1024**3  # address-space cap of the child: a runaway dies instead of the host
KILL_AFTER = 30.0  # a run still going then is killed (and fails the test)


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float
    killed: bool

    def account(self) -> dict[str, object]:
        return json.loads(self.stdout)["accounts"][0]


_WRAPPER = (
    "import resource, runpy, sys; "
    "resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); "
    "sys.argv = ['ndr-sweeper', *sys.argv[1:]]; "
    "runpy.run_module('ndr_sweeper', run_name='__main__')"
)


def _vm_hwm_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_measured(
    xdg: dict[str, str], *args: str, kill_after: float = KILL_AFTER, stop_after: float | None = None
) -> Outcome:
    """The CLI as a child process; its wall time and peak RSS (VmHWM).
    *stop_after*: send SIGTERM then (for `run`)."""
    env = {**os.environ, **xdg, "NO_COLOR": "1"}
    code = _WRAPPER.format(limit=AS_LIMIT)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args], stdout=out, stderr=err, env=env, cwd=REPO
        )
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(kill_after, kill)
        timer.start()
        peak = [0.0]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], _vm_hwm_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stopper = None
        if stop_after is not None:
            stopper = threading.Timer(stop_after, proc.send_signal, (signal.SIGTERM,))
            stopper.start()
        try:
            # the last sample, taken while the exited child is not yet reaped
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            done.set()
            sampler.join()
            _pid, status = os.waitpid(proc.pid, 0)
        finally:
            timer.cancel()
            if stopper is not None:
                stopper.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Outcome(
            proc.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            seconds,
            peak[0],
            killed.is_set(),
        )


class Box:
    """A fake server with a small mailbox (backscatter, an own bounce, ordinary mail)."""

    def __init__(self, server: FakeImapServer, tmp: Path, **cfg: object) -> None:
        self.server = server
        self.sent_id = bounces.new_id()
        server.add("Sent", bounces.original(self.sent_id))
        self.inbox = [
            bounces.dsn(bounces.new_id("forged"), bounce_id=bounces.new_id("bs")),
            bounces.dsn(self.sent_id, bounce_id=bounces.new_id("own")),
            bounces.ordinary(),
            bounces.dsn(bounces.new_id("forged"), bounce_id=bounces.new_id("bs")),
        ]
        for raw in self.inbox:
            server.add("INBOX", raw)
        self.before = self.snapshot()
        self.xdg = xdg_dirs(tmp)
        keys = {"timeout": f"{TIMEOUT:g}s", **cfg}
        self.config = write_config(tmp / "config.toml", env_of(server), **keys)

    def snapshot(self) -> dict[str, list[tuple[bytes, frozenset[str]]]]:
        return {
            f: [(m.data, frozenset(m.flags)) for m in self.server.messages(f)]
            for f in ("INBOX", "Junk", "Sent", "Trash")
        }

    def sweep(self, **kw: object) -> Outcome:
        return run_measured(self.xdg, "sweep", "--json", "--config", str(self.config), **kw)

    def untouched(self) -> None:
        assert self.snapshot() == self.before, "nothing may be moved, flagged or lost"


def assert_bounded(out: Outcome, wall: float = WALL) -> None:
    assert not out.killed, f"still running after {KILL_AFTER} s"
    assert out.seconds < wall, f"took {out.seconds:.1f} s"
    assert out.peak_rss_mb < RSS_LIMIT_MB, f"peak RSS {out.peak_rss_mb:.0f} MB"
    assert "Traceback" not in out.stderr and "MemoryError" not in out.stderr + out.stdout


def one_line_error(out: Outcome, pattern: str) -> str:
    assert out.returncode != 0, out.stdout
    error = str(out.account()["error"])
    assert "\n" not in error
    assert re.search(pattern, error), error
    return error


def first_fetch(cmd) -> bool:  # type: ignore[no-untyped-def]
    return "HEADER.FIELDS" in cmd.arg_text()


def body_fetch(cmd) -> bool:  # type: ignore[no-untyped-def]
    return "BODY.PEEK[]" in cmd.arg_text()


# ---------------------------------------------------------------- scenarios

EXISTS_FLOOD = b"".join(b"* %d EXISTS\r\n" % n for n in range(100_000, 110_000))
LONG_GREETING = b"* OK " + b"welcome " * 40 + b"\r\n"

Script = Callable[[FakeImapServer, "Box | None"], None]
SCENARIOS: dict[str, tuple[Script, str]] = {
    # A FETCH answered with a literal announced as 4 GB and sent as fast as loopback goes.
    "huge-literal": (
        lambda s, b: s.on("FETCH", match=first_fetch).send_instead(
            huge_literal(b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (MESSAGE-ID)]", 4_000_000_000)
        ),
        r"127\.0\.0\.1:\d+ sent a 4000000000-byte literal in answer to FETCH \(limit 2 MB\)",
    ),
    # An endless flood of 64 KB untagged lines.
    "line-flood": (
        lambda s, b: s.on("LIST").send(repeat(b"* OK " + b"x" * 65530 + b"\r\n")),
        r"127\.0\.0\.1:\d+ sent more than 64 MB in answer to LIST",
    ),
    # An endless flood of "* N EXISTS".
    "exists-flood": (
        lambda s, b: s.on("SELECT").send(repeat(EXISTS_FLOOD)),
        r"127\.0\.0\.1:\d+ sent more than 100000 responses in answer to SELECT",
    ),
    # The header FETCH trickled at 4 bytes/s: every read gets a byte well within `timeout`.
    "trickled-answer": (
        lambda s, b: s.on("FETCH", match=first_fetch).trickle(4),
        r"127\.0\.0\.1:\d+ was too slow in answer to FETCH: \d+ bytes? in 1 s",
    ),
    # Numbers of 5,000 digits (Python's int() refuses more than 4,300): a literal's size, and
    # a message count.
    "long-number-literal": (
        lambda s, b: s.on("LIST").send_instead(b'* LIST () "/" {' + b"9" * 5000 + b"}\r\n"),
        r"127\.0\.0\.1:\d+ sent a number of more than \d+ digits during LIST",
    ),
    "long-number-exists": (
        lambda s, b: s.on("SELECT").send(b"* " + b"9" * 5000 + b" EXISTS\r\n"),
        r"127\.0\.0\.1:\d+ sent a number of more than \d+ digits during SELECT",
    ),
    # A long greeting trickled at 4 bytes/s.
    "trickled-greeting": (
        lambda s, b: setattr(s, "greeting", LONG_GREETING) or s.on("GREETING").trickle(4),
        r"127\.0\.0\.1:\d+ was too slow in its greeting: \d+ bytes? in 1 s",
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_hostile_answer_ends_the_sweep_in_bounded_time_and_memory(
    fake_imap, tmp_path, name
) -> None:
    box = Box(fake_imap(), tmp_path)
    script, pattern = SCENARIOS[name]
    script(box.server, box)
    out = box.sweep()
    assert_bounded(out)
    error = one_line_error(out, pattern)
    assert "giving up on this account" in error or "too slow" in error
    box.untouched()


def test_a_30_mb_body_in_answer_to_a_1_mib_partial_fetch(fake_imap, tmp_path) -> None:
    """The client asks for the first 1 MiB of a report; the server sends all 30 MB."""
    server = fake_imap()
    big = bounces.dsn(bounces.new_id("forged"), bounce_id=bounces.new_id("big"))
    big = big.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"y" * 64 + b"\r\n\r\n" + b"z" * 30_000_000, 1)
    box = Box(server, tmp_path)
    server.add("INBOX", big)
    box.before = box.snapshot()
    part = big[:1048576]

    def unclipped(answer: bytes) -> bytes:
        return answer.replace(b"{1048576}\r\n" + part, b"{%d}\r\n" % len(big) + big)

    server.on("FETCH", match=body_fetch).rewrite(unclipped)
    out = box.sweep()
    assert_bounded(out)
    one_line_error(out, r"sent a 300\d{5}-byte literal in answer to FETCH \(limit 1 MB\)")
    box.untouched()


def test_bogus_copyuid_is_ignored_with_one_warning(fake_imap, tmp_path) -> None:
    """COPYUID claiming 150 million UIDs: the MOVE is done, the mapping is ignored (one
    warning), and undo still finds the messages (by Message-ID)."""
    server = fake_imap()
    box = Box(server, tmp_path)
    server.on("MOVE").rewrite(
        lambda r: re.sub(rb"COPYUID (\d+) \S+ \S+\]", rb"COPYUID \1 1:150000000 1:150000000]", r)
    )
    out = box.sweep()
    assert_bounded(out)
    assert out.returncode == 0, out.stderr + out.stdout
    assert out.account()["acted"] == 2
    assert out.stderr.count("COPYUID") == 1, out.stderr
    junk = [m.message_id for m in server.messages("Junk")]
    assert len(junk) == 2 and all(m and m.startswith("bs.") for m in junk)
    undo = run_measured(box.xdg, "undo", "--last", "--config", str(box.config))
    assert undo.returncode == 0, undo.stderr + undo.stdout
    assert server.messages("Junk") == []
    assert sorted(m.data for m in server.messages("INBOX")) == sorted(box.inbox)


def test_logindisabled_without_auth_plain_never_sends_the_password(fake_imap, tmp_path) -> None:
    caps = (DEFAULT_CAPABILITIES | {"LOGINDISABLED"}) - {"AUTH=PLAIN"}
    box = Box(fake_imap(capabilities=caps), tmp_path)
    out = box.sweep()
    assert_bounded(out)
    error = one_line_error(out, r"127\.0\.0\.1:\d+ .*LOGINDISABLED")
    assert "security" in error  # what to do
    assert "LOGIN" not in box.server.names() and "AUTHENTICATE" not in box.server.names()
    box.untouched()


def test_logindisabled_with_auth_plain_signs_in_with_it(fake_imap, tmp_path) -> None:
    box = Box(fake_imap(capabilities=DEFAULT_CAPABILITIES | {"LOGINDISABLED"}), tmp_path)
    out = box.sweep()
    assert out.returncode == 0, out.stderr + out.stdout
    assert "LOGIN" not in box.server.names() and "AUTHENTICATE" in box.server.names()
    assert out.account()["acted"] == 2


def test_idle_flood_under_run_with_watch(fake_imap, tmp_path) -> None:
    """`run` with watch = true; the server answers IDLE with an endless flood. The watcher
    gives up on that connection within the limits (one warning), memory stays bounded, and
    SIGTERM still ends the service promptly."""
    server = fake_imap()
    box = Box(server, tmp_path, watch=True, every="1h")
    server.on("IDLE", times=None).send(repeat(EXISTS_FLOOD))
    out = run_measured(box.xdg, "run", "--config", str(box.config), stop_after=8.0)
    assert not out.killed, "SIGTERM did not stop the service"
    assert out.seconds < 8.0 + 2 * TIMEOUT + 5
    assert out.peak_rss_mb < 100, f"peak RSS {out.peak_rss_mb:.0f} MB"
    assert "Traceback" not in out.stderr
    warnings = [line for line in out.stderr.splitlines() if "during IDLE" in line]
    assert warnings, out.stderr[-2000:]
    # whichever limit comes first: the responses per check, or its wall time (under load)
    pattern = r"127\.0\.0\.1:\d+ (sent more than 100000 responses|kept sending for more than \d+ s)"
    assert re.search(pattern + " during IDLE", warnings[0]), warnings[0]
    assert len(server.received("IDLE")) >= 1
