"""The ``login`` / ``logout`` commands: passwords in the keyring, OAuth2 through the CLI.

The CLI tests run ``python -m ndr_sweeper`` in a subprocess.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backends.fail
import pytest

from ndr_sweeper import credentials, oauth2
from ndr_sweeper.errors import AuthenticationError, CredentialError
from ndr_sweeper.login import cmd_login, cmd_logout

import lab

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]),
        "PYTHON_KEYRING_BACKEND": "lab.FileKeyring",
        "NDR_TEST_KEYRING": str(tmp_path / "keyring.json"),
    }
    env.update(extra)
    return env


def run_cli(tmp_path: Path, *args: str, stdin: str = "", **extra: str):
    return subprocess.run(
        [sys.executable, "-m", "ndr_sweeper", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(tmp_path, **extra),
        cwd=REPO,
        timeout=120,
    )


def write_config(path: Path, name: str, host: str, port: int, user: str, **keys: object) -> Path:
    values: dict[str, object] = {
        "name": name,
        "host": host,
        "port": port,
        "security": "plain",
        "username": user,
        "min_age": "0s",
        "timeout": "10s",
    }
    values.update(keys)
    lines = [f'state_dir = "{path.parent / "state"}"', "[[accounts]]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def args(config: Path, account: str, **flags: bool) -> argparse.Namespace:
    values = {"password_stdin": False, "device": False, "no_browser": False, "no_verify": False}
    values.update(flags)
    return argparse.Namespace(config=str(config), account=account, **values)


@pytest.fixture
def file_keyring(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "keyring.json"
    old = keyring.get_keyring()
    keyring.set_keyring(lab.FileKeyring.backend(path))
    yield path
    keyring.set_keyring(old)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    oauth2._cache.clear()
    yield
    oauth2._cache.clear()


def stored(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.exists() else {}


# --------------------------------------------------------------------------- passwords


@pytest.mark.imap
def test_password_from_stdin_is_checked_then_stored(
    imap_user: lab.LabEnv,
    tmp_path: Path,
    file_keyring: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = write_config(tmp_path / "c.toml", "lab", imap_user.host, imap_user.port, imap_user.user)
    monkeypatch.setattr(sys, "stdin", io.StringIO(imap_user.password + "\n"))
    assert cmd_login(args(cfg, "lab", password_stdin=True)) == 0
    assert stored(file_keyring) == {"ndr-sweeper\0lab": imap_user.password}
    out = capsys.readouterr()
    assert out.out == "lab: password stored in the keyring; logging in to 127.0.0.1 works\n"
    assert imap_user.password not in out.out + out.err


@pytest.mark.imap
def test_refused_password_is_not_stored(
    dovecot_factory, tmp_path: Path, file_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = dovecot_factory()  # private: a failed login brings an auth penalty
    cfg = write_config(tmp_path / "c.toml", "lab", "127.0.0.1", server.port, server.user)
    monkeypatch.setattr(sys, "stdin", io.StringIO("wrong\n"))
    with pytest.raises(AuthenticationError, match="refused"):
        cmd_login(args(cfg, "lab", password_stdin=True))
    assert stored(file_keyring) == {}


def test_no_verify_and_getpass_on_a_terminal(
    tmp_path: Path, file_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    cfg = write_config(tmp_path / "c.toml", "lab", "127.0.0.1", 1, "me")
    prompts: list[str] = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: prompts.append(prompt) or "s3cret")
    assert cmd_login(args(cfg, "lab", no_verify=True)) == 0
    assert prompts == ["Password for me at 127.0.0.1: "]
    assert stored(file_keyring) == {"ndr-sweeper\0lab": "s3cret"}


def test_no_terminal_needs_password_stdin(
    tmp_path: Path, file_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_config(tmp_path / "c.toml", "lab", "127.0.0.1", 1, "me")
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))
    with pytest.raises(CredentialError, match=r"stdin is not a terminal.*--password-stdin"):
        cmd_login(args(cfg, "lab"))
    assert stored(file_keyring) == {}


def test_no_keyring_fails_before_asking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_config(tmp_path / "c.toml", "lab", "127.0.0.1", 1, "me")
    stdin = io.StringIO("s3cret\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    old = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        with pytest.raises(CredentialError) as info:
            cmd_login(args(cfg, "lab", password_stdin=True))
    finally:
        keyring.set_keyring(old)
    assert str(info.value) == (
        "no keyring backend to keep the password of account 'lab': " + credentials._NO_KEYRING_FIX
    )
    assert stdin.tell() == 0  # nothing was read


def test_cli_without_keyring_prints_one_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", "lab", "127.0.0.1", 1, "me")
    res = run_cli(
        tmp_path,
        "login",
        "lab",
        "--config",
        str(cfg),
        "--password-stdin",
        stdin="s3cret\n",
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    assert res.returncode == CredentialError.exit_code
    assert res.stdout == ""
    assert res.stderr == (
        "ndr-sweeper: error: no keyring backend to keep the password of account 'lab': "
        + credentials._NO_KEYRING_FIX
        + "\n"
    )


def test_logout_forgets_password_and_token(
    tmp_path: Path, file_keyring: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "c.toml", "lab", "127.0.0.1", 1, "me")
    credentials.set_password("lab", "pw")
    credentials.set_refresh_token("lab", "rt-1")
    assert cmd_logout(args(cfg, "lab")) == 0
    assert stored(file_keyring) == {}
    assert cmd_logout(args(cfg, "lab")) == 0
    assert capsys.readouterr().out == (
        "lab: forgot the stored password and OAuth2 token\nlab: nothing was stored in the keyring\n"
    )


def test_logout_of_an_account_no_longer_configured(
    tmp_path: Path, file_keyring: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "c.toml", "lab", "127.0.0.1", 1, "me")
    credentials.set_password("old", "pw")
    assert cmd_logout(args(cfg, "old")) == 0
    assert stored(file_keyring) == {}
    out = capsys.readouterr()
    assert "no account named 'old'" in out.err and "forgetting" in out.err


# --------------------------------------------------------------------------- OAuth2


def _fetch_in_background(url: str) -> None:
    def fetch() -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=10) as resp:
            resp.read()

    threading.Thread(target=fetch, daemon=True).start()


@pytest.mark.imap
def test_cli_oauth2_login_then_sweep(
    token_server: lab.TokenServer, dovecot_oauth2: lab.DovecotLab, tmp_path: Path
) -> None:
    """`login --no-browser` in one process, `sweep` in another: the refresh token travels
    through the keyring, each sweep signs in with a fresh access token, none is printed."""
    cfg = write_config(
        tmp_path / "c.toml",
        "hosted",
        "127.0.0.1",
        dovecot_oauth2.port,
        token_server.user,
        **token_server.config(),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ndr_sweeper",
            "login",
            "hosted",
            "--config",
            str(cfg),
            "--no-browser",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(tmp_path),
        cwd=REPO,
    )
    assert proc.stderr is not None
    err_lines = []
    for line in proc.stderr:  # the user reads the URL and opens it
        err_lines.append(line)
        if line.startswith(token_server.base + "/authorize?"):
            _fetch_in_background(line.strip())
            break
    out, rest = proc.communicate(timeout=60)
    err = "".join(err_lines) + rest
    assert proc.returncode == 0, err
    assert out == "hosted: signed in, OAuth2 token stored in the keyring; 127.0.0.1 accepts it\n"
    keys = json.loads((tmp_path / "keyring.json").read_text())
    assert keys["ndr-sweeper\0hosted:oauth2-refresh-token"] in token_server.refresh_tokens()

    res = run_cli(tmp_path, "--log-level", "debug", "sweep", "--config", str(cfg), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["ok"] is True
    assert token_server.grants == ["authorization_code", "refresh_token"]
    methods = dovecot_oauth2.log_matches(r"method=(\w+)", at_least=2)
    assert methods.count("OAUTHBEARER") >= 2  # login's check, then the sweep

    token_server.revoke()
    res2 = run_cli(tmp_path, "sweep", "--config", str(cfg))
    assert res2.returncode != 0
    assert "run `ndr-sweeper login hosted` again" in res2.stderr
    assert "Traceback" not in res2.stderr

    everything = err + out + res.stdout + res.stderr + res2.stdout + res2.stderr
    for token in token_server.issued:
        assert token not in everything


def test_login_refuses_password_flags_for_oauth2(
    token_server: lab.TokenServer, tmp_path: Path, file_keyring: Path
) -> None:
    cfg = write_config(
        tmp_path / "c.toml", "hosted", "127.0.0.1", 1, token_server.user, **token_server.config()
    )
    res = run_cli(tmp_path, "login", "hosted", "--config", str(cfg), "--password-stdin")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "drop --password-stdin" in res.stderr
    res = run_cli(tmp_path, "login", "hosted", "--config", str(cfg), "--device")
    assert res.returncode == CredentialError.exit_code
    assert "set oauth2_device_url" in res.stderr and res.stderr.count("\n") == 1


def test_login_says_when_the_keyring_cannot_work_unattended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """keyrings.cryptfile asks for its own password on every run: cron and the service
    cannot type it. login says so, and what to use instead."""
    from keyrings import MemoryKeyring

    class CryptFileKeyring(MemoryKeyring):  # what keyrings.cryptfile's backend is called
        pass

    old = keyring.get_keyring()
    keyring.set_keyring(CryptFileKeyring())
    try:
        cfg = write_config(tmp_path / "c.toml", "lab", "127.0.0.1", 1, "me")
        monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))
        assert cmd_login(args(cfg, "lab", password_stdin=True, no_verify=True)) == 0
    finally:
        keyring.set_keyring(old)
    err = capsys.readouterr().err
    assert "asks for its own password on every run" in err and "password_command" in err


def test_no_warning_for_a_keyring_that_works_unattended(file_keyring: Path) -> None:
    from ndr_sweeper.credentials import unattended_problem

    assert unattended_problem() is None
