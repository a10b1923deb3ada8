"""``ndr-sweeper check`` (alias ``doctor``): is everything in place for a sweep?

One line per check, each with what to do when it fails: the config is valid, the state
database is sound and writable; per account: the secret can be had, the server answers,
its TLS certificate is trusted, the login works, the folders are found, and which of the
capabilities the sweep uses (MOVE, UIDPLUS, IDLE, CONDSTORE) the server has. A check whose
ground is missing (no connection, no login) is skipped, saying why. Exit status 1 when any
check failed; a missing capability is a warning, not a failure.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigError, NdrSweeperError

if TYPE_CHECKING:
    from .config import Account, Config
    from .mailbox.imap import ImapMailbox

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
PROBE_TIMEOUT = 10.0  # seconds for the reachability and TLS probes (at most the account's)
_GREETING_MAX = 8192


@dataclass(frozen=True)
class Check:
    account: str | None  # None: not about one account (config, state)
    name: str
    status: str
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"account": self.account, "check": self.name, "status": self.status,
                "detail": self.detail}  # fmt: skip


# --------------------------------------------------------------------------- probes


def probe_server(account: Account) -> tuple[str, str]:
    """(status, detail) of a TCP connection to the account's server."""
    from .connect import check_transport

    timeout = min(account.timeout, PROBE_TIMEOUT)
    try:
        check_transport(account)
        with socket.create_connection((account.host, account.port), timeout=timeout) as s:
            peer = s.getpeername()[0]
    except NdrSweeperError as exc:
        return FAIL, str(exc)
    except socket.gaierror as exc:
        return FAIL, (
            f"{account.host}: unknown host ({exc.strerror or exc}); fix: check host in the config"
        )
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return FAIL, (
            f"cannot reach {account.host}:{account.port} ({why}); fix: check host, port and "
            "security (tls is usually 993, starttls 143), and the network"
        )
    return OK, f"{account.host}:{account.port} answers ({peer})"


def _starttls_line(sock: socket.socket, where: str) -> None:
    """Read the greeting, ask for STARTTLS and read its answer (bounded), raising OSError
    with what went wrong."""
    f = sock.makefile("rb")
    greeting = f.readline(_GREETING_MAX)
    if not greeting.startswith(b"* OK"):
        raise OSError(f"{where} did not greet as an IMAP server does")
    sock.sendall(b"c1 STARTTLS\r\n")
    for _ in range(50):
        line = f.readline(_GREETING_MAX)
        if not line:
            break
        if line.startswith(b"c1 "):
            if line[3:5].upper() == b"OK":
                return
            raise OSError(f"{where} does not offer STARTTLS; fix: use security = tls (port 993)")
    raise OSError(f"{where} did not answer STARTTLS")


def probe_tls(account: Account) -> tuple[str, str]:
    """(status, detail) of a TLS handshake that checks the certificate, as the sweep does."""
    if account.security == "plain":
        return SKIP, "security = plain: nothing to check (loopback only)"
    where = f"{account.host}:{account.port}"
    ca = str(account.tls_ca_file) if account.tls_ca_file else None
    trust = f"tls_ca_file {ca}" if ca else "the system's CAs"
    timeout = min(account.timeout, PROBE_TIMEOUT)
    try:
        context = ssl.create_default_context(cafile=ca)
        with socket.create_connection((account.host, account.port), timeout=timeout) as raw:
            if account.security == "starttls":
                _starttls_line(raw, where)
            with context.wrap_socket(raw, server_hostname=account.host) as tls:
                version = tls.version() or "TLS"
    except ssl.SSLCertVerificationError as exc:
        return FAIL, (
            f"the certificate of {where} is not trusted by {trust} "
            f"({exc.verify_message or exc.reason}); fix: if the server has its own CA, set "
            "tls_ca_file to that CA's certificate (never turn the check off)"
        )
    except ssl.SSLError as exc:
        return FAIL, (
            f"TLS handshake with {where} failed ({exc.reason or exc}); fix: check port and "
            "security (tls is usually 993, starttls 143)"
        )
    except (OSError, ValueError) as exc:
        return FAIL, f"TLS with {where} failed: {exc}"
    return OK, f"{version}, certificate for {account.host} trusted by {trust}"


def check_secret(account: Account) -> tuple[str, str]:
    from . import credentials

    try:
        if account.uses_oauth2:
            from .oauth2 import _oauthlib

            _oauthlib()
            credentials.get_refresh_token(account.name)
            return OK, "OAuth2 token in the keyring"
        credentials.get_password(account)
    except NdrSweeperError as exc:
        return FAIL, str(exc)
    where = "password_command" if account.password_command else "the keyring"
    return OK, f"password from {where}"


def check_state(config: Config) -> Check:
    from .state import open_state

    try:
        with open_state(config.state_dir) as state:
            problems = state.check()
            path = state.path
    except NdrSweeperError as exc:
        return Check(None, "state", FAIL, str(exc))
    if problems:
        return Check(None, "state", FAIL, (
            f"{path} is damaged ({problems[0]}); fix: move it aside and sweep again (the Sent "
            "index is rebuilt; the journal of earlier runs is lost)"
        ))  # fmt: skip
    for p in (path.parent, path):
        if not os.access(p, os.W_OK):
            return Check(None, "state", FAIL, f"{p} is not writable; fix: check its permissions")
    return Check(None, "state", OK, f"{path} is sound and writable")


CAPABILITIES = ("MOVE", "UIDPLUS", "IDLE", "CONDSTORE")


def capability_check(name: str, caps: frozenset[str]) -> Check:
    """Which of the capabilities the sweep uses the server has, and what a missing one means.
    Only CONDSTORE missing is no news (the sweep does not need it)."""
    have = [c for c in CAPABILITIES if c in caps]
    missing = [c for c in CAPABILITIES if c not in caps]
    why: list[str] = []
    if "MOVE" in missing and "UIDPLUS" in missing:
        why.append(
            "no MOVE nor UIDPLUS: originals are flagged \\Deleted, not removed "
            "(see expunge_fallback)"
        )
    elif "MOVE" in missing:
        why.append("no MOVE: moves are COPY, then UID EXPUNGE of the original")
    elif "UIDPLUS" in missing:
        why.append("no UIDPLUS: moved messages are found again by their headers")
    if "IDLE" in missing:
        why.append("no IDLE: watch = true cannot wait for new mail")
    if "CONDSTORE" in missing:
        why.append("no CONDSTORE (not needed)")
    status = WARN if set(missing) - {"CONDSTORE"} else OK
    return Check(name, "capabilities", status, "; ".join([" ".join(have) or "none", *why]))


# --------------------------------------------------------------------------- the run


def account_checks(config: Config, account: Account) -> list[Check]:
    from .connect import open_mailbox
    from .sweep import resolve_folders

    name = account.name
    out: list[Check] = []

    def add(check: str, result: tuple[str, str]) -> str:
        out.append(Check(name, check, *result))
        return result[0]

    secret = add("secret", check_secret(account))
    server = add("server", probe_server(account))
    tls = add("tls", probe_tls(account) if server == OK else (SKIP, "the server is not reached"))
    why_not = (
        "the server is not reached" if server != OK
        else "TLS failed" if tls == FAIL
        else "no secret" if secret != OK
        else None
    )  # fmt: skip
    if why_not is not None:
        for check in ("login", "folders", "capabilities"):
            add(check, (SKIP, why_not))
        return out
    mb: ImapMailbox | None = None
    try:
        mb = open_mailbox(account)
        add("login", (OK, f"logged in as {account.username}"))
    except NdrSweeperError as exc:
        add("login", (FAIL, str(exc)))
    if mb is None:
        for check in ("folders", "capabilities"):
            add(check, (SKIP, "no login"))
        return out
    try:
        try:
            sent, junk, trash = resolve_folders(mb, account)
            dest = f"; Junk: {junk}" if junk else f"; Trash: {trash}" if trash else ""
            add("folders", (OK, f"Sent: {', '.join(sent)}{dest}"))
        except NdrSweeperError as exc:
            add("folders", (FAIL, str(exc)))
        out.append(capability_check(name, mb.capabilities))
    finally:
        try:
            mb.logout()
        except Exception:
            pass
    return out


def run_checks(config_path: str | None, names: list[str] | None) -> list[Check]:
    from .config import load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return [Check(None, "config", FAIL, str(exc))]
    try:
        accounts = config.select(names)
    except ConfigError as exc:
        return [Check(None, "config", FAIL, str(exc))]
    n = len(config.accounts)
    checks = [Check(None, "config", OK, f"{config.path}: {n} account{'s' * (n != 1)}")]
    checks += [Check(None, "config", WARN, w) for w in config.warnings]
    for acc in accounts:
        checks += account_checks(config, acc)
    checks.append(check_state(config))
    return checks


def cmd_check(args: argparse.Namespace) -> int:
    from . import render

    checks = run_checks(args.config, args.account or None)
    failed = any(c.status == FAIL for c in checks)
    if args.json:
        render.json_doc({"ok": not failed, "checks": [c.to_dict() for c in checks]})
        return 1 if failed else 0
    out = render.narrow()
    current: str | None = None
    for c in checks:
        if c.account != current and c.account is not None:
            render.para(f"account {c.account}:", out=out)
        current = c.account
        render.para(f"{c.status:<4}  {c.name:<12} {c.detail}", out=out, indent=" " * 19)
    bad = sum(c.status == FAIL for c in checks)
    render.para(f"{bad} check(s) failed" if bad else "everything checked is in place", out=out)
    return 1 if failed else 0
