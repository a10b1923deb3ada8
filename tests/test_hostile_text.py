"""Text a server or a message sends never reaches the terminal, a log line or the state
database raw: the real CLI against a hostile IMAP server (a small fake: its answers are the
point), a hostile message file, and folder names with C1 and bidi controls on the lab Dovecot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import imap_utf7

import bounces
import lab
from test_sweep_imap import REPO, run_cli, write_config, xdg_dirs

# An OSC title, an OSC 52 clipboard write, a clear-screen and cursor-home, a C1 CSI (U+009B),
# a right-to-left override, DEL.
HOSTILE = "\x1b]0;pwned\x07 \x1b]52;c;ZXZpbA==\x07 \x1b[2J\x1b[H \x9b31m \u202eevil \x7f end"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def raw_controls(text: str) -> list[str]:
    """Characters a terminal acts on, other than the newlines between our own lines."""
    return [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F or c in BIDI]


def assert_clean(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        found = raw_controls(text)
        assert not found, f"{what}: {name} holds {found!r}:\n{text}"


class HostileImap:
    """Answers like an IMAP server, with hostile text in every answer the client shows.

    User ``refused``: LOGIN NO with HOSTILE. Anyone else: logged in; LIST names two \\Sent
    folders, one with ESC, C1 and bidi in its name (never named in a command: ignored with a
    warning); STATUS and SELECT are refused with HOSTILE.
    """

    # "Sent" + ESC ] 0 ; x BEL ESC [ 2 J (raw, as a careless server sends them) + U+009B
    # U+202E (in modified UTF-7, as IMAP names carry non-ASCII).
    SENT = b"Sent\x1b]0;x\x07\x1b[2J" + imap_utf7.encode("\x9b\u202e")

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.commands: list[bytes] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        hostile = HOSTILE.encode()
        with conn, conn.makefile("rb") as f:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 SPECIAL-USE] ready\r\n")
            for line in f:
                self.commands.append(line)
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                cmd = rest.split(b" ", 1)[0].upper()
                if cmd == b"CAPABILITY":
                    out = b"* CAPABILITY IMAP4rev1 SPECIAL-USE\r\n" + tag + b" OK done\r\n"
                elif cmd == b"LOGIN":
                    refused = rest.split(b" ")[1] == b"refused"
                    out = tag + (b" NO " + hostile if refused else b" OK in") + b"\r\n"
                elif cmd == b"LIST" and b'"INBOX"' in rest:
                    out = b'* LIST () "/" INBOX\r\n' + tag + b" OK done\r\n"
                elif cmd == b"LIST":
                    out = (
                        b'* LIST () "/" INBOX\r\n* LIST (\\Junk) "/" Junk\r\n'
                        b'* LIST (\\Sent) "/" "Sent Items"\r\n'
                        b'* LIST (\\Sent) "/" "' + self.SENT + b'"\r\n' + tag + b" OK done\r\n"
                    )
                elif cmd in (b"STATUS", b"SELECT", b"EXAMINE"):
                    out = tag + b" NO " + hostile + b"\r\n"
                elif cmd == b"LOGOUT":
                    conn.sendall(b"* BYE bye\r\n" + tag + b" OK bye\r\n")
                    return
                else:
                    out = tag + b" BAD unknown command\r\n"
                conn.sendall(out)

    def close(self) -> None:
        # close() alone does not wake an accept() blocked in another thread (Linux): the socket
        # would go on listening, and a later test's connection to a reused port number would
        # meet this server (CI saw a journal test's sweep get these answers). shutdown() does.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._acceptor.join(5)


@pytest.fixture
def hostile() -> Iterator[HostileImap]:
    server = HostileImap()
    yield server
    server.close()


def hostile_config(path: Path, port: int) -> Path:
    account = (
        f'host = "127.0.0.1"\nport = {port}\nsecurity = "plain"\n'
        'password_command = "printf %s pw-hostile"\ntimeout = "10s"\n'
    )
    path.write_text(
        f'[[accounts]]\nname = "evil"\nusername = "me"\n{account}'
        f'[[accounts]]\nname = "refused"\nusername = "refused"\n{account}'
    )
    path.chmod(0o600)
    return path


def test_hostile_server_text_is_escaped_everywhere(hostile: HostileImap, tmp_path: Path) -> None:
    xdg = xdg_dirs(tmp_path)
    cfg = str(hostile_config(tmp_path / "config.toml", hostile.port))
    seen = ""
    for args in (
        ["sweep", "-v"],
        ["sweep", "--dry-run"],
        ["sweep", "-q"],
        ["sweep", "--json"],
        ["sweep", "-v", "--log-level", "debug"],
        ["history"],
        ["history", "--json"],
        ["status"],
        ["status", "--json"],
    ):
        result = run_cli(xdg, *args, "--config", cfg)
        assert_clean(result, " ".join(args))
        seen += result.stdout + result.stderr
    # Shown, escaped: not dropped.
    assert "\\x1b]0;pwned\\x07" in seen or "\\\\x1b]0;pwned\\\\x07" in seen
    # a Sent folder's name holds control characters: no command may name it, and the warning
    # that says so shows it escaped
    assert "'Sent\\x1b]0;x\\x07\\x1b[2J&AJsgLg-'" in seen
    assert b"LOGIN refused" in b"".join(hostile.commands)  # both accounts were tried
    db = Path(xdg["XDG_STATE_HOME"]) / "ndr-sweeper" / "state.db"
    stored = 0
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                for value in row:
                    if isinstance(value, str):
                        assert not raw_controls(value), (table, value)
                        stored += "pwned" in value
    assert stored, "the server's answer should be in the runs' errors, escaped"


def test_service_log_lines_escape_server_text(hostile: HostileImap, tmp_path: Path) -> None:
    xdg = xdg_dirs(tmp_path)
    cfg = hostile_config(tmp_path / "config.toml", hostile.port)
    log_path = tmp_path / "service.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ndr_sweeper", "run", "--config", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **xdg, "NO_COLOR": "1"},
            cwd=REPO,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                text = log_path.read_text(errors="replace")
                if "evil: STATUS" in text and "refused: login" in text:
                    break
                assert proc.poll() is None, text
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    text = log_path.read_bytes().decode("utf-8")
    assert "evil: STATUS" in text and "refused: login" in text, text
    assert "pwned" in text
    assert not raw_controls(text), text


HOSTILE_MESSAGE = (
    'From: "Mail Delivery System \x1b]0;t\x07" <MAILER-DAEMON@example.org>\r\n'
    "To: me@example.com\r\n"
    "Subject: =?utf-8?q?Undelivered_Mail_=1B]52;c;ZXZpbA=3D=3D=07_=C2=9B2J_=E2=80=AE?=\r\n"
    "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    "Message-ID: <bounce.1@example.org>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n'
    "\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
    "<nobody@example.net>: 550 5.1.1 no such user \x1b[31mred\x1b[0m \r\n"
    "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
    "Reporting-MTA: dns; mx.example.org\r\n\r\n"
    "Final-Recipient: rfc822; nobody\x1b[2J@example.net\r\n"
    "Action: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 \x1b]0;title\x07 user unknown \u202e [bold]x[/bold]\r\n"
    "\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    "From: me@example.com\r\nTo: nobody@example.net\r\n"
    "Subject: hi \x1b[2J there \x85 [red]x\r\nMessage-ID: <orig.1@example.com>\r\n"
    "\r\n--b--\r\n"
)


def test_explain_escapes_a_hostile_message(tmp_path: Path) -> None:
    path = tmp_path / "hostile.eml"
    path.write_bytes(HOSTILE_MESSAGE.encode("utf-8"))
    xdg = xdg_dirs(tmp_path)
    shown = run_cli(xdg, "explain", str(path))
    assert_clean(shown, "explain")
    out = shown.stdout
    assert "\\x1b]52;c;ZXZpbA==\\x07 \\x9b2J \\u202e" in out  # the decoded Subject
    assert "nobody\\x1b[2J@example.net" in out and "\\x1b]0;title\\x07" in out
    assert "[bold]x[/bold]" in out  # rich markup shown as text, not applied
    as_json = run_cli(xdg, "explain", "--json", str(path))
    assert_clean(as_json, "explain --json")
    import json

    data = json.loads(as_json.stdout)
    # JSON keeps the data exactly: only its spelling is escaped.
    assert data["subject"] == "Undelivered Mail \x1b]52;c;ZXZpbA==\x07 \x9b2J \u202e"
    assert "\\u009b" in as_json.stdout and "\\u202e" in as_json.stdout


@pytest.mark.imap
def test_folder_names_with_controls_on_dovecot(dovecot, new_imap_user, tmp_path: Path) -> None:
    """Dovecot refuses C0 controls in folder names but takes C1 and bidi ones."""
    env = new_imap_user(dovecot)
    folder = "Bounces\x9b2J\u202eevil"
    bounce_id = bounces.new_id("bs")
    client = env.connect()
    try:
        client.create_folder(folder)
        lab.append_messages(
            client, folder, [bounces.dsn(bounces.new_id("forged"), bounce_id=bounce_id)]
        )
    finally:
        client.logout()
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env, folders=[folder])
    for args in (["sweep", "-v", "--dry-run"], ["sweep", "-v"], ["undo", "--last"], ["history"]):
        result = run_cli(xdg, *args, "--config", str(cfg))
        assert result.returncode == 0, result.stderr
        assert_clean(result, " ".join(args))
        if args[0] == "sweep":
            assert "lab Bounces\\x9b2J\\u202eevil #1: " in result.stdout, result.stdout
    client = env.connect()
    try:
        assert [e.message_id for e in lab.read_folder(client, folder)] == [bounce_id]
    finally:
        client.logout()
