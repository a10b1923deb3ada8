"""`ndr-sweeper init`: every provider preset, the SRV and MX paths (through a resolver the
test controls: nothing leaves this machine), the config file it writes (0600, appended,
replaced only with --force, never a secret), its questions, and a whole run against the lab
Dovecot ending with the dry run."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ndr_sweeper import cli, dnsquery, providers
from ndr_sweeper.config import load_config
from ndr_sweeper.dnsquery import Mx, Srv

from test_providers import FakeResolver
from test_sweep_imap import REPO, fill, run_cli, xdg_dirs


@pytest.fixture
def env(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """XDG directories of the test; DNS answered by a FakeResolver (the test fills it)."""
    xdg = xdg_dirs(tmp_path)
    for k, v in xdg.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("NDR_SWEEPER_CONFIG", raising=False)
    fake = FakeResolver()
    monkeypatch.setattr(dnsquery, "DnsResolver", lambda *a, **k: fake)
    fake.config = Path(xdg["XDG_CONFIG_HOME"]) / "ndr-sweeper" / "config.toml"  # type: ignore[attr-defined]
    return fake


def init(*args: str) -> int:
    return cli.main(["init", "--non-interactive", "--no-dry-run", *args])


PRESET_ADDRESSES = {
    p.key: f"someone@{p.domains[0]}" for p in providers.PRESETS if p.domains and p.host
}


@pytest.mark.parametrize("key", sorted(PRESET_ADDRESSES))
def test_each_provider_preset(env, capsys, key: str) -> None:
    preset = providers.by_key(key)
    assert preset is not None
    address = PRESET_ADDRESSES[key]
    extra = ["--oauth2-client-id", "client-123"] if preset.auth == "oauth2" else []
    assert init("--email", address, *extra) == 0
    out = capsys.readouterr().out
    config = load_config(env.config)
    (acc,) = config.accounts
    assert (acc.name, acc.host, acc.port, acc.security, acc.auth) == (
        address,
        preset.host,
        preset.port,
        preset.security,
        preset.auth,
    )
    assert acc.username == (address.split("@")[0] if preset.username == "localpart" else address)
    assert acc.oauth2_provider == preset.oauth2_provider
    assert acc.password_command is None and acc.junk_folder is None  # discovery decides
    text = env.config.read_text()
    assert "# junk_folder = " in text and preset.junk in text  # the provider's names, as hints
    assert stat.S_IMODE(env.config.stat().st_mode) == 0o600
    assert stat.S_IMODE(env.config.parent.stat().st_mode) == 0o700
    assert preset.hint.split()[0] in out and f"ndr-sweeper login {address}" in out
    assert env.asked == []  # a known domain asks DNS nothing


def test_oauth2_provider_without_client_id_names_the_flags(env, capsys) -> None:
    assert init("--email", "me@outlook.com") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--oauth2-client-id" in err and "--auth password" in err
    assert not env.config.exists()


def test_gmail_with_an_app_password(env) -> None:
    assert init("--email", "me@gmail.com", "--auth", "password") == 0
    (acc,) = load_config(env.config).accounts
    assert acc.auth == "password" and acc.host == "imap.gmail.com"


def test_srv_records_of_an_unknown_domain(env, capsys) -> None:
    env.srv_records["_imaps._tcp.example.net"] = [
        Srv(10, 0, 993, "backup.example.net."),
        Srv(0, 5, 9993, "imap.example.net."),
    ]
    assert init("--email", "me@example.net", "--name", "work") == 0
    (acc,) = load_config(env.config).accounts
    assert (acc.name, acc.host, acc.port, acc.security, acc.username) == (
        "work",
        "imap.example.net",
        9993,
        "tls",
        "me@example.net",
    )
    assert "found in DNS SRV records" in env.config.read_text()
    assert env.asked[0] == "_imaps._tcp.example.net"


def test_srv_starttls_only(env) -> None:
    env.srv_records["_imap._tcp.example.net"] = [Srv(0, 0, 143, "mail.example.net")]
    assert init("--email", "me@example.net") == 0
    (acc,) = load_config(env.config).accounts
    assert (acc.host, acc.port, acc.security) == ("mail.example.net", 143, "starttls")


def test_google_workspace_found_by_mx(env) -> None:
    env.mx_records["example.com"] = [Mx(1, "aspmx.l.google.com.")]
    assert init("--email", "me@example.com", "--oauth2-client-id", "cid") == 0
    (acc,) = load_config(env.config).accounts
    assert (acc.host, acc.auth, acc.oauth2_provider) == ("imap.gmail.com", "oauth2", "google")


def test_unknown_domain_without_dns_needs_host(env, capsys) -> None:
    assert init("--email", "me@example.net") == 2
    err = capsys.readouterr().err
    assert "--host" in err and "Traceback" not in err
    assert init("--email", "me@example.net", "--host", "mail.example.net") == 0
    (acc,) = load_config(env.config).accounts
    assert (acc.host, acc.port, acc.security) == ("mail.example.net", 993, "tls")


def test_no_dns_flag_asks_nothing(env) -> None:
    env.srv_records["_imaps._tcp.example.net"] = [Srv(0, 0, 993, "imap.example.net")]
    assert init("--email", "me@example.net", "--no-dns") == 2
    assert env.asked == []


def test_dovecot_preset_with_srv_and_flags(env) -> None:
    env.srv_records["_imaps._tcp.example.org"] = [Srv(0, 0, 993, "mx.example.org")]
    assert init("--email", "me@example.org", "--provider", "dovecot", "--junk-folder", "Spam") == 0
    (acc,) = load_config(env.config).accounts
    assert (acc.host, acc.junk_folder) == ("mx.example.org", "Spam")
    text = env.config.read_text()
    assert "# sent_folders = " in text and "# junk_folder" not in text  # pinned, not hinted


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--email", "not-an-address"], ["not an email address"]),
        (["--email", "me@exa mple.org"], ["not an email address"]),
        (["--email", "me@example.org", "--host", "a b"], ["--host", "not a host name"]),
        (["--email", "me@example.org", "--host", "h.example", "--port", "0"], ["port"]),
        (["--email", "me@gmail.com", "--provider", "nope"], ["unknown provider", "gmail"]),
        (["--email", "me@example.org", "--host", "h.example", "--name", "a/b"], ["--name"]),
    ],
)
def test_bad_answers_are_one_line(env, capsys, args, words) -> None:
    assert init(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err
    assert not env.config.exists()


def test_existing_file_gets_the_account_appended(env, capsys) -> None:
    env.config.parent.mkdir(parents=True)
    env.config.write_text(
        '# my own comment\n[[accounts]]\nname = "old"\nhost = "h.example"\nusername = "u"\n'
    )
    assert init("--email", "me@fastmail.com") == 0
    text = env.config.read_text()
    assert text.startswith("# my own comment\n") and 'name = "old"' in text
    assert load_config(env.config).names == ("old", "me@fastmail.com")
    assert stat.S_IMODE(env.config.stat().st_mode) == 0o600
    # the same name again: refused, the file untouched
    assert init("--email", "me@fastmail.com") == 2
    assert "already has an account named" in capsys.readouterr().err
    assert env.config.read_text() == text
    # --force starts a new file and keeps the old one
    assert init("--email", "me@fastmail.com", "--force") == 0
    assert load_config(env.config).names == ("me@fastmail.com",)
    backup = env.config.with_name("config.toml.bak")
    assert backup.read_text() == text and stat.S_IMODE(backup.stat().st_mode) == 0o600


def test_broken_existing_file_is_not_touched(env, capsys) -> None:
    env.config.parent.mkdir(parents=True)
    env.config.write_text("[[accounts]\n")
    assert init("--email", "me@fastmail.com") == 2
    err = capsys.readouterr().err
    assert "invalid TOML" in err and "--force" in err
    assert env.config.read_text() == "[[accounts]\n"


def test_config_flag_and_nothing_secret_written(env, tmp_path) -> None:
    path = tmp_path / "elsewhere" / "c.toml"
    assert (
        init(
            "--email",
            "me@example.org",
            "--host",
            "h.example",
            "--config",
            str(path),
            "--password-command",
            "pass show mail",
        )
        == 0
    )
    text = path.read_text()
    assert 'password_command = "pass show mail"' in text
    assert "password =" not in text and not env.config.exists()


def test_hostile_values_stay_inside_their_strings(env, tmp_path) -> None:
    path = tmp_path / "c.toml"
    evil = 'x"\nhost = "attacker.example\x7f'
    assert init("--email", "me@example.org", "--host", "h.example", "--config", str(path),
                "--junk-folder", evil, "--name", "n") == 0  # fmt: skip
    (acc,) = load_config(path).accounts
    assert acc.junk_folder == evil and acc.host == "h.example"


def test_questions_on_standard_input(tmp_path) -> None:
    """Without --non-interactive, init asks what it cannot find; here the answers come from a
    pipe (no terminal, so it does not offer to log in)."""
    xdg = xdg_dirs(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "ndr_sweeper", "init", "--no-dns", "--no-dry-run"],
        input="me@example.org\nmail.example.org\nstarttls\n\n",
        capture_output=True,
        text=True,
        env={**xdg_env(xdg), "COLUMNS": "80"},
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Email address" in result.stderr and "IMAP server of example.org" in result.stderr
    (acc,) = load_config(Path(xdg["XDG_CONFIG_HOME"]) / "ndr-sweeper" / "config.toml").accounts
    assert (acc.host, acc.port, acc.security) == ("mail.example.org", 143, "starttls")
    for line in result.stdout.splitlines():
        assert len(line) <= 80, line


def test_questions_at_end_of_input_name_the_flag(tmp_path) -> None:
    xdg = xdg_dirs(tmp_path)
    result = run_cli(xdg, "init", "--no-dns")
    assert result.returncode == 2
    assert "--email" in result.stderr and "Traceback" not in result.stderr


def xdg_env(xdg: dict[str, str]) -> dict[str, str]:
    import os

    return {**os.environ, **xdg, "NO_COLOR": "1"}


@pytest.mark.imap
def test_init_against_the_lab_ends_with_the_dry_run(dovecot, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot)
    backscatter, _keep, _deleted = fill(env)
    xdg = xdg_dirs(tmp_path)
    result = run_cli(
        xdg,
        "init",
        "--non-interactive",
        "--email",
        f"{env.user}@example.org",
        "--name",
        "lab",
        "--host",
        env.host,
        "--port",
        str(env.port),
        "--security",
        "plain",
        "--username",
        env.user,
        "--password-command",
        f"printf %s {env.password}",
        env_extra={"COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    assert "dry run" in result.stdout and "lab" in result.stdout
    # min_age (15 min by default) keeps the just-delivered bounces waiting: nothing moved
    client = env.connect()
    try:
        client.select_folder("Junk")
        assert client.search(["ALL"]) == []
    finally:
        client.logout()
    assert len(backscatter) == 6
    mine = result.stdout.split("dry run")[0]  # the sweep's own table is the sweep's business
    for line in mine.splitlines():
        assert len(line) <= 80, line
