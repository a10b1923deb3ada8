"""Faults against a real Dovecot: the server is killed in the middle of fetching, of a MOVE
batch, and between the COPY and the EXPUNGE; then it is restarted and the CLI sweeps again.
Each backscatter message must end in Junk exactly once, nothing else moves, the user's
\\Deleted flags survive, and the journal has nothing half done. Also: a hostile Message-ID on
the search path, a folder that cannot be created, a small line limit, two sweeps at once,
a silent server, and a damaged or missing state database.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultkit import FaultyMailbox, Mail, assert_invariant, make_mail, tagged

from ndr_sweeper.config import load_config
from ndr_sweeper.connect import open_mailbox
from ndr_sweeper.state import account_lock, open_state
from ndr_sweeper.sweep import sweep_account

import bounces
import lab
from test_sweep_imap import REPO, run_cli, write_config, xdg_dirs

pytestmark = pytest.mark.imap

SERVERS = {
    "move": {},
    "copy-uidplus": {"no_move": True, "uidplus": True},
    "copy-plain": {"no_move": True},  # the default leaves moved originals flagged \Deleted
    "copy-protect": {"no_move": True},  # expunge_fallback = "protect": EXPUNGE, shielded
}
CONFIG = {"copy-protect": {"expunge_fallback": "protect"}}

# A bounce whose own Message-ID is made to break an IMAP command if it reached one raw:
# a literal marker, quotes, a backslash and parentheses.
HOSTILE_ID = 'evil{5}"x\\y(z)@attacker.example'


def hostile_bounce() -> bytes:
    raw = bounces.dsn(bounces.new_id("forged"), bounce_id="placeholder@x")
    return raw.replace(b"<placeholder@x>", f"<{HOSTILE_ID}>".encode())


def read(env: lab.LabEnv, folder: str) -> list[tuple[bytes, frozenset[str]]]:
    """(header, flags) of every message in `folder`, with a connection of its own."""
    from imapclient.response_parser import parse_fetch_response

    client = env.connect()
    try:
        client.select_folder(folder, readonly=True)
        _typ, raw = client._imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER])")
        data = {} if raw == [None] else parse_fetch_response(raw, False, True)
        out = []
        for _uid, item in sorted(data.items()):
            header = next(v for k, v in item.items() if k.startswith(b"BODY[HEADER"))
            flags = frozenset(
                f.decode() if isinstance(f, bytes) else str(f) for f in item[b"FLAGS"]
            )
            out.append((header, flags))
        return out
    finally:
        client.logout()


class Lab:
    def __init__(self, server: lab.DovecotLab, env: lab.LabEnv, tmp: Path, mail: Mail, **cfg: Any):
        self.server, self.env, self.mail = server, env, mail
        self.xdg = xdg_dirs(tmp)
        self.config = write_config(tmp / "config.toml", env, **cfg)
        self.state_dir = Path(self.xdg["XDG_STATE_HOME"]) / "ndr-sweeper"

    def account(self):  # type: ignore[no-untyped-def]
        return load_config(self.config).account("lab")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.xdg, *args, "--config", str(self.config))

    def sweep_in_process(self, wrap) -> Any:  # type: ignore[no-untyped-def]
        with open_state(self.state_dir) as state:
            return sweep_account(self.account(), state, lambda acc: wrap(open_mailbox(acc)))

    def check(self) -> None:
        junk = read(self.env, "Junk")
        inbox = read(self.env, "INBOX")
        with open_state(self.state_dir) as state:
            rows = [r for run in state.runs("lab") for r in state.run_entries(run.id)]
        assert_invariant([h for h, _ in junk], inbox, self.mail, rows)


def fill(env: lab.LabEnv, mail: Mail) -> None:
    client = env.connect()
    try:
        lab.append_messages(client, "Sent", mail.sent)
        lab.append_messages(
            client, "INBOX", [lab.LabMessage(raw, flags=flags) for raw, flags in mail.inbox]
        )
    finally:
        client.logout()


def make_lab(dovecot_factory, new_imap_user, tmp_path, shape: str, n: int = 8, **cfg) -> Lab:
    cfg = {**CONFIG.get(shape, {}), **cfg}
    server = dovecot_factory(**SERVERS[shape])
    env = new_imap_user(server)
    mail = make_mail(n_backscatter=n)
    raw = tagged(hostile_bounce(), "hostile")
    mail.inbox.insert(3, (raw, ()))
    mail.backscatter.add("hostile")
    fill(env, mail)
    return Lab(server, env, tmp_path, mail, **cfg)


def resume(lb: Lab) -> None:
    """Restart the server, sweep through the CLI, check; a second sweep changes nothing."""
    if not lb.server.running:
        lb.server.start()
    done = lb.cli("sweep", "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    lb.check()
    again = lb.cli("sweep", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["accounts"][0]["acted"] == 0
    lb.check()


# ---------------------------------------------------------------- killed mid-operation

KILL_POINTS = [
    ("move", "move", "after"),  # MOVE carried out, the server dies before answering
    ("move", "move", "before"),
    ("copy-uidplus", "copy", "after"),  # between the COPY and the STORE \Deleted
    ("copy-uidplus", "add_flags", "after"),  # between the STORE and the UID EXPUNGE
    ("copy-uidplus", "expunge_uids", "before"),
    ("copy-plain", "copy", "after"),  # found again by identity above the UIDNEXT before it
    ("copy-plain", "add_flags", "after"),  # the original flagged, then the crash
    ("copy-protect", "copy", "after"),
    ("copy-protect", "remove_flags", "after"),  # the user's \Deleted lifted, then the crash
    ("copy-protect", "expunge_flagged_deleted", "before"),
]


@pytest.mark.parametrize(("shape", "op", "when"), KILL_POINTS)
def test_server_killed_mid_action_next_sweep_finishes(
    dovecot_factory, new_imap_user, tmp_path, shape, op, when
) -> None:
    lb = make_lab(dovecot_factory, new_imap_user, tmp_path, shape)
    faults: list[FaultyMailbox] = []

    def wrap(mb):  # type: ignore[no-untyped-def]
        faults.append(FaultyMailbox(mb, op, when, on_fault=lb.server.kill))
        return faults[-1]

    first = lb.sweep_in_process(wrap)
    assert faults[0].fired, f"{op} was not reached"
    assert first.error and "fault injected" in first.error
    assert not lb.server.running
    resume(lb)


@pytest.mark.parametrize("shape", list(SERVERS))
def test_server_killed_inside_a_batch(dovecot_factory, new_imap_user, tmp_path, shape) -> None:
    """The MOVE/COPY of 12 messages goes out as 3-UID commands; Dovecot dies after the second
    command: six are done on the server, the journal says 'planned' for all of them."""
    lb = make_lab(dovecot_factory, new_imap_user, tmp_path, shape, n=12)
    sent = {"n": 0}

    def wrap(mb):  # type: ignore[no-untyped-def]
        mb.store_batch = 3
        name = "move" if shape == "move" else "copy"
        real = getattr(mb.client, name)

        def command(*args: Any, **kwargs: Any) -> Any:
            out = real(*args, **kwargs)
            sent["n"] += 1
            if sent["n"] == 2:
                lb.server.kill()
            return out

        setattr(mb.client, name, command)
        return mb

    first = lb.sweep_in_process(wrap)
    assert sent["n"] == 2 and first.error and "connection" in first.error
    resume(lb)


@pytest.mark.parametrize("shape", ["move", "copy-plain"])
@pytest.mark.parametrize("op", ["fetch_headers", "fetch_messages"])
def test_server_killed_while_fetching(dovecot_factory, new_imap_user, tmp_path, shape, op) -> None:
    lb = make_lab(dovecot_factory, new_imap_user, tmp_path, shape)
    first = lb.sweep_in_process(lambda mb: FaultyMailbox(mb, op, nth=3, on_fault=lb.server.kill))
    assert first.error
    lb.server.start()
    assert read(lb.env, "Junk") == [], "nothing may be acted on after a failed scan"
    resume(lb)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["move", "copy-plain"])
def test_large_sweep_killed_by_signal_and_resumed(
    dovecot_factory, new_imap_user, tmp_path, shape
) -> None:
    """The measured case: a CLI sweep of 2,000 messages, Dovecot SIGKILLed while it acts."""
    server = dovecot_factory(**SERVERS[shape])
    env = new_imap_user(server)
    mail = make_mail(n_backscatter=1500, n_keep=4)
    for i in range(496):  # ordinary mail in between, so the UID sets are scattered
        mail.inbox.insert(3 * i + 2, (tagged(bounces.ordinary(), f"ord{i}"), ()))
        mail.keep.add(f"ord{i}")
    fill(env, mail)
    lb = Lab(server, env, tmp_path, mail, **CONFIG.get(shape, {}))
    db = lb.state_dir / "state.db"
    env_vars = {**__import__("os").environ, **lb.xdg, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ndr_sweeper", "sweep", "-q", "--config", str(lb.config)],
        cwd=REPO,
        env=env_vars,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Kill the server once the journal has entries: the sweep is acting.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists() and _journal_rows(db):
            break
        time.sleep(0.005)
    server.kill()
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err
    resume(lb)


def _journal_rows(db: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as c:
            return c.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
    except sqlite3.Error:
        return 0


# ---------------------------------------------------------------- NO / BAD from a real server


@pytest.mark.parametrize("shape", list(SERVERS))
def test_mailbox_at_its_quota(dovecot_factory, new_imap_user, tmp_path, shape) -> None:
    """A user exactly at a message quota (Dovecot's quota plugin). Dovecot lets MOVE through
    (nothing is added), so that server sweeps as usual; COPY is refused with [OVERQUOTA], so
    on a server without MOVE nothing moves, nothing is lost, and the messages are tried again
    once the quota is raised."""
    mail = make_mail()
    raw = tagged(hostile_bounce(), "hostile")
    mail.inbox.insert(3, (raw, ()))
    mail.backscatter.add("hostile")
    server = dovecot_factory(**SERVERS[shape], quota_messages=len(mail.inbox) + len(mail.sent))
    env = new_imap_user(server)
    fill(env, mail)
    lb = Lab(server, env, tmp_path, mail, **CONFIG.get(shape, {}))
    out = lb.cli("sweep", "--json")
    acc = json.loads(out.stdout)["accounts"][0]
    if shape == "move":
        assert out.returncode == 0 and acc["acted"] == len(mail.backscatter), out.stdout
        lb.check()
        return
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert acc["acted"] == 0 and acc["errors"] == len(mail.backscatter), out.stdout
    assert any("over its quota" in n and "make room" in n for n in acc["notes"]), acc["notes"]
    assert read(env, "Junk") == [] and len(read(env, "INBOX")) == len(mail.inbox)
    with open_state(lb.state_dir) as state:
        assert state.pending_entries("lab") == []  # refused, not half done
    server.quota_messages = 10_000  # the user makes room
    server.restart()
    resume(lb)


def test_folder_that_cannot_be_created(dovecot, new_imap_user, tmp_path) -> None:
    """A rule names a folder Dovecot refuses ('~' at the start): an error naming it, nothing
    moved, and the messages are tried again next time."""
    env = new_imap_user(dovecot)
    mail = make_mail()
    fill(env, mail)
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "review"\ndecision = "backscatter"\nmove = "~Review"\n')
    lb = Lab(dovecot, env, tmp_path, mail, rules=[str(rules)])
    out = lb.cli("sweep", "--json")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    acc = json.loads(out.stdout)["accounts"][0]
    assert acc["errors"] == len(mail.backscatter)
    assert any("refused to create folder '~Review'" in n for n in acc["notes"]), acc["notes"]
    assert len(read(env, "INBOX")) == len(mail.inbox) and read(env, "Junk") == []
    again = json.loads(lb.cli("sweep", "--json").stdout)["accounts"][0]
    assert again["errors"] == len(mail.backscatter), "still waiting, not forgotten"


def test_small_line_limit_sweep_still_exact(dovecot_factory, new_imap_user, tmp_path) -> None:
    """Dovecot with a 2 kB command line limit and 300 scattered backscatter UIDs."""
    server = dovecot_factory(no_move=True, max_line=2048)
    env = new_imap_user(server)
    mail = make_mail(n_backscatter=300, n_keep=4)
    for i in range(150):
        mail.inbox.insert(2 * i + 1, (tagged(bounces.ordinary(), f"ord{i}"), ()))
        mail.keep.add(f"ord{i}")
    fill(env, mail)
    lb = Lab(server, env, tmp_path, mail, **CONFIG["copy-protect"])
    out = lb.cli("sweep")
    assert out.returncode == 0, out.stderr
    lb.check()


# ---------------------------------------------------------------- two sweeps at once


def test_account_locked_by_another_sweep(dovecot, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot)
    mail = make_mail()
    fill(env, mail)
    lb = Lab(dovecot, env, tmp_path, mail)
    with account_lock(lb.state_dir, "lab"):
        out = lb.cli("sweep")
    assert out.returncode != 0
    assert "another ndr-sweeper is sweeping account 'lab'" in out.stderr
    assert "Traceback" not in out.stderr
    assert read(env, "Junk") == []
    assert lb.cli("sweep").returncode == 0
    lb.check()


@pytest.mark.parametrize("shape", ["move", "copy-plain"])
def test_two_sweeps_started_together(dovecot_factory, new_imap_user, tmp_path, shape) -> None:
    server = dovecot_factory(**SERVERS[shape])
    env = new_imap_user(server)
    mail = make_mail(n_backscatter=200)
    fill(env, mail)
    lb = Lab(server, env, tmp_path, mail, **CONFIG.get(shape, {}))
    env_vars = {**__import__("os").environ, **lb.xdg, "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "ndr_sweeper", "sweep", "--json", "--config", str(lb.config)]
    procs = [
        subprocess.Popen(
            cmd, cwd=REPO, env=env_vars, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        if p.returncode == 7:
            # Both creating a fresh state database at once: one is refused before acting.
            assert "busy: run again; nothing was acted on" in err, err
            docs.append({"acted": 0, "error": "another ndr-sweeper is sweeping (state busy)"})
        else:
            docs.append(json.loads(out)["accounts"][0])
    acted = sorted(d["acted"] for d in docs)
    # One is refused by the lock (or finds nothing left to do): never both acting.
    assert acted == [0, len(mail.backscatter)], docs
    for d in docs:
        assert d["error"] is None or "another ndr-sweeper is sweeping" in d["error"], d
    lb.check()


# ---------------------------------------------------------------- a server that says nothing


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never sends a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    for s in held:
        s.close()
    srv.close()


def test_silent_server_times_out_and_other_accounts_are_swept(
    dovecot, new_imap_user, tmp_path, silent_server
) -> None:
    env = new_imap_user(dovecot)
    mail = make_mail()
    fill(env, mail)
    lb = Lab(dovecot, env, tmp_path, mail)
    text = lb.config.read_text()
    silent = text.replace('"lab"', '"silent"').replace(str(env.port), str(silent_server))
    lb.config.write_text(silent + 'timeout = "1s"\n\n' + text)
    started = time.monotonic()
    out = lb.cli("sweep", "--json")
    took = time.monotonic() - started
    assert took < 15, f"the 1 s timeout did not fire ({took:.1f} s)"
    assert out.returncode == 1 and "Traceback" not in out.stderr
    by_name = {a["account"]: a for a in json.loads(out.stdout)["accounts"]}
    assert "timed out" in by_name["silent"]["error"]
    assert "\n" not in by_name["silent"]["error"]
    assert by_name["lab"]["error"] is None and by_name["lab"]["acted"] == len(mail.backscatter)
    lb.check()


def test_server_stuck_on_its_own_lock_is_a_one_line_timeout(dovecot, new_imap_user, tmp_path):
    """Dovecot waiting on a stale lock (an empty dotlock a crashed process left: it trusts one
    for two minutes) answers nothing: the sweep says which command went unanswered and for how
    long, touches nothing, and the next sweep, once the lock is gone, does the work."""
    env = new_imap_user(dovecot)
    mail = make_mail()
    fill(env, mail)
    lb = Lab(dovecot, env, tmp_path, mail)
    lb.config.write_text(lb.config.read_text() + 'timeout = "1s"\n')
    maildir = dovecot.dir / "mail" / env.user / "Maildir"
    lock = maildir / "dovecot-uidlist.lock"
    lock.write_bytes(b"")  # created, killed before the PID was written
    delivered = maildir / "new" / "1700000000.lab.stale"  # so that STATUS must sync
    delivered.write_bytes(bounces.ordinary())
    for path in (lock, delivered):
        os.chown(path, dovecot._muid, dovecot._mgid)
    out = lb.cli("sweep", "--json")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    error = json.loads(out.stdout)["accounts"][0]["error"]
    assert re.search(r"did not answer (STATUS|SELECT) on folder 'INBOX' within 1 s", error), error
    assert "\n" not in error and "lost" not in error
    assert read(env, "Junk") == []
    lock.unlink()
    done = lb.cli("sweep", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["accounts"][0]["acted"] == len(mail.backscatter)


# ---------------------------------------------------------------- the state database


def test_corrupt_state_database_refuses_to_act(dovecot, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot)
    mail = make_mail()
    fill(env, mail)
    lb = Lab(dovecot, env, tmp_path, mail)
    lb.state_dir.mkdir(parents=True, exist_ok=True)
    (lb.state_dir / "state.db").write_bytes(b"this is not a database" * 100)
    out = lb.cli("sweep")
    assert out.returncode == 7, out.stderr
    assert "damaged" in out.stderr and "move it aside" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert read(env, "Junk") == [], "no journal, no action"
    (lb.state_dir / "state.db").rename(lb.state_dir / "state.db.bad")
    assert lb.cli("sweep").returncode == 0
    lb.check()


def test_deleted_state_database_is_rebuilt(dovecot, new_imap_user, tmp_path) -> None:
    """After the first sweep the state directory is deleted: the next sweep rebuilds the Sent
    index from the server and moves nothing a second time (the own bounces stay)."""
    env = new_imap_user(dovecot)
    mail = make_mail()
    fill(env, mail)
    lb = Lab(dovecot, env, tmp_path, mail)
    assert lb.cli("sweep").returncode == 0
    import shutil

    shutil.rmtree(lb.state_dir)
    late = tagged(bounces.dsn(bounces.new_id("forged")), "late")
    client = env.connect()
    lab.append_messages(client, "INBOX", [late])
    client.logout()
    mail.backscatter.add("late")
    out = lb.cli("sweep", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["accounts"][0]["acted"] == 1
    lb.check()
    for p in [lb.state_dir, *lb.state_dir.rglob("*")]:
        mode = p.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{p} is {oct(mode)}: others may read it"


def test_unwritable_state_refuses_to_act(dovecot, new_imap_user, tmp_path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes through file permissions")
    env = new_imap_user(dovecot)
    mail = make_mail()
    fill(env, mail)
    lb = Lab(dovecot, env, tmp_path, mail)
    lb.state_dir.mkdir(parents=True)
    lb.state_dir.chmod(0o500)
    try:
        out = lb.cli("sweep")
    finally:
        lb.state_dir.chmod(0o700)
    assert out.returncode == 7 and "Traceback" not in out.stderr
    assert read(env, "Junk") == []


@pytest.fixture
def slow_proxy(dovecot) -> Iterator[int]:
    """A TCP proxy to the lab server that holds every chunk from the server back 30 ms."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.1)
    stop = threading.Event()

    def pump(a: socket.socket, b: socket.socket, delay: float) -> None:
        try:
            while data := a.recv(65536):
                time.sleep(delay)
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client = srv.accept()[0]
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", dovecot.port))
            for a, b, d in ((client, upstream, 0.0), (upstream, client, 0.03)):
                threading.Thread(target=pump, args=(a, b, d), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()


def test_slow_server_within_the_timeout_is_swept(dovecot, new_imap_user, tmp_path, slow_proxy):
    env = new_imap_user(dovecot)
    mail = make_mail()
    fill(env, mail)
    lb = Lab(dovecot, env, tmp_path, mail, port=slow_proxy, timeout="2s")
    out = lb.cli("sweep")
    assert out.returncode == 0, out.stderr
    lb.check()
