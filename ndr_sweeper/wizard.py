"""``ndr-sweeper init``: from an email address to a working account in one command.

Recognises the big providers by the address's domain (``providers.PRESETS``), an unknown
domain by its RFC 6186 SRV records or its MX hosts, asks only what it cannot know, writes the
account into the config file (mode 0600; an existing file gets the account appended, it is
replaced only with ``--force``, the old one kept as ``.bak``), never writes a secret into it,
offers ``login``, and ends with a dry run. Every question has a flag, and
``--non-interactive`` turns every missing answer into a one-line error naming the flag.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import render
from .config import ACCOUNT_NAME_RE, DEFAULT_PORTS, SECURITY_MODES, load_config
from .dnsquery import host_name
from .errors import ConfigError, NdrSweeperError
from .paths import resolve_config_path
from .providers import PRESETS, Found, Preset, Resolver, by_key, discover, from_srv, username_for
from .textsafe import json_safe


@dataclass
class Answers:
    """Everything the account table is made of."""

    address: str
    name: str
    host: str
    port: int
    security: str
    username: str
    auth: str = "password"
    oauth2_provider: str | None = None
    oauth2_client_id: str | None = None
    password_command: str | None = None
    preset: Preset | None = None
    source: str = "given"
    folders: dict[str, str] = field(default_factory=dict)  # config key -> folder, written


class _Asker:
    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def __call__(self, question: str, flag: str, default: str | None = None) -> str:
        """The answer, or the default for an empty one; ConfigError naming ``flag`` when no
        one can answer (``--non-interactive``, or standard input at its end)."""
        if not self.interactive:
            raise ConfigError(f"init --non-interactive needs {flag}")
        shown = f"{question} [{default}]: " if default else f"{question}: "
        answer = render.ask(shown).strip()
        if answer:
            return answer
        if default is not None:
            return default
        raise ConfigError(f"no answer to {question!r} (standard input ended?): give {flag}")

    def yes(self, question: str, default: bool = True) -> bool:
        if not self.interactive:
            return default
        hint = "Y/n" if default else "y/N"
        answer = render.ask(f"{question} [{hint}] ").strip().lower()
        if not answer:
            return default
        return answer in ("y", "yes")


# --------------------------------------------------------------------------- checks


def _address(text: str) -> str:
    text = text.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or any(c.isspace() for c in text) or host_name(domain) is None:
        raise ConfigError(f"{text!r} is not an email address (expected you@example.org)")
    return f"{local}@{domain.rstrip('.').lower()}"


def _host(text: str, flag: str = "--host") -> str:
    h = text.strip().strip("[]")
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(h))
    name = host_name(h)
    if name is None:
        raise ConfigError(f"{flag}: {text!r} is not a host name")
    return name


def _port(value: int | str, flag: str = "--port") -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"{flag}: {value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{flag}: {port} is not a port (1-65535)")
    return port


def default_name(address: str) -> str:
    """The account's name: the address itself when it is a valid name, else a cleaned one."""
    if ACCOUNT_NAME_RE.fullmatch(address):
        return address
    cleaned = "".join(c if ACCOUNT_NAME_RE.fullmatch(c) else "-" for c in address).strip("-")
    return cleaned or "mail"


# --------------------------------------------------------------------------- the questions


def gather(
    args: argparse.Namespace, resolver: Resolver | None, ask: _Asker, existing: set[str]
) -> Answers:
    """Work out every value of the new account from the flags, the provider table, DNS and
    (interactively) the user."""
    address = _address(args.email or ask("Email address", "--email ADDRESS"))
    domain = address.rsplit("@", 1)[1]
    name = args.name or default_name(address)
    if not ACCOUNT_NAME_RE.fullmatch(name):
        raise ConfigError(f"--name: {name!r} is not a valid name: use letters, digits and ._@+-")
    if name in existing:
        raise ConfigError(
            f"the config file already has an account named {name!r}: choose another with "
            "--name, or start a new file with --force (the old one is kept as .bak)"
        )

    found: Found | None = None
    preset: Preset | None = None
    if args.provider:
        preset = by_key(args.provider)
        if preset is None:
            keys = ", ".join(p.key for p in PRESETS)
            raise ConfigError(f"--provider: unknown provider {args.provider!r}: one of {keys}")
        if preset.host:
            found = Found(preset.host, preset.port, preset.security, "provider", preset)
        elif not args.host and resolver is not None:
            with contextlib.suppress(NdrSweeperError, OSError):
                found = from_srv(domain, resolver)
    if args.host:
        host = _host(args.host)
        if found is None or found.host != host:
            security = args.security or "tls"
            found = Found(host, DEFAULT_PORTS[security], security, "given", preset)
    elif found is None and not args.provider:
        found = discover(address, resolver)
        preset = found.preset if found else None
    if found is not None and found.source in ("srv", "mx") and ask.interactive:
        how = "DNS SRV records" if found.source == "srv" else f"the MX host {found.detail}"
        what = preset.name if preset else f"{found.host}:{found.port} ({found.security})"
        if not ask.yes(f"{domain}: {what}, found in {how}. Use it?"):
            found = None
    if found is None:
        host = _host(ask(f"IMAP server of {domain}", "--host HOST", f"imap.{domain}"))
        security = args.security or ask("Security (tls, starttls)", "--security", "tls")
        if security not in SECURITY_MODES:
            raise ConfigError(f"--security: {security!r} is not one of tls, starttls, plain")
        given = args.port
        port = _port(
            given if given is not None else ask("Port", "--port", str(DEFAULT_PORTS[security]))
        )
        found = Found(host, port, security, "given", preset)

    security = args.security or found.security
    if args.port is not None:
        port = _port(args.port)
    elif security != found.security:
        port = DEFAULT_PORTS[security]
    else:
        port = found.port
    auth = args.auth or (preset.auth if preset else "password")
    answers = Answers(
        address=address,
        name=name,
        host=found.host,
        port=port,
        security=security,
        username=args.username or username_for(preset, address),
        auth=auth,
        preset=preset,
        source=found.source,
    )
    if auth == "oauth2":
        answers.oauth2_provider = args.oauth2_provider or (preset and preset.oauth2_provider)
        if not answers.oauth2_provider:
            raise ConfigError(
                "--auth oauth2 needs --oauth2-provider google or microsoft (other providers: "
                'write oauth2_provider = "custom" and its URLs into the config file)'
            )
        if args.password_command:
            raise ConfigError("--password-command is for --auth password, not oauth2")
        who = preset.name if preset else answers.oauth2_provider
        answers.oauth2_client_id = args.oauth2_client_id or ask(
            f"{who} signs in with OAuth2: client id of your registered app",
            "--oauth2-client-id ID (or --auth password for an app password)",
        )
    else:
        answers.password_command = args.password_command
    for key, flag in (
        ("sent_folders", "sent_folder"),
        ("junk_folder", "junk_folder"),
        ("trash_folder", "trash_folder"),
    ):
        value = getattr(args, flag, None)
        if value:
            answers.folders[key] = value
    return answers


# --------------------------------------------------------------------------- the file


def _toml(value: object) -> str:
    """A TOML value. JSON's escapes are TOML's; json_safe escapes what json.dumps leaves raw
    (DEL and the C1 controls, which TOML refuses raw)."""
    return json_safe(json.dumps(value, ensure_ascii=False))


def account_table(a: Answers, now: datetime | None = None) -> str:
    """The ``[[accounts]]`` table for the answers, with the provider's folder names as
    comments (the sweep finds them by SPECIAL-USE flag or name; uncomment to pin them)."""
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
    what = a.preset.name if a.preset else {"srv": "found in DNS SRV records"}.get(a.source, "")
    lines = [f"# Added by `ndr-sweeper init` on {when}" + (f": {what}" if what else "")]
    lines.append("[[accounts]]")
    keys: list[tuple[str, object]] = [
        ("name", a.name),
        ("host", a.host),
        ("port", a.port),
        ("security", a.security),
        ("username", a.username),
    ]
    if a.auth == "oauth2":
        keys += [
            ("auth", "oauth2"),
            ("oauth2_provider", a.oauth2_provider),
            ("oauth2_client_id", a.oauth2_client_id),
        ]
    elif a.password_command:
        keys.append(("password_command", a.password_command))
    for k, v in keys:
        lines.append(f"{k} = {_toml(v)}")
    for key, folder in a.folders.items():
        lines.append(f"{key} = {_toml([folder] if key == 'sent_folders' else folder)}")
    p = a.preset
    if p is not None and (p.sent or p.junk or p.trash):
        short = p.name.split(" /")[0].split(" (")[0]
        lines.append(f"# Folders are found by SPECIAL-USE flag or name; {short} names them:")
        for key, folder in (
            ("sent_folders", p.sent),
            ("junk_folder", p.junk),
            ("trash_folder", p.trash),
        ):
            if folder and key not in a.folders:
                lines.append(f"# {key} = {_toml([folder] if key == 'sent_folders' else folder)}")
    return "\n".join(lines) + "\n"


_HEADER = (
    "# ndr-sweeper configuration (see the README for every setting).\n"
    "# No secret belongs here: passwords and tokens are kept in the system keyring\n"
    "# (`ndr-sweeper login ACCOUNT`) or come from password_command.\n"
)


def write_config(path: Path, table: str, *, replace: bool) -> str:
    """Add ``table`` to the config file (a new file, or appended; with ``replace`` the old
    file becomes PATH.bak). Written to a temporary file (0600), checked by loading it, then
    renamed over PATH. Returns "created", "appended" or "replaced"."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        old = path.read_text(encoding="utf-8") if path.exists() else None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: fix it, or start anew with --force") from None
    if old is None or replace:
        text, how = _HEADER + "\n" + table, ("replaced" if old is not None else "created")
    else:
        text, how = old + ("" if old.endswith("\n") or not old else "\n") + "\n" + table, "appended"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            load_config(tmp)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(tmp), str(path))) from None
        if old is not None and replace:
            backup = path.with_name(path.name + ".bak")
            os.replace(path, backup)
            os.chmod(backup, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return how


# --------------------------------------------------------------------------- the command


def cmd_init(args: argparse.Namespace, resolver: Resolver | None = None) -> int:
    interactive = not args.non_interactive
    ask = _Asker(interactive)
    path, _source = resolve_config_path(args.config)
    existing: set[str] = set()
    if path.exists() and not args.force:
        try:
            existing = set(load_config(path).names)
        except ConfigError as exc:
            raise ConfigError(
                f"{exc} (init appends to the existing file: fix it first, or start a new one "
                "with --force, which keeps the old one as .bak)"
            ) from None
    if resolver is None and not args.no_dns:
        from .dnsquery import DnsResolver

        resolver = DnsResolver()
    answers = gather(args, None if args.no_dns else resolver, ask, existing)
    how = write_config(path, account_table(answers), replace=args.force)
    out = render.narrow()
    render.para(
        f"{how} {path}: account {answers.name!r} ({answers.host}:{answers.port}, "
        f"{answers.security}, {answers.auth})",
        out=out,
        indent="  ",
    )
    if answers.preset is not None and answers.preset.hint:
        render.para(f"note: {answers.preset.hint}", out=out, indent="  ")
    config = load_config(path)
    account = config.account(answers.name)

    have_secret = bool(answers.password_command)
    if not have_secret and not args.no_login and interactive and sys.stdin.isatty():
        what = "sign in now" if account.uses_oauth2 else "store the password in the keyring now"
        if ask.yes(f"{what.capitalize()} (ndr-sweeper login {account.name})?"):
            from .login import login_oauth2, login_password

            if account.uses_oauth2:
                login_oauth2(account)
            else:
                login_password(account)
            have_secret = True
    login_hint = f"ndr-sweeper login {account.name}"
    dry_hint = f"ndr-sweeper sweep --dry-run --account {account.name}"
    if args.config:
        login_hint += f" --config {path}"
        dry_hint += f" --config {path}"
    if not have_secret:
        render.para(f"next: `{login_hint}`, then `{dry_hint}`", out=out, indent="  ")
        return 0
    if args.no_dry_run:
        render.para(f"next: `{dry_hint}` shows what a sweep would do", out=out, indent="  ")
        return 0
    render.para("dry run (nothing is changed):", out=out)
    from .cli import cmd_sweep

    return cmd_sweep(
        argparse.Namespace(
            config=str(path),
            account=[account.name],
            dry_run=True,
            full=False,
            json=False,
            verbose=False,
            quiet=False,
        )
    )
