"""A server at its limit is not a wrong password (issue 11): only an explicit refusal of the
credentials backs an account off for up to an hour; a connection closed at LOGIN, a BYE, a
NO [UNAVAILABLE], or a password_command this machine could not start are connection problems,
said so, and tried again at the next run."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from ndr_sweeper.errors import AuthenticationError, BusyError, CredentialError
from ndr_sweeper.mailbox.imap import ImapMailbox

from test_sweep_fake import env_of
from test_sweep_imap import run_cli, write_config, xdg_dirs


def login(server) -> ImapMailbox:  # type: ignore[no-untyped-def]
    return ImapMailbox.connect(
        server.host, server.port, "plain", server.user, server.password, timeout=5
    )


@pytest.mark.parametrize(
    ("script", "busy"),
    [
        (lambda r: r.cut_before(), True),  # the server closed the connection (process limit)
        (lambda r: r.send_instead(b"* BYE Too many connections, try later\r\n"), True),
        (lambda r: r.answer_no("[UNAVAILABLE] Temporary authentication failure", do=False), True),
        (lambda r: r.answer_no("[SERVERBUG] internal error", do=False), True),
        (lambda r: r.answer_no("[AUTHENTICATIONFAILED] Authentication failed.", do=False), False),
        (lambda r: r.answer_no("Login failed.", do=False), False),
    ],
)
def test_what_a_failed_login_means(fake_imap, script, busy: bool) -> None:
    server = fake_imap()
    script(server.on("LOGIN"))
    with pytest.raises((BusyError, AuthenticationError)) as info:
        login(server)
    assert isinstance(info.value, BusyError) is busy, info.value
    text = str(info.value)
    assert ("check the password" in text) is not busy
    if busy:
        assert "not a password problem" in text and "\n" not in text


def test_the_cli_says_busy_not_wrong_password(fake_imap, tmp_path: Path) -> None:
    server = fake_imap()
    server.on("LOGIN").answer_no("[UNAVAILABLE] Too many logins", do=False)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env_of(server))
    out = run_cli(xdg, "sweep", "--json", "--config", str(cfg))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    error = json.loads(out.stdout)["accounts"][0]["error"]
    assert "busy or at its limit" in error and "check the password" not in error


def test_password_command_that_cannot_start_for_lack_of_descriptors(monkeypatch) -> None:
    import subprocess

    from ndr_sweeper import credentials

    def popen(*_a, **_k):  # type: ignore[no-untyped-def]
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(BusyError, match="Too many open files; the next run tries again"):
        credentials.run_secret_command("printf x", account="acc")

    def missing(*_a, **_k):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOENT, "No such file or directory")

    monkeypatch.setattr(subprocess, "Popen", missing)
    with pytest.raises(CredentialError):
        credentials.run_secret_command("printf x", account="acc")
