"""`ndr-sweeper check` and `ndr-sweeper folders` against the lab Dovecot (a good account, a
wrong password, a missing Junk, a port nobody listens on, a certificate from a CA the
account does not trust) and against the fake server (a server without MOVE, UIDPLUS, IDLE
and CONDSTORE). Every screen fits 80 columns through a pipe."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

import lab
from fakeimap import DEFAULT_CAPABILITIES
from test_sweep_imap import run_cli, write_config, xdg_dirs


def lines_fit(text: str) -> None:
    for line in text.splitlines():
        assert len(line) <= 80, f"{len(line)} columns: {line!r}"


def run(xdg, cfg, *args):  # type: ignore[no-untyped-def]
    return run_cli(xdg, *args, "--config", str(cfg), env_extra={"COLUMNS": "80"})


def statuses(result) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    doc = json.loads(result.stdout)
    return {c["check"]: (c["status"], c["detail"]) for c in doc["checks"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.imap
def test_check_good_account_over_tls(dovecot, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(
        tmp_path / "c.toml",
        env,
        security="tls",
        port=env.tls_port,
        tls_ca_file=env.cafile,
        host="localhost",
    )
    result = run(xdg, cfg, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines_fit(result.stdout)
    text = result.stdout
    for name in ("config", "secret", "server", "tls", "login", "folders", "capabilities", "state"):
        assert any(line.split()[1:2] == [name] for line in text.splitlines()), name
    assert "FAIL" not in text and "everything checked is in place" in text
    js = statuses(run(xdg, cfg, "check", "--json"))
    assert js["tls"][0] == "OK" and "trusted by tls_ca_file" in js["tls"][1]
    assert js["folders"] == ("OK", "Sent: Sent; Junk: Junk")
    assert js["capabilities"][0] == "OK" and "MOVE UIDPLUS IDLE CONDSTORE" in js["capabilities"][1]
    assert js["state"][0] == "OK"


@pytest.mark.imap
def test_check_wrong_password(dovecot_factory, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot_factory())  # a private server: failed logins bring penalties
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env, password_command="printf %s Wr0ng-pw")
    result = run(xdg, cfg, "check", "--json")
    assert result.returncode == 1
    js = statuses(result)
    assert js["secret"][0] == "OK" and js["server"][0] == "OK" and js["tls"][0] == "SKIP"
    assert js["login"][0] == "FAIL" and "refused" in js["login"][1]
    assert "ndr-sweeper login lab" in js["login"][1]
    assert js["folders"][0] == js["capabilities"][0] == "SKIP"
    assert "Wr0ng-pw" not in result.stdout + result.stderr
    plain = run(xdg, cfg, "check")
    assert plain.returncode == 1 and "1 check(s) failed" in plain.stdout
    lines_fit(plain.stdout)


@pytest.mark.imap
def test_check_missing_junk(dovecot, new_imap_user, tmp_path) -> None:
    """The lab creates Junk for every user (Dovecot's auto = subscribe brings a deleted one
    back), so the missing Junk here is the one the config names."""
    env = new_imap_user(dovecot)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env, junk_folder="Spam")
    result = run(xdg, cfg, "check", "--json")
    assert result.returncode == 1
    status, detail = statuses(result)["folders"]
    assert status == "FAIL" and "'Spam'" in detail and "fix junk_folder" in detail
    # folders shows the same, without failing: it is there to look
    listing = run(xdg, cfg, "folders")
    assert listing.returncode == 0, listing.stderr
    lines_fit(listing.stdout)
    words = " ".join(listing.stdout.split())
    assert "Junk: none found" in words and "fix junk_folder" in words


def test_check_and_folders_without_any_junk(fake_imap, tmp_path) -> None:
    server = fake_imap(folders={"INBOX": (), "Sent": ("\\Sent",), "Trash": ("\\Trash",)})
    xdg = xdg_dirs(tmp_path)
    cfg = fake_config(tmp_path, server)
    result = run(xdg, cfg, "check", "--json")
    assert result.returncode == 1
    status, detail = statuses(result)["folders"]
    assert status == "FAIL" and "no junk folder found" in detail and "junk_folder" in detail
    listing = run(xdg, cfg, "folders")
    assert listing.returncode == 0 and "set junk_folder" in " ".join(listing.stdout.split())


def fake_config(tmp_path: Path, server) -> Path:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[[accounts]]\nname = "fake"\nhost = "127.0.0.1"\n'
        f'port = {server.port}\nsecurity = "plain"\nusername = "user"\n'
        'password_command = "printf %s secret"\n'
    )
    cfg.chmod(0o600)
    return cfg


@pytest.mark.imap
def test_check_unreachable_port(dovecot, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env, port=free_port(), timeout="5s")
    result = run(xdg, cfg, "check", "--json")
    assert result.returncode == 1
    js = statuses(result)
    assert js["server"][0] == "FAIL" and "cannot reach" in js["server"][1]
    assert "check host, port" in js["server"][1]
    assert js["login"] == ("SKIP", "the server is not reached")


@pytest.mark.imap
def test_check_certificate_from_an_untrusted_ca(dovecot, new_imap_user, tmp_path) -> None:
    """The lab's certificate is signed by its own CA; an account without tls_ca_file (the
    system's CAs), or with another lab's CA, must not trust it."""
    env = new_imap_user(dovecot)
    other = lab.DovecotLab()  # only for its CA certificate; never started
    try:
        xdg = xdg_dirs(tmp_path)
        for extra in ({}, {"tls_ca_file": other.cafile}):
            cfg = write_config(
                tmp_path / "c.toml", env, security="tls", port=env.tls_port, host="localhost",
                **extra,
            )  # fmt: skip
            result = run(xdg, cfg, "check", "--json")
            assert result.returncode == 1
            js = statuses(result)
            assert js["server"][0] == "OK"
            assert js["tls"][0] == "FAIL" and "not trusted" in js["tls"][1]
            assert "tls_ca_file" in js["tls"][1]
            assert js["login"] == ("SKIP", "TLS failed")
    finally:
        other.cleanup()


def test_check_shows_what_a_bare_server_lacks(fake_imap, tmp_path) -> None:
    server = fake_imap(capabilities=DEFAULT_CAPABILITIES - {"MOVE", "UIDPLUS", "IDLE", "CONDSTORE"})
    xdg = xdg_dirs(tmp_path)
    cfg = fake_config(tmp_path, server)
    result = run(xdg, cfg, "check", "--json")
    assert result.returncode == 0, result.stdout + result.stderr  # warnings do not fail
    status, detail = statuses(result)["capabilities"]
    assert status == "WARN"
    assert detail.startswith("none;") and "no MOVE nor UIDPLUS" in detail
    assert "no IDLE" in detail and "no CONDSTORE" in detail
    plain = run(xdg, cfg, "check")
    lines_fit(plain.stdout)
    assert "WARN  capabilities" in plain.stdout


def test_folders_counts_and_roles_on_the_fake_server(fake_imap, tmp_path) -> None:
    folders = {
        "INBOX": (),
        "Sent Items": (),  # found by name
        "Sent": ("\\Sent",),
        "Spam": ("\\Junk",),
        "Trash": ("\\Trash",),
        "Archive": ("\\Archive",),
        "Projects": ("\\Noselect",),
        "Projects/\x1b[31mred": (),  # hostile name: escaped
    }
    folders.update({f"Lists/l{i:03}": () for i in range(30)})
    server = fake_imap(folders=folders)
    server.add("INBOX", b"Subject: a\r\n\r\nx\r\n")
    server.add("INBOX", b"Subject: b\r\n\r\nx\r\n")
    xdg = xdg_dirs(tmp_path)
    cfg = fake_config(tmp_path, server)
    result = run(xdg, cfg, "folders", "--json", "--count", "10")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    by = {f["name"]: f for f in doc["folders"]}
    assert doc["sent"] == ["Sent", "Sent Items"] and doc["junk"] == "Spam"
    assert doc["trash"] == "Trash"
    assert by["INBOX"]["messages"] == 2 and by["INBOX"]["roles"] == ["swept"]
    assert by["Sent"]["roles"] == ["sent"] and by["Spam"]["flags"] == ["\\Junk"]
    assert by["Projects"]["flags"] == ["\\Noselect"] and by["Projects"]["messages"] is None
    # only 10 folders counted: INBOX and the role folders first; the \Noselect one and the one
    # whose name holds a raw control byte (no command may name it) are not counted at all
    assert doc["uncounted"] == len(folders) - 2 - 10
    assert by["Archive"]["messages"] == 0 and by["Lists/l029"]["messages"] is None
    statuses_sent = [c for c in server.commands if c.verb == "STATUS"]
    assert len(statuses_sent) == 10
    screen = run(xdg, cfg, "folders", "--count", "10")
    lines_fit(screen.stdout)
    assert "\x1b" not in screen.stdout and "\\x1b" in screen.stdout
    assert "--count N" in screen.stdout


def test_folders_shows_the_junk_folder_the_sweep_uses() -> None:
    """`folders` chooses roles with the sweep's own functions: a swept folder flagged \\Junk is
    not shown as Junk (the sweep would not use it), and `sent_folders = ["inbox"]` names the
    inbox (INBOX in any case), as the sweep accepts it."""
    from ndr_sweeper.config import Account
    from ndr_sweeper.folders import roles_of
    from ndr_sweeper.mailbox.base import FolderInfo

    listing = [
        FolderInfo("INBOX", frozenset(), "/"),
        FolderInfo("Spam", frozenset({"\\Junk"}), "/"),
        FolderInfo("Junk", frozenset(), "/"),
        FolderInfo("Sent", frozenset({"\\Sent"}), "/"),
    ]
    acc = Account(name="t", host="h", username="u", folders=("INBOX", "Spam"))
    sent, junk, _trash, _notes = roles_of(listing, acc, "")
    assert junk == "Junk" and sent == ["Sent"]
    acc = Account(name="t", host="h", username="u", sent_folders=("inbox",))
    sent, _junk, _trash, notes = roles_of(listing, acc, "")
    assert sent == ["inbox"] and not [n for n in notes if "inbox" in n]
