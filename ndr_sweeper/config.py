"""The configuration file, read once into frozen dataclasses and validated.

Pure: standard library only. Precedence is CLI > environment > file > defaults; the CLI
passes the path it was given (or None) and applies its own overrides with
``dataclasses.replace``. Secrets are never in the file.

Every problem is a :class:`ConfigError` with one line:
``PATH: KEY: PROBLEM[: FIX]``, e.g.
``/home/me/.config/ndr-sweeper/config.toml: accounts.work.security: 'ssl' is not one of tls,
starttls, plain``. KEY is ``accounts.NAME.KEY`` once the account's name is known,
``accounts[I].KEY`` (0-based) before, ``defaults.KEY`` for a value set in ``[defaults]``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .errors import ConfigError
from .paths import CONFIG_ENV, default_state_dir, resolve_config_path

SECURITY_MODES: Final = ("tls", "starttls", "plain")
ACTIONS: Final = ("move", "delete", "flag", "none")
AUTH_METHODS: Final = ("password", "oauth2")
OAUTH2_PROVIDERS: Final = ("google", "microsoft", "custom")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
DEFAULT_PORTS: Final = {"tls": 993, "starttls": 143, "plain": 143}

ACCOUNT_NAME_RE: Final = re.compile(r"[A-Za-z0-9._@+-]+")

# Keys that would put a secret in the file, and what to use instead.
_SECRET_KEYS: Final = {
    "password": "use password_command, or store it with `ndr-sweeper login {name}`",
    "pass": "use password_command, or store it with `ndr-sweeper login {name}`",
    "oauth2_client_secret": "use oauth2_client_secret_command",
    "oauth2_refresh_token": "run `ndr-sweeper login {name}`; the token is kept in the keyring",
    "oauth2_access_token": "run `ndr-sweeper login {name}`; the token is kept in the keyring",
}

_TOP_KEYS: Final = ("accounts", "defaults", "state_dir", "max_parallel", "log_level")


@dataclass(frozen=True, slots=True)
class Account:
    """One account, with every default filled in. Durations are in seconds.

    An IMAP account has ``host`` and ``username``; a local Maildir account has ``maildir``
    instead (``host`` and ``username`` are then empty, and no credential is ever asked for).
    """

    name: str
    host: str
    username: str
    port: int = 993
    security: str = "tls"
    password_command: str | None = None
    folders: tuple[str, ...] = ("INBOX",)
    sent_folders: tuple[str, ...] = ()  # empty: discover (SPECIAL-USE, then names)
    junk_folder: str | None = None  # None: discover
    trash_folder: str | None = None  # None: discover
    action: str = "move"
    min_age: float = 900.0
    my_addresses: tuple[str, ...] = ()
    # Folders where old sent mail is archived ("\\Archive": those the server flags so): read
    # like Sent, but only messages sent from my_addresses count.
    archive_folders: tuple[str, ...] = ()
    allow_plaintext: bool = False
    tls_ca_file: Path | None = None
    timeout: float = 60.0
    every: float | None = None
    cron: str | None = None
    watch: bool = False
    rules: tuple[Path, ...] = ()
    auth: str = "password"
    oauth2_provider: str | None = None
    oauth2_client_id: str | None = None
    oauth2_client_secret_command: str | None = None
    oauth2_authorize_url: str | None = None
    oauth2_token_url: str | None = None
    oauth2_device_url: str | None = None
    oauth2_scopes: tuple[str, ...] = ()
    enabled: bool = True
    # Without MOVE and UIDPLUS no command removes only our messages. "deleted": flag the
    # originals \\Deleted and $NdrBackscatter and leave the expunge to the user's client;
    # "keyword": flag them $NdrBackscatter only; "protect": expunge, lifting the user's
    # \\Deleted flags around it (a flag set by another client at that moment is not safe).
    expunge_fallback: str = "deleted"
    maildir: Path | None = None  # a local Maildir tree instead of an IMAP server
    # The config's state_dir, where a Maildir account keeps its UID map (None: the default).
    state_dir: Path | None = field(default=None, compare=False)

    @property
    def uses_oauth2(self) -> bool:
        return self.auth == "oauth2"

    @property
    def is_maildir(self) -> bool:
        return self.maildir is not None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. ``warnings`` are for the caller to show; nothing is printed."""

    path: Path
    source: str  # how the path was chosen: "cli", "env" or "default"
    accounts: tuple[Account, ...]
    state_dir: Path
    max_parallel: int = 4
    log_level: str = "info"
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.accounts)

    def account(self, name: str) -> Account:
        """The account called ``name``; ConfigError listing the known names when none is."""
        for acc in self.accounts:
            if acc.name == name:
                return acc
        raise ConfigError(
            f"{self.path}: no account named {name!r}: known accounts are "
            f"{', '.join(self.names) or '(none)'}"
        )

    def select(self, names: Sequence[str] | str | None) -> list[Account]:
        """The accounts named (in that order, once each), or every enabled one when none are.

        An account named explicitly is returned even when ``enabled = false``. A single
        string is one name (not a sequence of one-letter names).
        """
        if isinstance(names, str):
            names = [names]
        if not names:
            chosen = [a for a in self.accounts if a.enabled]
            if not chosen:
                raise ConfigError(
                    f"{self.path}: every account has enabled = false: name one explicitly, "
                    "or set enabled = true"
                )
            return chosen
        unknown = [n for n in names if n not in self.names]
        if unknown:
            listed = ", ".join(repr(n) for n in dict.fromkeys(unknown))
            raise ConfigError(
                f"{self.path}: no account named {listed}: known accounts are "
                f"{', '.join(self.names) or '(none)'}"
            )
        return [self.account(n) for n in dict.fromkeys(names)]


# --------------------------------------------------------------------------- durations

_DURATION_RE: Final = re.compile(
    r"(?:(?P<d>\d+(?:\.\d+)?)d)?(?:(?P<h>\d+(?:\.\d+)?)h)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?"
)
_UNIT_SECONDS: Final = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``"0s"``, ``"30s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1h30m"`` or a bare number.

    Units go from largest to smallest, each at most once. Raises ConfigError (a ValueError).
    """
    if isinstance(value, bool):
        raise ConfigError(f"{value!r} is not a duration: {_DURATION_HINT}")
    if isinstance(value, int | float):
        if value < 0 or value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{value!r} is not a duration: {_DURATION_HINT}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{value!r} is not a duration: {_DURATION_HINT}")
    text = value.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    match = _DURATION_RE.fullmatch(text)
    if not text or match is None:
        raise ConfigError(f"{value!r} is not a duration: {_DURATION_HINT}")
    return sum(
        float(amount) * _UNIT_SECONDS[unit]
        for unit, amount in match.groupdict().items()
        if amount is not None
    )


_DURATION_HINT: Final = "use e.g. 30s, 15m, 2h, 1d, 1h30m, or a number of seconds"


def format_duration(seconds: float) -> str:
    """A duration as the config writes it, for messages: ``2h``, ``15m``, else ``90s``."""
    s = round(seconds)
    if s and s % 3600 == 0:
        return f"{s // 3600}h"
    if s and s % 60 == 0:
        return f"{s // 60}m"
    return f"{seconds:g}s"


# --------------------------------------------------------------------------- validation


class _Problem(Exception):
    """A bad value; the loader adds the file and the key."""


def _may_be_loopback(host: str) -> bool:
    """Whether ``host`` can be this machine by its form: a loopback IP address, ``localhost``
    or a ``*.localhost`` name. No DNS here: connecting checks every address the name resolves
    to (``connect.check_transport``); this only rejects early what can never pass there."""
    h = host.strip().strip("[]").rstrip(".").lower()
    return h == "localhost" or h.endswith(".localhost") or is_loopback_ip(h)


def _str(v: object) -> str:
    if not isinstance(v, str):
        raise _Problem(f"expected a string, got {type_name(v)}")
    return v


def _nonempty(v: object) -> str:
    s = _str(v).strip()
    if not s:
        raise _Problem("must not be empty")
    return s


def _opt_str(v: object) -> str | None:
    s = _str(v).strip()
    return s or None


def _bool(v: object) -> bool:
    if not isinstance(v, bool):
        raise _Problem(f"expected true or false, got {type_name(v)}")
    return v


def _int(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Problem(f"expected an integer, got {type_name(v)}")
    return v


# archive_folders = true: the folders the server flags \Archive (RFC 6154)
ARCHIVE_FLAGGED: Final = ("\\Archive",)


def _str_list(v: object) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise _Problem(f"expected a list of strings, got {type_name(v)}")
    out = []
    for i, item in enumerate(v):
        if not isinstance(item, str) or not item.strip():
            raise _Problem(f"item {i} must be a non-empty string, got {item!r}")
        out.append(item.strip())
    return tuple(out)


def _choice(choices: Sequence[str]) -> Callable[[object], str]:
    def check(v: object) -> str:
        s = _str(v).strip().lower()
        if s not in choices:
            raise _Problem(f"{_str(v)!r} is not one of {', '.join(choices)}")
        return s

    return check


def _duration(v: object) -> float:
    if not isinstance(v, str | int | float) or isinstance(v, bool):
        raise _Problem(f'expected a duration such as "15m", got {type_name(v)}')
    try:
        return parse_duration(v)
    except ConfigError as exc:
        raise _Problem(str(exc)) from None


def type_name(v: object) -> str:
    """How an error message names a TOML value's type."""
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(v), type(v).__name__)


_CRON_FIELD_RE: Final = re.compile(r"[0-9*/,\-]+")
_CRON_NAMED_FIELD_RE: Final = re.compile(r"[0-9A-Za-z*/,\-?]+")
_CRON_FIELDS: Final = ("minute", "hour", "day of month", "month", "day of week")


def _cron(v: object) -> str:
    s = " ".join(_nonempty(v).split())
    parts = s.split(" ")
    if len(parts) != 5:
        raise _Problem(
            f"{s!r} has {len(parts)} fields, expected 5 (minute hour day-of-month month "
            'day-of-week), e.g. "*/15 * * * *"'
        )
    for i, part in enumerate(parts):
        pattern = _CRON_FIELD_RE if i in (0, 1) else _CRON_NAMED_FIELD_RE
        if not pattern.fullmatch(part):
            raise _Problem(f"{s!r}: {_CRON_FIELDS[i]} field {part!r} has characters cron lacks")
    return s


# Spaces, controls and backslashes: URL parsers disagree about them (urlsplit drops tabs and
# newlines, urllib.request does not), so a URL holding one could reach another host.
_URL_UNSAFE: Final = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


def is_loopback_ip(address: str) -> bool:
    """True for an IP address of this machine: 127.0.0.0/8, ::1, and IPv4-mapped loopback
    (``::ffff:127.0.0.1``), with or without a ``%scope``; False for anything else."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def is_literal_loopback(host: str) -> bool:
    """``localhost`` exactly, or a loopback IP address written out (127.0.0.0/8, ::1)."""
    return host.lower() == "localhost" or is_loopback_ip(host)


def endpoint_problem(url: str) -> str | None:
    """Why ``url`` cannot be an OAuth2 endpoint (tokens and the client secret go to it), or
    None. Judged by the parsed URL: https:// with a host; http:// only to 127.0.0.1, [::1]
    (any loopback address written out) or exactly ``localhost``; never a ``user@`` part."""
    if _URL_UNSAFE.search(url):
        return "holds spaces, control characters or backslashes"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"is not a URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return "must be an https:// URL"
    if "@" in parts.netloc:
        return "must not have a user@ part"
    host = parts.hostname
    if not host:
        return "has no host"
    if scheme == "http" and not is_literal_loopback(host):
        return "must be an https:// URL (http:// only to 127.0.0.1, [::1] or localhost)"
    return None


def _url(v: object) -> str | None:
    s = _opt_str(v)
    if s is None:
        return None
    problem = endpoint_problem(s)
    if problem is not None:
        shown = "the URL" if "@" in s else repr(s)  # user:password@ is not echoed
        raise _Problem(f"{shown} {problem}")
    return s


def _address_list(v: object) -> tuple[str, ...]:
    items = _str_list(v)
    for item in items:
        if "@" not in item or any(c.isspace() for c in item):
            raise _Problem(f"{item!r} is not an address (expected user@domain or @domain)")
    return items


# Account keys -> checker. Paths are handled apart (they need the config file's folder).
_ACCOUNT_CHECKS: Final[dict[str, Callable[[object], object]]] = {
    "name": _nonempty,
    "host": _nonempty,
    "port": _int,
    "security": _choice(SECURITY_MODES),
    "username": _nonempty,
    "password_command": _opt_str,
    "folders": _str_list,
    "sent_folders": _str_list,
    "junk_folder": _opt_str,
    "trash_folder": _opt_str,
    "action": _choice(ACTIONS),
    "min_age": _duration,
    "my_addresses": _address_list,
    "allow_plaintext": _bool,
    "tls_ca_file": _opt_str,
    "timeout": _duration,
    "every": _duration,
    "cron": _cron,
    "watch": _bool,
    "rules": _str_list,
    "auth": _choice(AUTH_METHODS),
    "oauth2_provider": lambda v: _opt_str(v) and _choice(OAUTH2_PROVIDERS)(v),
    "oauth2_client_id": _opt_str,
    "oauth2_client_secret_command": _opt_str,
    "oauth2_authorize_url": _url,
    "oauth2_token_url": _url,
    "oauth2_device_url": _url,
    "oauth2_scopes": _str_list,
    "enabled": _bool,
    "expunge_fallback": _choice(("deleted", "keyword", "protect")),
    "archive_folders": lambda v: (
        ARCHIVE_FLAGGED if v is True else (() if v is False else _str_list(v))
    ),
    "maildir": _nonempty,
}
# Keys that only mean something to an IMAP server: a Maildir account ignores them.
_IMAP_ONLY_KEYS: Final = (
    "port",
    "security",
    "username",
    "password_command",
    "allow_plaintext",
    "tls_ca_file",
    "timeout",
    "auth",
    "oauth2_provider",
    "oauth2_client_id",
    "oauth2_client_secret_command",
    "oauth2_authorize_url",
    "oauth2_token_url",
    "oauth2_device_url",
    "oauth2_scopes",
)
_ACCOUNT_KEYS: Final = tuple(_ACCOUNT_CHECKS)
_SECRETISH_COMMAND_RE: Final = re.compile(r"^\s*(echo|printf)\s")


# Names people reach for first, and the key that does it.
_ALIASES: Final = {
    "junk": "junk_folder",
    "spam": "junk_folder",
    "spam_folder": "junk_folder",
    "trash": "trash_folder",
    "sent": "sent_folders",
    "sent_folder": "sent_folders",
    "folder": "folders",
    "inbox": "folders",
    "server": "host",
    "hostname": "host",
    "user": "username",
    "login": "username",
    "email": "username",
    "ssl": "security",
    "tls": "security",
}


def unknown_key(key: str, known: Sequence[str]) -> str:
    """The problem text for a key that is not in `known`, with the closest one if any."""
    alias = _ALIASES.get(key.lower())
    if alias in known:
        return f"unknown key (did you mean {alias!r}?)"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key: remove it (known keys: {', '.join(sorted(known))})"


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent
        self.warnings: list[str] = []

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {problem}")

    def resolve_path(self, raw: str) -> Path:
        p = Path(raw).expanduser()
        return p if p.is_absolute() else self.base / p

    def check_keys(
        self, table: Mapping[str, object], where: str, known: Sequence[str], name: str | None = None
    ) -> None:
        for key in table:
            keypath = f"{where}.{key}" if where else key
            if key in _SECRET_KEYS:
                fix = _SECRET_KEYS[key].format(name=name or "NAME")
                raise self.fail(keypath, f"secrets are never kept in the config file: {fix}")
            if key not in known:
                if not where and key in _ACCOUNT_KEYS:  # an account key at the top level
                    raise self.fail(
                        keypath,
                        f"{key!r} belongs to an account: put it under [defaults] (every account)"
                        " or under an [[accounts]] entry",
                    )
                raise self.fail(keypath, unknown_key(key, known))

    def load(self, data: dict[str, Any], source: str, env: Mapping[str, str]) -> Config:
        self.check_keys(data, "", _TOP_KEYS)
        # Top-level keys are named without a prefix.
        state_dir = default_state_dir(env)
        if "state_dir" in data:
            try:
                raw = _nonempty(data["state_dir"])
            except _Problem as exc:
                raise self.fail("state_dir", str(exc)) from None
            state_dir = self.resolve_path(raw)
        max_parallel = 4
        if "max_parallel" in data:
            try:
                max_parallel = _int(data["max_parallel"])
            except _Problem as exc:
                raise self.fail("max_parallel", str(exc)) from None
            if max_parallel < 1:
                raise self.fail("max_parallel", f"{max_parallel} must be 1 or more")
        log_level = "info"
        if "log_level" in data:
            try:
                log_level = _choice(LOG_LEVELS)(data["log_level"])
            except _Problem as exc:
                raise self.fail("log_level", str(exc)) from None

        defaults = data.get("defaults", {})
        if not isinstance(defaults, dict):
            raise self.fail("defaults", "must be a table: write [defaults] above the [[accounts]]")
        self.check_keys(defaults, "defaults", [k for k in _ACCOUNT_KEYS if k != "name"])
        if "name" in defaults:  # pragma: no cover - rejected by check_keys
            raise self.fail("defaults.name", "each account needs its own name")
        if "maildir" in defaults:
            raise self.fail(
                "defaults.maildir",
                "each account names its own Maildir: move it into the [[accounts]] table",
            )

        raw_accounts = data.get("accounts")
        if raw_accounts is None:
            raise self.fail(
                "accounts", "no [[accounts]] in the file: add one with name, host and username"
            )
        if not isinstance(raw_accounts, list) or not all(isinstance(a, dict) for a in raw_accounts):
            raise self.fail(
                "accounts", 'must be a list of [[accounts]] tables, each with name = "..."'
            )
        if not raw_accounts:
            raise self.fail("accounts", "is empty: add an [[accounts]] table")

        accounts: list[Account] = []
        seen: dict[str, str] = {}
        for index, table in enumerate(raw_accounts):
            acc = self.account(index, table, defaults, state_dir)
            if acc.name in seen:
                raise self.fail(
                    f"accounts[{index}].name",
                    f"{acc.name!r} is used twice ({seen[acc.name]} too): names must be unique",
                )
            seen[acc.name] = f"accounts[{index}]"
            accounts.append(acc)

        self.check_permissions(accounts)
        return Config(
            path=self.path,
            source=source,
            accounts=tuple(accounts),
            state_dir=state_dir,
            max_parallel=max_parallel,
            log_level=log_level,
            warnings=tuple(self.warnings),
        )

    def account(
        self,
        index: int,
        table: Mapping[str, object],
        defaults: Mapping[str, object],
        state_dir: Path,
    ) -> Account:
        where = f"accounts[{index}]"
        raw_name = table.get("name")
        if raw_name is None:
            raise self.fail(f"{where}.name", 'missing: add name = "..." (letters, digits, ._@+-)')
        if not isinstance(raw_name, str) or not ACCOUNT_NAME_RE.fullmatch(raw_name):
            raise self.fail(
                f"{where}.name",
                f"{raw_name!r} is not a valid name: use letters, digits and . _ @ + - only",
            )
        name = raw_name
        where = f"accounts.{name}"
        self.check_keys(table, where, _ACCOUNT_KEYS, name)

        # Merge, remembering where each value came from so errors name the right place.
        merged: dict[str, tuple[object, str]] = {
            k: (v, f"defaults.{k}") for k, v in defaults.items()
        }
        merged.update({k: (v, f"{where}.{k}") for k, v in table.items()})

        values: dict[str, Any] = {}
        for key, (raw, keypath) in merged.items():
            try:
                values[key] = _ACCOUNT_CHECKS[key](raw)
            except _Problem as exc:
                raise self.fail(keypath, str(exc)) from None

        def keyname(k: str) -> str:
            return merged[k][1] if k in merged else f"{where}.{k}"

        if "folders" in values and not values["folders"]:
            raise self.fail(keyname("folders"), 'must name at least one folder, e.g. ["INBOX"]')
        if "every" in values and values["every"] <= 0:
            raise self.fail(keyname("every"), 'must be more than 0s, e.g. "15m"')
        if "every" in values and "cron" in values:
            raise self.fail(keyname("cron"), "every and cron are both set: keep one of them")
        if "rules" in values:
            rule_paths = []
            for raw_rule in values["rules"]:
                rule_path = self.resolve_path(raw_rule)
                if not rule_path.is_file():
                    raise self.fail(keyname("rules"), f"rule file {rule_path} does not exist")
                rule_paths.append(rule_path)
            values["rules"] = tuple(rule_paths)
        if "maildir" in values:
            own = {k for k, (_v, keypath) in merged.items() if keypath.startswith(f"{where}.")}
            return self.maildir_account(values, own, keyname, state_dir)

        if "host" not in values:
            raise self.fail(
                f"{where}.host",
                'missing: add host = "..." (or maildir = "PATH" for a local Maildir)',
            )
        if "username" not in values:
            raise self.fail(f"{where}.username", 'missing: add username = "..."')
        security = values.get("security", "tls")
        values.setdefault("port", DEFAULT_PORTS[security])
        if not 1 <= values["port"] <= 65535:
            raise self.fail(keyname("port"), f"{values['port']} is not a port (1-65535)")
        if any(c.isspace() for c in values["host"]):
            raise self.fail(keyname("host"), f"{values['host']!r} is not a host name")
        if (
            security == "plain"
            and not values.get("allow_plaintext", False)
            and not _may_be_loopback(values["host"])
        ):
            raise self.fail(
                keyname("security"),
                f"'plain' would send the password unencrypted to {values['host']}: use tls or "
                "starttls, or set allow_plaintext = true",
            )
        if values.get("timeout", 60.0) <= 0:
            raise self.fail(keyname("timeout"), "must be more than 0s")

        ca = values.pop("tls_ca_file", None)
        if ca is not None:
            ca_path = self.resolve_path(ca)
            if not ca_path.is_file():
                raise self.fail(
                    keyname("tls_ca_file"), f"{ca_path} does not exist or is not a file"
                )
            values["tls_ca_file"] = ca_path

        self.check_oauth2(values, keyname, name)
        return Account(**values, state_dir=state_dir)

    def maildir_account(
        self,
        values: dict[str, Any],
        own: set[str],
        keyname: Callable[[str], str],
        state_dir: Path,
    ) -> Account:
        """An account on a local Maildir tree: no server, no credentials. `own`: the keys set
        in the account's own table (IMAP keys from [defaults] are for the IMAP accounts).
        Whether the path exists is for opening the mailbox to say (a disk may be mounted
        later); the loader only resolves it (``~``, relative to this file's folder)."""
        if "host" in own:
            raise self.fail(
                keyname("host"),
                "host and maildir are both set: keep host for an IMAP server, or maildir for "
                "a local Maildir",
            )
        if values.get("watch") and "watch" in own:
            raise self.fail(
                keyname("watch"),
                "watch needs an IMAP server (IDLE); a Maildir account is swept on its "
                'schedule: set every = "5m" or cron instead',
            )
        ignored = [k for k in _IMAP_ONLY_KEYS if k in own]
        if ignored:
            self.warnings.append(
                f"{self.path}: {keyname(ignored[0])}: ignored for a Maildir account"
            )
        kept = {
            k: v
            for k, v in values.items()
            if k not in _IMAP_ONLY_KEYS and k not in ("host", "maildir", "watch")
        }
        return Account(
            host="",
            username="",
            maildir=self.resolve_path(values["maildir"]),
            state_dir=state_dir,
            **kept,
        )

    def check_oauth2(
        self, values: dict[str, Any], keyname: Callable[[str], str], name: str
    ) -> None:
        oauth_keys = [k for k in values if k.startswith("oauth2_") and values[k]]
        if values.get("auth", "password") != "oauth2":
            if oauth_keys:
                self.warnings.append(
                    f'{self.path}: {keyname(oauth_keys[0])}: ignored because auth is not "oauth2"'
                )
            return
        if values.get("password_command"):
            self.warnings.append(
                f'{self.path}: {keyname("password_command")}: ignored because auth = "oauth2"'
            )
        provider = values.get("oauth2_provider")
        if provider is None:
            raise self.fail(
                keyname("oauth2_provider"),
                f'missing: auth = "oauth2" needs one of {", ".join(OAUTH2_PROVIDERS)}',
            )
        if not values.get("oauth2_client_id"):
            raise self.fail(
                keyname("oauth2_client_id"),
                'missing: auth = "oauth2" needs the client id of your registered app',
            )
        if provider == "custom":
            for key in ("oauth2_authorize_url", "oauth2_token_url"):
                if not values.get(key):
                    raise self.fail(keyname(key), 'missing: oauth2_provider = "custom" needs it')
            if not values.get("oauth2_scopes"):
                raise self.fail(
                    keyname("oauth2_scopes"), 'missing: oauth2_provider = "custom" needs scopes'
                )

    def check_permissions(self, accounts: Sequence[Account]) -> None:
        try:
            mode = self.path.stat().st_mode
        except OSError:  # pragma: no cover - it was just read
            return
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and any(
            a.password_command or a.oauth2_client_secret_command for a in accounts
        ):
            self.warnings.append(
                f"{self.path}: others can write this file and it runs commands as you "
                f"(password_command): chmod go-w {self.path}"
            )
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            inline = [
                a.name
                for a in accounts
                for cmd in (a.password_command, a.oauth2_client_secret_command)
                if cmd and _SECRETISH_COMMAND_RE.match(cmd)
            ]
            if inline:
                self.warnings.append(
                    f"{self.path}: others can read this file and account {inline[0]!r} seems to "
                    f"hold a secret inline (echo/printf): chmod 600 {self.path}, or store it "
                    f"with `ndr-sweeper login {inline[0]}`"
                )
            elif any(a.password_command or a.oauth2_client_secret_command for a in accounts):
                self.warnings.append(
                    f"{self.path}: others can read this file, and it says how your passwords "
                    f"are fetched (password_command): chmod 600 {self.path}"
                )


# --------------------------------------------------------------------------- loading


def load_config(path: Path | str | None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration.

    ``path`` is the one given on the command line (None when not given); then
    ``$NDR_SWEEPER_CONFIG``; then ``$XDG_CONFIG_HOME/ndr-sweeper/config.toml``.
    ``env`` defaults to ``os.environ``.
    """
    env = os.environ if env is None else env
    resolved, source = resolve_config_path(path, env)
    origin = {"cli": " (given with --config)", "env": f" (from ${CONFIG_ENV})", "default": ""}
    try:
        raw = resolved.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration file at {resolved}{origin[source]}: create it (see README), "
            f"or name another with --config or ${CONFIG_ENV}"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{resolved}{origin[source]} is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {resolved}{origin[source]}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{resolved}: line {line}: not UTF-8 text: save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{resolved}: {toml_message(exc)}") from None
    return _Loader(resolved).load(data, source, env)


def toml_message(exc: tomllib.TOMLDecodeError) -> str:
    """tomllib's error as 'line L, column C: invalid TOML: ...'."""
    msg = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
    if m:
        return f"line {m.group(1)}, column {m.group(2)}: invalid TOML: {msg[: m.start()]}"
    m = re.search(r"\s*\(at end of document\)$", msg)
    if m:
        return f"end of file: invalid TOML: {msg[: m.start()]}"
    return f"invalid TOML: {msg}"
