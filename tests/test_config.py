from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ndr_sweeper.config import Account, Config, load_config, parse_duration
from ndr_sweeper.errors import ConfigError
from ndr_sweeper.paths import default_config_path, default_state_dir

MINIMAL = """
[[accounts]]
name = "work"
host = "imap.example.com"
username = "me@example.com"
"""


def write(tmp_path: Path, text: str, name: str = "config.toml", mode: int = 0o600) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    os.chmod(p, mode)
    return p


def load(tmp_path: Path, text: str, **kw: object) -> Config:
    return load_config(write(tmp_path, text, **kw), env={"HOME": str(tmp_path)})  # type: ignore[arg-type]


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("90", 90),
        (" 15M ", 900),
        ("1.5h", 5400),
        (45, 45),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "15x", "-5s", "30m1h", "1h1h", "15 m", True, -3])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ConfigError, match="is not a duration"):
        parse_duration(text)  # type: ignore[arg-type]


@given(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99))
def test_parse_duration_roundtrip(d: int, h: int, m: int, s: int) -> None:
    text = f"{d}d{h}h{m}m{s}s"
    assert parse_duration(text) == d * 86400 + h * 3600 + m * 60 + s


# --------------------------------------------------------------------------- loading


def test_minimal_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL)
    (acc,) = cfg.accounts
    assert acc == Account(name="work", host="imap.example.com", username="me@example.com")
    assert acc.port == 993 and acc.security == "tls" and acc.folders == ("INBOX",)
    assert acc.min_age == 900 and acc.timeout == 60 and acc.action == "move"
    assert acc.junk_folder is None and acc.sent_folders == ()
    assert cfg.max_parallel == 4 and cfg.log_level == "info"
    assert cfg.state_dir == tmp_path / ".local/state/ndr-sweeper"
    assert cfg.source == "cli"
    assert cfg.warnings == ()


def test_full_example(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.toml").write_text("")
    cfg = load(
        tmp_path,
        """
state_dir = "st"
max_parallel = 2
log_level = "DEBUG"

[defaults]
min_age = "1h30m"
my_addresses = ["me@example.com", "@example.org"]

[[accounts]]
name = "work"
host = "imap.example.com"
port = 10993
security = "tls"
username = "me@example.com"
password_command = "pass show mail/work"
folders = ["INBOX", "Lists"]
sent_folders = ["Sent"]
junk_folder = "Junk"
trash_folder = ""
action = "delete"
min_age = 60
allow_plaintext = false
tls_ca_file = "ca.pem"
timeout = "45s"
every = "15m"
watch = true
rules = ["rules/a.toml"]
auth = "password"
enabled = true

[[accounts]]
name = "g.mail+x@home"
host = "imap.gmail.com"
username = "me@gmail.com"
security = "starttls"
cron = "*/15  * * * MON-FRI"
auth = "oauth2"
oauth2_provider = "google"
oauth2_client_id = "123.apps.googleusercontent.com"
oauth2_client_secret_command = "pass show oauth/google"
enabled = false
""",
    )
    work, home = cfg.accounts
    assert cfg.state_dir == tmp_path / "st"
    assert cfg.max_parallel == 2 and cfg.log_level == "debug"
    assert work.port == 10993 and work.action == "delete" and work.min_age == 60
    assert work.folders == ("INBOX", "Lists") and work.sent_folders == ("Sent",)
    assert work.junk_folder == "Junk" and work.trash_folder is None
    assert work.tls_ca_file == tmp_path / "ca.pem"
    assert work.rules == (tmp_path / "rules" / "a.toml",)
    assert work.timeout == 45 and work.every == 900 and work.watch
    assert work.my_addresses == ("me@example.com", "@example.org")
    assert home.min_age == 5400  # inherited from [defaults]
    assert home.port == 143 and home.cron == "*/15 * * * MON-FRI"
    assert home.uses_oauth2 and home.oauth2_provider == "google"
    assert not home.enabled


def test_precedence_cli_env_default(tmp_path: Path) -> None:
    cli = write(tmp_path, MINIMAL, "cli.toml")
    envfile = write(tmp_path, MINIMAL.replace("work", "envacct"), "env.toml")
    xdg = tmp_path / "xdg"
    (xdg / "ndr-sweeper").mkdir(parents=True)
    write(xdg / "ndr-sweeper", MINIMAL.replace("work", "xdgacct"))
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(xdg), "NDR_SWEEPER_CONFIG": str(envfile)}
    assert load_config(cli, env).names == ("work",)
    assert load_config(None, env).names == ("envacct",)
    assert load_config(None, env).source == "env"
    del env["NDR_SWEEPER_CONFIG"]
    cfg = load_config(None, env)
    assert cfg.names == ("xdgacct",) and cfg.source == "default"


def test_xdg_paths(tmp_path: Path) -> None:
    env = {"HOME": "/h"}
    assert default_config_path(env) == Path("/h/.config/ndr-sweeper/config.toml")
    assert default_state_dir(env) == Path("/h/.local/state/ndr-sweeper")
    env = {"HOME": "/h", "XDG_CONFIG_HOME": "/c", "XDG_STATE_HOME": "relative/ignored"}
    assert default_config_path(env) == Path("/c/ndr-sweeper/config.toml")
    assert default_state_dir(env) == Path("/h/.local/state/ndr-sweeper")
    cfg = load_config(write(tmp_path, MINIMAL), {"HOME": "/h", "XDG_STATE_HOME": "/s"})
    assert cfg.state_dir == Path("/s/ndr-sweeper")


# --------------------------------------------------------------------------- errors


def test_missing_file_says_where_and_how(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    with pytest.raises(ConfigError) as info:
        load_config(None, env)
    msg = str(info.value)
    assert str(tmp_path / ".config/ndr-sweeper/config.toml") in msg
    assert "create it" in msg and "README" in msg
    with pytest.raises(ConfigError, match=r"NDR_SWEEPER_CONFIG"):
        load_config(None, {"NDR_SWEEPER_CONFIG": str(tmp_path / "nope.toml")})


def test_bad_toml_names_line(tmp_path: Path) -> None:
    msg = error(tmp_path, '[[accounts]]\nname = "work"\nhost imap\n')
    assert msg.startswith(f"{tmp_path / 'config.toml'}: line 3")
    assert "invalid TOML" in msg


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    p.write_bytes(b'# ok\nname = "\xff"\n')
    with pytest.raises(ConfigError, match="line 2: not UTF-8"):
        load_config(p, {})


def test_bad_security_message_format(tmp_path: Path) -> None:
    msg = error(tmp_path, MINIMAL + 'security = "ssl"\n')
    assert msg == (
        f"{tmp_path / 'config.toml'}: accounts.work.security: "
        "'ssl' is not one of tls, starttls, plain"
    )


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ('password = "hunter2"\n', "accounts.work.password", "ndr-sweeper login work"),
        ('oauth2_client_secret = "x"\n', "accounts.work.oauth2_client_secret", "_command"),
        ('secuirty = "tls"\n', "accounts.work.secuirty", "did you mean 'security'"),
        ("port = 0\n", "accounts.work.port", "is not a port"),
        ('port = "993"\n', "accounts.work.port", "expected an integer"),
        ('action = "archive"\n', "accounts.work.action", "move, delete, flag, none"),
        ('min_age = "soon"\n', "accounts.work.min_age", "is not a duration"),
        ('timeout = "0s"\n', "accounts.work.timeout", "more than 0s"),
        ("folders = []\n", "accounts.work.folders", "at least one"),
        ('folders = "INBOX"\n', "accounts.work.folders", "list of strings"),
        ('my_addresses = ["nobody"]\n', "accounts.work.my_addresses", "not an address"),
        ('tls_ca_file = "missing.pem"\n', "accounts.work.tls_ca_file", "does not exist"),
        ('rules = ["missing.toml"]\n', "accounts.work.rules", "does not exist"),
        ('cron = "*/15 * * *"\n', "accounts.work.cron", "expected 5"),
        ('cron = "*/15 * * * ;rm"\n', "accounts.work.cron", "characters"),
        ('every = "15m"\ncron = "* * * * *"\n', "accounts.work.cron", "keep one"),
        ('security = "plain"\n', "accounts.work.security", "allow_plaintext"),
        ("watch = 1\n", "accounts.work.watch", "true or false"),
        ('auth = "oauth2"\n', "accounts.work.oauth2_provider", "missing"),
        (
            'auth = "oauth2"\noauth2_provider = "google"\n',
            "accounts.work.oauth2_client_id",
            "missing",
        ),
        (
            'auth = "oauth2"\noauth2_provider = "custom"\noauth2_client_id = "c"\n',
            "accounts.work.oauth2_authorize_url",
            "custom",
        ),
        (
            'oauth2_token_url = "http://evil.example/t"\n',
            "accounts.work.oauth2_token_url",
            "https://",
        ),
    ],
)
def test_account_errors(tmp_path: Path, extra: str, key: str, words: str) -> None:
    msg = error(tmp_path, MINIMAL + extra)
    assert msg.startswith(f"{tmp_path / 'config.toml'}: {key}: "), msg
    assert words in msg


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://localhost.attacker.example/token", "https://"),
        ("http://127.0.0.1.nip.io/token", "https://"),
        ("http://localhost@attacker.example/token", "user@"),
        ("https://me:hunter2@login.example.org/token", "user@"),
        ("http://[::1]@attacker.example/token", "user@"),
        ("http://localhost\\@attacker.example/token", "backslashes"),
        ("http://127.0.0.1:port/token", "not a URL"),
        ("ftp://127.0.0.1/token", "https://"),
    ],
)
def test_oauth2_urls_are_judged_by_scheme_and_host(tmp_path: Path, url: str, words: str) -> None:
    msg = error(tmp_path, MINIMAL + f"oauth2_token_url = {json.dumps(url)}\n")
    assert msg.startswith(f"{tmp_path / 'config.toml'}: accounts.work.oauth2_token_url: "), msg
    assert words in msg and "hunter2" not in msg


@pytest.mark.parametrize(
    "url",
    [
        "https://login.example.org/token",
        "http://127.0.0.1:8080/token",
        "http://127.0.0.5/token",
        "http://[::1]:8080/token",
        "http://localhost:8080/token",
    ],
)
def test_oauth2_urls_accepted(tmp_path: Path, url: str) -> None:
    cfg = load(tmp_path, MINIMAL + f"oauth2_token_url = {json.dumps(url)}\n")
    assert cfg.accounts[0].oauth2_token_url == url


def test_password_error_does_not_echo_secret(tmp_path: Path) -> None:
    msg = error(tmp_path, MINIMAL + 'password = "hunter2"\n')
    assert "hunter2" not in msg
    assert "password_command" in msg


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('[[accounts]]\nhost = "h"\nusername = "u"\n', "accounts[0].name", "missing"),
        ('[[accounts]]\nname = "a b"\nhost = "h"\n', "accounts[0].name", "not a valid name"),
        ('[[accounts]]\nname = "w"\nusername = "u"\n', "accounts.w.host", "missing"),
        ('[[accounts]]\nname = "w"\nhost = "h"\n', "accounts.w.username", "missing"),
        (MINIMAL + MINIMAL, "accounts[1].name", "unique"),
        ("max_parallel = 4\n", "accounts", "no [[accounts]]"),
        ("max_parallel = 0\n" + MINIMAL, "max_parallel", "1 or more"),
        ('log_level = "loud"\n' + MINIMAL, "log_level", "debug, info"),
        ('colour = "red"\n' + MINIMAL, "colour", "unknown key"),
        ('[defaults]\nsecurity = "ssl"\n' + MINIMAL, "defaults.security", "not one of"),
        ('[defaults]\nname = "x"\n' + MINIMAL, "defaults.name", "unknown key"),
        ('[defaults]\npassword = "x"\n' + MINIMAL, "defaults.password", "never"),
        ('[accounts.work]\nhost = "h"\n', "accounts", "[[accounts]]"),
    ],
)
def test_structure_errors(tmp_path: Path, text: str, key: str, words: str) -> None:
    msg = error(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 'config.toml'}: {key}: "), msg
    assert words in msg


def test_plain_allowed_to_loopback_or_when_allowed(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"):
        text = MINIMAL.replace("imap.example.com", host) + 'security = "plain"\n'
        acc = load(tmp_path, text).accounts[0]
        assert acc.security == "plain" and acc.port == 143
    acc = load(tmp_path, MINIMAL + 'security = "plain"\nallow_plaintext = true\n').accounts[0]
    assert acc.security == "plain"


def test_account_overrides_defaults(tmp_path: Path) -> None:
    cfg = load(
        tmp_path, '[defaults]\naction = "flag"\nfolders = ["A"]\n' + MINIMAL + 'action = "none"\n'
    )
    assert cfg.accounts[0].action == "none"
    assert cfg.accounts[0].folders == ("A",)


# --------------------------------------------------------------------------- selection


TWO = MINIMAL + '\n[[accounts]]\nname = "home"\nhost = "h"\nusername = "u"\nenabled = false\n'


def test_select(tmp_path: Path) -> None:
    cfg = load(tmp_path, TWO)
    assert [a.name for a in cfg.select(None)] == ["work"]
    assert [a.name for a in cfg.select([])] == ["work"]
    assert [a.name for a in cfg.select(["home", "work", "home"])] == ["home", "work"]
    assert [a.name for a in cfg.select("home")] == ["home"]  # one name, not letters
    assert cfg.account("home").name == "home"
    with pytest.raises(
        ConfigError, match=r"no account named 'nope': known accounts are work, home"
    ):
        cfg.select(["nope"])
    with pytest.raises(ConfigError, match="known accounts are work, home"):
        cfg.account("nope")


def test_select_all_disabled(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL + "enabled = false\n")
    with pytest.raises(ConfigError, match="enabled = false"):
        cfg.select(None)


def test_frozen(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL)
    with pytest.raises(AttributeError):
        cfg.accounts[0].host = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------- warnings


def test_warns_on_inline_secret_in_readable_file(tmp_path: Path) -> None:
    text = MINIMAL + 'password_command = "echo hunter2"\n'
    assert load(tmp_path, text, mode=0o600).warnings == ()
    (warning,) = load(tmp_path, text, mode=0o644).warnings
    assert "chmod 600" in warning and "hunter2" not in warning


def test_no_warning_for_a_private_file_with_password_command(tmp_path: Path) -> None:
    text = MINIMAL + 'password_command = "pass show mail/work"\n'
    assert load(tmp_path, text, mode=0o600).warnings == ()


def test_warns_on_writable_file_that_runs_commands(tmp_path: Path) -> None:
    text = MINIMAL + 'password_command = "pass show mail/work"\n'
    writable, readable = load(tmp_path, text, mode=0o666).warnings
    assert "chmod go-w" in writable and "chmod 600" in readable


def test_warns_on_oauth2_keys_without_oauth2(tmp_path: Path) -> None:
    (warning,) = load(tmp_path, MINIMAL + 'oauth2_client_id = "x"\n').warnings
    assert "accounts.work.oauth2_client_id" in warning and "ignored" in warning


def test_the_key_people_reach_for_first_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[accounts]]\nname = "a"\nhost = "h"\nusername = "u"\njunk = "Spam"\n')
    path.chmod(0o600)
    with pytest.raises(
        ConfigError, match=r"accounts\.a\.junk: unknown key \(did you mean 'junk_folder'\?\)"
    ):
        load_config(path)


def test_an_account_key_at_the_top_level_says_where_it_goes(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('junk_folder = "Spam"\n[[accounts]]\nname = "a"\nhost = "h"\nusername = "u"\n')
    path.chmod(0o600)
    with pytest.raises(
        ConfigError, match=r"junk_folder: .*put it under \[defaults\].*\[\[accounts\]\]"
    ):
        load_config(path)


def test_a_readable_config_with_password_command_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[accounts]]\nname = "a"\nhost = "h"\nusername = "u"\n'
        'password_command = "pass show mail/a"\n'
    )
    path.chmod(0o644)
    config = load_config(path)
    assert any("others can read this file" in w and "chmod 600" in w for w in config.warnings)


# --------------------------------------------------------------------------- Maildir accounts


def test_maildir_account_needs_no_server_and_no_credentials(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
state_dir = "st"
[defaults]
username = "me@example.com"   # for the IMAP accounts
watch = true
[[accounts]]
name = "local"
maildir = "~/Mail/work"
junk_folder = "Spam"
min_age = "1h"
[[accounts]]
name = "rel"
maildir = "mail/here"
""",
    )
    local, rel = cfg.accounts
    assert local.is_maildir and local.maildir == Path("~/Mail/work").expanduser()
    assert (local.host, local.username, local.password_command) == ("", "", None)
    assert local.junk_folder == "Spam" and local.min_age == 3600 and local.folders == ("INBOX",)
    assert not local.watch  # IDLE is IMAP's: [defaults] watch is for the IMAP accounts
    assert local.state_dir == tmp_path / "st"  # where its UID map is kept
    assert rel.maildir == tmp_path / "mail/here"  # relative to the config file's folder
    assert not rel.maildir.exists()  # the loader does not look: opening the mailbox does
    assert cfg.warnings == ()


def test_maildir_and_host_together_is_one_line(tmp_path: Path) -> None:
    msg = error(
        tmp_path,
        '[[accounts]]\nname = "x"\nhost = "imap.example.com"\nusername = "u"\nmaildir = "~/M"\n',
    )
    assert msg.endswith(
        "accounts.x.host: host and maildir are both set: keep host for an IMAP server, or "
        "maildir for a local Maildir"
    )


def test_neither_host_nor_maildir_says_both(tmp_path: Path) -> None:
    msg = error(tmp_path, '[[accounts]]\nname = "x"\nusername = "u"\n')
    assert 'accounts.x.host: missing: add host = "..." (or maildir = "PATH"' in msg


def test_maildir_account_refuses_watch_and_warns_of_imap_keys(tmp_path: Path) -> None:
    msg = error(tmp_path, '[[accounts]]\nname = "x"\nmaildir = "M"\nwatch = true\n')
    assert "accounts.x.watch: watch needs an IMAP server (IDLE)" in msg
    cfg = load(tmp_path, '[[accounts]]\nname = "x"\nmaildir = "M"\npassword_command = "pass x"\n')
    assert cfg.warnings == (
        f"{tmp_path / 'config.toml'}: accounts.x.password_command: ignored for a Maildir account",
    )
    assert cfg.accounts[0].password_command is None


def test_maildir_in_defaults_is_refused(tmp_path: Path) -> None:
    msg = error(tmp_path, '[defaults]\nmaildir = "M"\n[[accounts]]\nname = "x"\n')
    assert "defaults.maildir: each account names its own Maildir" in msg


def test_maildir_account_keeps_rules_and_schedule(tmp_path: Path) -> None:
    (tmp_path / "r.toml").write_text("")
    cfg = load(
        tmp_path,
        '[[accounts]]\nname = "x"\nmaildir = "M"\nrules = ["r.toml"]\nevery = "5m"\n'
        'action = "delete"\ntrash_folder = "Bin"\n',
    )
    (acc,) = cfg.accounts
    assert acc.rules == (tmp_path / "r.toml",) and acc.every == 300
    assert acc.action == "delete" and acc.trash_folder == "Bin"
    assert "rule file" in error(
        tmp_path, '[[accounts]]\nname = "x"\nmaildir = "M"\nrules = ["no"]\n'
    )


def test_plain_to_an_ipv4_mapped_loopback_address(tmp_path: Path) -> None:
    """The config accepts what connecting accepts (one loopback test for both): on Python
    3.11 and 3.12 ``ipaddress`` does not call ``::ffff:127.0.0.1`` loopback by itself."""
    from ndr_sweeper import config, connect

    assert connect.is_loopback_address is config.is_loopback_ip
    text = MINIMAL.replace("imap.example.com", "::ffff:127.0.0.1") + 'security = "plain"\n'
    assert load(tmp_path, text).accounts[0].security == "plain"
