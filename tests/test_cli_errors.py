"""Bad input from the user, through the CLI as a subprocess: every config mistake is one line
naming the file, the key and the fix, with exit status 2 and no traceback; login and TLS
problems are one clear line; the password never shows up in any output or file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from test_sweep_imap import fill, run_cli, write_config, xdg_dirs

BASE = '[[accounts]]\nname = "work"\nhost = "imap.example.org"\nusername = "me"\n'

CASES = [
    # (id, file text or None for a missing file, words the one line must hold)
    ("missing-file", None, ["no configuration file", "--config"]),
    ("bad-toml", '[[accounts]\nname = "work"\n', ["line 1", "invalid TOML"]),
    ("unknown-key", BASE + 'colour = "red"\n', ["accounts.work.colour", "unknown key", "remove"]),
    ("misspelt-key", BASE + 'juk_folder = "Spam"\n', ["accounts.work.juk_folder", "junk_folder"]),
    ("wrong-type", BASE + 'port = "993"\n', ["accounts.work.port", "integer"]),
    ("bad-choice", BASE + 'security = "ssl"\n', ["accounts.work.security", "tls"]),
    ("bad-duration", BASE + 'min_age = "soon"\n', ["accounts.work.min_age", "duration"]),
    (
        "plaintext-remote",
        BASE + 'security = "plain"\n',
        ["accounts.work.security", "unencrypted", "allow_plaintext = true"],
    ),
    ("secret-inline", BASE + 'password = "hunter2"\n', ["accounts.work.password", "login work"]),
    ("no-accounts", 'state_dir = "/tmp"\n', ["accounts"]),
]


def _one_line_error(result, path: str, words: list[str]) -> None:  # type: ignore[no-untyped-def]
    err = result.stderr.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert path in lines[0] or Path(path).name in lines[0]
    for w in words:
        assert w in lines[0], f"{w!r} missing from {lines[0]!r}"


@pytest.mark.parametrize(("text", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("command", ["sweep", "history", "undo --last", "status"])
def test_config_mistakes_are_one_line_with_status_2(tmp_path, command, text, words) -> None:
    xdg = xdg_dirs(tmp_path)
    path = tmp_path / "config.toml"
    if text is not None:
        path.write_text(text)
        path.chmod(0o600)
    result = run_cli(xdg, *command.split(), "--config", str(path))
    assert result.returncode == 2, result.stderr
    _one_line_error(result, str(path), words)
    assert "hunter2" not in result.stderr + result.stdout


def test_unknown_account_names_the_known_ones(tmp_path) -> None:
    xdg = xdg_dirs(tmp_path)
    path = tmp_path / "config.toml"
    path.write_text(BASE)
    path.chmod(0o600)
    result = run_cli(xdg, "sweep", "--account", "home", "--config", str(path))
    assert result.returncode == 2
    _one_line_error(result, str(path), ["no account named 'home'", "work"])


def test_config_from_environment_variable_is_named(tmp_path) -> None:
    xdg = xdg_dirs(tmp_path)
    missing = tmp_path / "elsewhere.toml"
    result = run_cli(xdg, "sweep", env_extra={"NDR_SWEEPER_CONFIG": str(missing)})
    assert result.returncode == 2
    assert str(missing) in result.stderr and "Traceback" not in result.stderr


def test_readable_config_with_inline_secret_is_warned_about(tmp_path) -> None:
    xdg = xdg_dirs(tmp_path)
    path = tmp_path / "config.toml"
    path.write_text(BASE + 'password_command = "printf %s s3cr3t"\n')
    path.chmod(0o644)
    result = run_cli(xdg, "history", "--config", str(path))
    assert "others can read this file" in result.stderr and "chmod 600" in result.stderr
    assert "s3cr3t" not in result.stderr
    path.chmod(0o600)
    assert "others can read" not in run_cli(xdg, "history", "--config", str(path)).stderr


# ---------------------------------------------------------------- login, host, certificate


def _all_text(result, state_root: Path) -> bytes:  # type: ignore[no-untyped-def]
    blob = (result.stdout + result.stderr).encode()
    for p in state_root.rglob("*"):
        if p.is_file():
            blob += p.read_bytes()
    return blob


@pytest.mark.imap
def test_password_never_printed_logged_or_stored(dovecot, new_imap_user, tmp_path) -> None:
    """A sweep with debug logging that succeeds, and one with a wrong password: the password
    is in no output and no state file (database, WAL, locks)."""
    env = new_imap_user(dovecot)
    fill(env)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env)
    ok = run_cli(xdg, "--log-level", "debug", "sweep", "--json", "-v", "--config", str(cfg))
    assert ok.returncode == 0, ok.stderr
    hist = run_cli(xdg, "history", "--json", "--config", str(cfg))
    undo = run_cli(xdg, "--log-level", "debug", "undo", "--last", "--config", str(cfg))
    assert undo.returncode == 0, undo.stderr
    state_root = Path(xdg["XDG_STATE_HOME"])
    for r in (ok, hist, undo):
        assert env.password.encode() not in _all_text(r, state_root)

    wrong = "Wr0ng-" + os.urandom(4).hex()
    bad_cfg = write_config(tmp_path / "bad.toml", env, password_command=f"printf %s {wrong}")
    bad = run_cli(xdg, "--log-level", "debug", "sweep", "--config", str(bad_cfg))
    assert bad.returncode != 0
    assert "refused" in bad.stderr  # (debug logging shows the traceback, on purpose)
    assert wrong.encode() not in _all_text(bad, state_root)
    # state files and the journal are private
    for p in state_root.rglob("*"):
        if p.is_file():
            assert p.stat().st_mode & 0o077 == 0, f"{p} is readable by others"


def test_unknown_host_is_one_clear_line(tmp_path) -> None:
    xdg = xdg_dirs(tmp_path)
    path = tmp_path / "config.toml"
    path.write_text(
        '[[accounts]]\nname = "work"\nhost = "no-such-host.invalid"\nusername = "me"\n'
        'password_command = "printf %s pw-123456"\ntimeout = "5s"\n'
    )
    path.chmod(0o600)
    result = run_cli(xdg, "sweep", "-q", "--config", str(path))
    assert result.returncode == 1
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "unknown host" in err and "no-such-host.invalid" in err and "check host" in err
    assert "pw-123456" not in err


@pytest.mark.imap
def test_certificate_for_another_name_is_refused(dovecot, new_imap_user, tmp_path) -> None:
    """The lab certificate is for localhost and 127.0.0.1; this machine's own name, which
    resolves to loopback here, is another name."""
    import socket

    name = socket.gethostname()
    try:
        if socket.gethostbyname(name) != "127.0.0.1" or name == "localhost":
            pytest.skip("the host name does not resolve to 127.0.0.1 here")
    except OSError:
        pytest.skip("the host name does not resolve here")
    env = new_imap_user(dovecot)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(
        tmp_path / "c.toml",
        env,
        security="tls",
        port=env.tls_port,
        tls_ca_file=env.cafile,
        host=name,
        allow_plaintext=False,
    )
    result = run_cli(xdg, "sweep", "--json", "--config", str(cfg))
    assert result.returncode == 1
    error = json.loads(result.stdout)["accounts"][0]["error"]
    assert error and "certificate" in error and "not trusted" in error, error
    assert "\n" not in error and "Traceback" not in result.stderr
    assert env.password not in result.stdout + result.stderr


@pytest.mark.imap
def test_state_database_is_private(dovecot, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot)
    fill(env)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env)
    old = os.umask(0o022)
    try:
        assert run_cli(xdg, "sweep", "--config", str(cfg)).returncode == 0
    finally:
        os.umask(old)
    state = Path(xdg["XDG_STATE_HOME"]) / "ndr-sweeper"
    assert (state / "state.db").stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700
