"""`ndr-sweeper run` as a real process against Dovecot: what the background service promises.

Each test starts the service as a subprocess with its own XDG folders, delivers mail into
lab mailboxes while it runs, and checks the mailboxes, the log and the exit status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

import lab

pytestmark = pytest.mark.imap

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("INBOX", "Junk", "Sent", "Trash", "Drafts")
SUMMARY = ": scanned "


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ndr_sweeper", *args]


# ---------------------------------------------------------------- messages


def plain(message_id: str, subject: str = "hello") -> bytes:
    return lab.make_message(message_id, subject=subject, sender="me@example.org")


def dsn(original_id: str) -> bytes:
    """A Postfix-style multipart/report DSN carrying the original as message/rfc822."""
    boundary = f"B{uuid.uuid4().hex}"
    now = format_datetime(datetime.now(UTC))
    original = (
        "From: me@example.org\r\nTo: nobody@example.net\r\nSubject: Lunch?\r\n"
        f"Date: {now}\r\nMessage-ID: <{original_id}>\r\n\r\nShall we?\r\n"
    )
    text = (
        "Return-Path: <>\r\n"
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        "To: me@example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {now}\r\n"
        f"Message-ID: <bounce.{uuid.uuid4().hex}@mx.example.net>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx.example.net.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        "<nobody@example.net>: host mx.example.net said: 550 5.1.1 User unknown\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        f"Arrival-Date: {now}\r\n\r\n"
        "Final-Recipient: rfc822; nobody@example.net\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: User unknown\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Undelivered Message\r\n"
        "Content-Type: message/rfc822\r\n\r\n"
        f"{original}\r\n"
        f"--{boundary}--\r\n"
    )
    return text.encode()


def bounce_id(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.startswith(b"Message-ID: <bounce."):
            return line[len(b"Message-ID: <") : -1].decode()
    raise AssertionError("no bounce Message-ID")


def deliver(env: lab.LabEnv, folder: str, *messages: bytes) -> None:
    client = env.connect()
    try:
        lab.append_messages(client, folder, messages)
    finally:
        client.logout()


def all_ids(env: lab.LabEnv) -> list[str | None]:
    return sorted((i for ids in contents(env).values() for i in ids), key=str)


def contents(env: lab.LabEnv) -> dict[str, list[str | None]]:
    client = env.connect()
    try:
        return {f: [e.message_id for e in lab.read_folder(client, f)] for f in FOLDERS}
    finally:
        client.logout()


# ---------------------------------------------------------------- the service process


def account_keys(name: str, env: lab.LabEnv, **keys: object) -> dict[str, object]:
    values: dict[str, object] = {
        "name": name,
        "host": env.host,
        "port": env.port,
        "security": "plain",
        "username": env.user,
        "password_command": f"printf %s {env.password}",
        "min_age": "0s",
        "every": "3s",
    }
    values.update(keys)
    return values


def write_config(path: Path, *accounts: dict[str, object]) -> Path:
    lines = []
    for acc in accounts:
        lines.append("[[accounts]]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in acc.items())
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


class Daemon:
    """`ndr-sweeper run` in the background; its stderr goes to a file (no pipe to fill)."""

    def __init__(self, base: Path, config: Path, *extra: str) -> None:
        self.base = base
        self.config = config
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(base / "config"),
            "XDG_STATE_HOME": str(base / "state"),
            "NO_COLOR": "1",
        }
        self.log_path = base / "service.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            command(*extra, "run", "--config", str(config)),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=REPO,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the service exited ({self.proc.returncode}) waiting for {what}:\n{self.log}"
                )
            time.sleep(0.1)
        pytest.fail(f"timed out after {timeout}s waiting for {what}; log:\n{self.log}")

    def summaries(self, account: str) -> int:
        return self.log.count(f"{account}{SUMMARY}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()

    def status(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command("status", "--config", str(self.config), *args),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO,
            timeout=30,
        )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(config: Path, *extra: str) -> Daemon:
        d = Daemon(tmp_path, config, *extra)
        started.append(d)
        return d

    (tmp_path / "config").mkdir()
    (tmp_path / "state").mkdir()
    yield start
    for d in started:
        d.kill()


# ---------------------------------------------------------------- tests


def test_two_accounts_swept_in_background_then_clean_sigterm(
    dovecot: lab.DovecotLab, new_imap_user, daemon, tmp_path: Path
) -> None:
    a, b = new_imap_user(dovecot), new_imap_user(dovecot)
    # A real bounce: its original is in Sent, so it stays in INBOX.
    deliver(a, "Sent", plain("sent-by-me@example.org"))
    deliver(a, "INBOX", plain("friend@example.net"))
    cfg = write_config(tmp_path / "config.toml", account_keys("a", a), account_keys("b", b))
    d = daemon(cfg)
    d.wait_for(lambda: d.summaries("a") and d.summaries("b"), 15, "the first run of both")

    back_a, back_b, own = (
        dsn("forged-1@example.org"),
        dsn("forged-2@example.org"),
        dsn("sent-by-me@example.org"),
    )
    deliver(a, "INBOX", back_a, own)
    deliver(b, "INBOX", back_b)
    d.wait_for(
        lambda: (
            bounce_id(back_a) in contents(a)["Junk"] and bounce_id(back_b) in contents(b)["Junk"]
        ),
        20,
        "both backscatter bounces in Junk",
    )
    box_a = contents(a)
    assert bounce_id(own) in box_a["INBOX"] and "friend@example.net" in box_a["INBOX"]
    assert bounce_id(back_a) not in box_a["INBOX"]

    assert d.stop(10) == 0
    out = d.log
    assert "cannot schedule new futures" not in out
    assert "Traceback" not in out
    # Nothing lost: every message is in exactly one folder.
    assert all_ids(a) == sorted(
        ["sent-by-me@example.org", "friend@example.net", bounce_id(back_a), bounce_id(own)]
    )
    assert all_ids(b) == [bounce_id(back_b)]

    # status: both accounts, their last run, no error, and no next run now that it stopped.
    res = d.status("--json")
    assert res.returncode == 0, res.stderr
    rows = {r["account"]: r for r in json.loads(res.stdout)}
    assert set(rows) == {"a", "b"}
    for r in rows.values():
        assert r["last_run"] and r["error"] is None and r["next_run"] is None
        assert r["counts"]["scanned"] >= 0
    table = d.status()
    assert table.returncode == 0 and "a" in table.stdout and "every 3s" in table.stdout


def test_watch_sweeps_soon_after_delivery(
    dovecot: lab.DovecotLab, new_imap_user, daemon, tmp_path: Path
) -> None:
    env = new_imap_user(dovecot)
    cfg = write_config(tmp_path / "config.toml", account_keys("w", env, every="1h", watch=True))
    d = daemon(cfg)
    d.wait_for(lambda: d.summaries("w") and "watching INBOX" in d.log, 15, "first run and IDLE")
    back = dsn("forged-watch@example.org")
    deliver(env, "INBOX", back)
    d.wait_for(lambda: bounce_id(back) in contents(env)["Junk"], 20, "the bounce in Junk")
    # the schedule (every 1h) did not do it: IDLE did (how soon is benchmark material, not a
    # test's: on a loaded machine the 8 s bound this had failed now and then).  The summary is
    # logged when the sweep ends, a moment after the move the wait above saw.
    d.wait_for(lambda: d.summaries("w") >= 2, 10, "the second run's summary")
    assert d.summaries("w") == 2
    assert d.stop(10) == 0


def test_wrong_password_does_not_stop_the_other_and_is_logged_once(
    dovecot: lab.DovecotLab, new_imap_user, daemon, tmp_path: Path
) -> None:
    good, bad = new_imap_user(dovecot), new_imap_user(dovecot)
    cfg = write_config(
        tmp_path / "config.toml",
        account_keys("good", good, every="1s"),
        account_keys("bad", bad, every="1s", password_command="printf %s not-the-secret-xyz"),
    )
    d = daemon(cfg)
    back = dsn("forged-good@example.org")
    deliver(good, "INBOX", back)
    d.wait_for(lambda: bounce_id(back) in contents(good)["Junk"], 15, "the good account swept")
    d.wait_for(lambda: d.summaries("good") >= 4, 10, "several runs of the good account")
    assert d.stop(10) == 0
    bad_errors = [ln for ln in d.log.splitlines() if " ERROR " in ln and "bad" in ln]
    assert len(bad_errors) == 1, d.log
    assert "not-the-secret-xyz" not in d.log  # the secret never reaches the log
    assert d.summaries("bad") == 0


def test_sighup_reload_picks_up_changed_every(
    dovecot: lab.DovecotLab, new_imap_user, daemon, tmp_path: Path
) -> None:
    env = new_imap_user(dovecot)
    cfg = write_config(tmp_path / "config.toml", account_keys("r", env, every="1h"))
    d = daemon(cfg)
    d.wait_for(lambda: d.summaries("r") == 1, 15, "the first run")
    # A broken file is logged and the running configuration kept.
    cfg.write_text("[[accounts]\n")
    d.signal(signal.SIGHUP)
    d.wait_for(lambda: "keeping the running configuration" in d.log, 15, "the reload error")
    write_config(cfg, account_keys("r", env, every="1s"))
    d.signal(signal.SIGHUP)
    d.wait_for(lambda: "configuration reloaded" in d.log, 15, "the reload")
    d.wait_for(lambda: d.summaries("r") >= 4, 15, "runs every second")
    assert d.stop(10) == 0


def test_sweep_and_run_decide_the_same_with_rules(
    dovecot: lab.DovecotLab, new_imap_user, daemon, tmp_path: Path
) -> None:
    """The same mailbox and rules, once swept by `ndr-sweeper sweep` and once by the service:
    the same messages end in Junk and the same counts are recorded (the service used to skip
    every account's rules, so the newsletter bounce the rule keeps went to Junk)."""
    import bounces

    rules = REPO / "sample_rules" / "keep-newsletter-bounces.toml"
    sent_id = bounces.new_id("mine")
    newsletter = bounces.dsn(bounces.new_id("nl"), sender="list@news.example.com")
    inbox = [
        bounces.dsn(sent_id),  # own bounce: kept
        bounces.dsn(bounces.new_id("forged")),  # backscatter: Junk
        newsletter,  # backscatter by the built-in check, kept by the rule
        bounces.freetext_ndr_without_original(),  # undetermined: kept
        bounces.ordinary(),
    ]
    boxes = {}
    for name in ("terminal", "service"):
        env = new_imap_user(dovecot)
        deliver(env, "Sent", bounces.original(sent_id))
        deliver(env, "INBOX", *inbox)
        boxes[name] = env

    # the terminal's sweep, with its own state
    term = tmp_path / "term"
    term.mkdir()
    cfg_t = write_config(
        term / "config.toml", account_keys("lab", boxes["terminal"], rules=[str(rules)])
    )
    env_t = {**os.environ, "XDG_CONFIG_HOME": str(term), "XDG_STATE_HOME": str(term / "state")}
    out = subprocess.run(
        command("sweep", "--json", "--config", str(cfg_t)),
        capture_output=True, text=True, env=env_t, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    terminal = json.loads(out.stdout)["accounts"][0]

    # the service's first scheduled run, with its own state
    cfg_s = write_config(
        tmp_path / "config.toml",
        account_keys("lab", boxes["service"], rules=[str(rules)], every="1h"),
    )
    d = daemon(cfg_s)
    d.wait_for(lambda: d.summaries("lab"), 20, "the service's first run")
    assert d.stop(10) == 0
    hist = subprocess.run(
        command("history", "--json", "--config", str(cfg_s)),
        capture_output=True, text=True, env=d.env, cwd=REPO, timeout=30,
    )  # fmt: skip
    service = json.loads(hist.stdout)[0]["counts"]

    keys = ("scanned", "ndrs", "own", "backscatter", "acted", "undetermined")
    assert {k: terminal[k] for k in keys} == {k: service[k] for k in keys}
    assert terminal["acted"] == 1 and terminal["backscatter"] == 2
    kept_by_rule = [d for d in terminal["decisions"] if d["rule"] == "newsletter-bounces"]
    assert len(kept_by_rule) == 1 and kept_by_rule[0]["action"] == "keep"
    assert contents(boxes["terminal"]) == contents(boxes["service"])
    assert bounce_id_of(newsletter) in contents(boxes["service"])["INBOX"]


def bounce_id_of(raw: bytes) -> str:
    import re

    m = re.search(rb"^Message-ID: <([^>]+)>", raw, re.M)
    assert m
    return m.group(1).decode()
