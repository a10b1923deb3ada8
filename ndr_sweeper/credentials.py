"""Passwords and tokens: from a password_command, or from the system keyring.

keyring is imported inside the functions that need it: it is slow to import and most
commands never touch it. Nothing here ever puts a secret (or a command's stdout) in an
error message or a log line.

A keyring can block for as long as it likes (SecretService waits for a desktop unlock prompt
that nobody answers on a server), holding a service worker and the account's lock. Reads and
writes made without a user at hand (sweeps, the service) run in a daemon thread and give up
after ``KEYRING_TIMEOUT`` seconds; ``login`` and ``logout`` say ``interactive`` and wait.
A read still stuck is not started again: the next caller waits for the same one.
"""

from __future__ import annotations

import errno
import logging
import subprocess
import threading
from typing import TYPE_CHECKING, Any, Final

from .errors import BusyError, CredentialError

if TYPE_CHECKING:
    from .config import Account

log = logging.getLogger(__name__)
# Starting password_command failed because this machine is at a limit, not the command.
_BUSY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM})

SERVICE = "ndr-sweeper"
REFRESH_TOKEN = "oauth2-refresh-token"
COMMAND_TIMEOUT = 30.0
KEYRING_TIMEOUT: Final = 20.0  # seconds a keyring call may take when nobody can unlock it

_NO_KEYRING_FIX = (
    "set password_command for it in the config file, or install a file-based keyring "
    "backend such as keyrings.cryptfile and select it in keyring's own config file "
    "(`keyring diagnose` shows where that is)"
)


# --------------------------------------------------------------------------- commands


def run_secret_command(
    command: str, *, account: str, key: str = "password_command", timeout: float = COMMAND_TIMEOUT
) -> str:
    """Run ``command`` through the shell; the first line of its stdout, newline stripped.

    Failure (non-zero exit, nothing printed, timeout) is a CredentialError naming the account,
    the config key and the exit status, plus the last line of stderr; never stdout.
    """
    what = f"{key} of account {account!r}"
    log.debug("running %s", what)
    try:
        proc = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        if exc.errno in _BUSY_ERRNOS:  # this machine is at a limit, the secret is fine
            raise BusyError(
                f"{what} could not be started: {exc.strerror}; the next run tries again "
                "(raise the open-file limit if it keeps happening)"
            ) from None
        raise CredentialError(f"{what} could not be started: {exc.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        # A grandchild may still hold the pipes open: do not wait for it to close them.
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
        raise CredentialError(
            f"{what} did not finish within {timeout:g}s and was stopped: check that it does "
            "not wait for input"
        ) from None
    if proc.returncode != 0:
        status = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit status {proc.returncode}"
        )
        raise CredentialError(f"{what} failed ({status}){_stderr_tail(err)}")
    first = out.split(b"\n", 1)[0]
    if first.endswith(b"\r"):
        first = first[:-1]
    if not first:
        raise CredentialError(
            f"{what} printed nothing on its first line (exit status 0){_stderr_tail(err)}"
        )
    try:
        return first.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError(f"{what} printed something that is not UTF-8 text") from None


def _stderr_tail(err: bytes) -> str:
    lines = [ln.strip() for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    last = lines[-1]
    if len(last) > 200:
        last = last[:197] + "..."
    return f": {last}"


# --------------------------------------------------------------------------- keyring


def _key(account: str, suffix: str | None) -> str:
    return account if suffix is None else f"{account}:{suffix}"


def _what(account: str, suffix: str | None) -> str:
    return (
        f"the password of account {account!r}"
        if suffix is None
        else f"the {suffix} of account {account!r}"
    )


class _Pending:
    """A keyring call running in its own thread."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: CredentialError | None = None


_pending: dict[tuple[str, str], _Pending] = {}  # reads whose thread has not returned yet
_pending_lock = threading.Lock()


def _run(call: _Pending, key: tuple[str, str] | None, op: str, *args: Any) -> None:
    try:
        call.result = _call_now(op, *args)
    except CredentialError as exc:
        call.error = exc
    except BaseException as exc:  # pragma: no cover - _call_now maps every Exception
        call.error = CredentialError(f"the keyring failed: {type(exc).__name__}")
    finally:
        if key is not None:
            with _pending_lock:
                if _pending.get(key) is call:
                    del _pending[key]
        call.done.set()


def _call(
    op: str, account: str, suffix: str | None, *args: Any, timeout: float | None = None
) -> Any:
    """``keyring.<op>``; with ``timeout``, a CredentialError when it has not answered by then."""
    if timeout is None:
        return _call_now(op, account, suffix, *args)
    # Reads of the same secret share one thread: a keyring stuck on a prompt is asked once.
    key = (op, _key(account, suffix)) if op == "get_password" else None
    with _pending_lock:
        call = _pending.get(key) if key is not None else None
        if call is None:
            call = _Pending()
            if key is not None:
                _pending[key] = call
            threading.Thread(
                target=_run,
                args=(call, key, op, account, suffix, *args),
                name=f"keyring {op}",
                daemon=True,
            ).start()
    if not call.done.wait(timeout):
        fix = (
            "or set password_command for it in the config file"
            if suffix is None
            else "or use a keyring backend that needs no unlock prompt"
        )
        raise CredentialError(
            f"the keyring did not answer within {timeout:g}s for {_what(account, suffix)} "
            f"(locked, waiting for an unlock prompt?): unlock it, {fix}"
        )
    if call.error is not None:
        raise CredentialError(str(call.error)) from None
    return call.result


def _call_now(op: str, account: str, suffix: str | None, *args: Any) -> Any:
    import keyring
    import keyring.errors

    try:
        return getattr(keyring, op)(SERVICE, _key(account, suffix), *args)
    except keyring.errors.NoKeyringError:
        fix = _NO_KEYRING_FIX
        if suffix is not None:
            # An OAuth2 token cannot come from password_command: only a keyring backend helps.
            fix = fix.split(", or ", 1)[1]
        raise CredentialError(
            f"no keyring backend to keep {_what(account, suffix)}: {fix}"
        ) from None
    except keyring.errors.KeyringLocked:
        raise CredentialError(
            f"the keyring is locked, so {_what(account, suffix)} cannot be read: unlock it "
            "(log in to the desktop session) or use password_command"
        ) from None
    except keyring.errors.PasswordDeleteError as exc:
        raise CredentialError(f"cannot delete {_what(account, suffix)}: {exc}") from None
    except keyring.errors.KeyringError as exc:
        raise CredentialError(
            f"the keyring failed for {_what(account, suffix)}: {type(exc).__name__}: {exc}"
        ) from None
    except Exception as exc:
        # Backends talk to D-Bus, Keychain, files...: their own errors are not KeyringErrors.
        log.debug("keyring backend error", exc_info=True)
        raise CredentialError(
            f"the keyring failed for {_what(account, suffix)}: {type(exc).__name__}: {exc}"
        ) from None


def _timeout(interactive: bool) -> float | None:
    return None if interactive else KEYRING_TIMEOUT


def get_secret(account: str, suffix: str | None = None, *, interactive: bool = False) -> str | None:
    """The secret stored under ``account`` (or ``account:suffix``), None when nothing is.

    ``interactive``: wait for the keyring as long as it takes (a user is there to unlock it);
    otherwise give up after ``KEYRING_TIMEOUT`` seconds.
    """
    value = _call("get_password", account, suffix, timeout=_timeout(interactive))
    return None if value is None else str(value)


def set_secret(account: str, suffix: str | None, secret: str, *, interactive: bool = True) -> None:
    """Store ``secret`` under ``account`` (or ``account:suffix``), replacing what was there."""
    if not secret:
        raise CredentialError(f"refusing to store an empty value as {_what(account, suffix)}")
    _call("set_password", account, suffix, secret, timeout=_timeout(interactive))


def delete_secret(account: str, suffix: str | None = None) -> None:
    """Remove the stored secret; CredentialError when nothing is stored (interactive)."""
    if get_secret(account, suffix, interactive=True) is None:
        raise CredentialError(f"nothing stored for {_what(account, suffix)} in the keyring")
    _call("delete_password", account, suffix)


# --------------------------------------------------------------------------- passwords


def get_password(account: Account, *, interactive: bool = False) -> str:
    """The IMAP password: from password_command if set, else from the keyring (which gets
    ``KEYRING_TIMEOUT`` seconds to answer unless ``interactive``)."""
    if account.password_command:
        return run_secret_command(account.password_command, account=account.name)
    value = get_secret(account.name, interactive=interactive)
    if value is None:
        raise CredentialError(
            f"no password stored for account {account.name!r}: run "
            f"`ndr-sweeper login {account.name}`, or set password_command"
        )
    return value


def set_password(account_name: str, secret: str) -> None:
    set_secret(account_name, None, secret)


def delete_password(account_name: str) -> None:
    delete_secret(account_name, None)


# --------------------------------------------------------------------------- OAuth2


def get_refresh_token(account_name: str, *, interactive: bool = False) -> str:
    """The stored OAuth2 refresh token; CredentialError saying to log in when there is none."""
    value = get_secret(account_name, REFRESH_TOKEN, interactive=interactive)
    if value is None:
        raise CredentialError(
            f"no OAuth2 token stored for account {account_name!r}: run "
            f"`ndr-sweeper login {account_name}`"
        )
    return value


def set_refresh_token(account_name: str, token: str, *, interactive: bool = True) -> None:
    set_secret(account_name, REFRESH_TOKEN, token, interactive=interactive)


def delete_refresh_token(account_name: str) -> None:
    delete_secret(account_name, REFRESH_TOKEN)


def get_client_secret(account: Account) -> str | None:
    """The OAuth2 client secret from oauth2_client_secret_command, None when not configured."""
    if not account.oauth2_client_secret_command:
        return None
    return run_secret_command(
        account.oauth2_client_secret_command,
        account=account.name,
        key="oauth2_client_secret_command",
    )


# --------------------------------------------------------------------------- unattended use


def unattended_problem(backend: Any = None) -> str | None:
    """Why the keyring cannot give a secret to a sweep nobody is watching (cron, the
    service), or None when it can, as far as we can tell without reading a secret.

    A file keyring that is encrypted with its own password (keyrings.cryptfile,
    keyrings.alt's EncryptedKeyring) asks for that password on every run; the desktop
    keyrings (Secret Service, KWallet) need the desktop session's D-Bus.
    """
    import os

    import keyring

    backend = backend if backend is not None else keyring.get_keyring()
    for b in getattr(backend, "backends", None) or [backend]:
        kind = f"{type(b).__module__}.{type(b).__qualname__}".lower()
        if "cryptfile" in kind or "encryptedkeyring" in kind:
            return (
                f"the keyring in use ({type(b).__name__}) asks for its own password on every "
                "run, which cron and the background service cannot type"
            )
        desktop = "secretservice" in kind or "kwallet" in kind or "libsecret" in kind
        if desktop and not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
            return (
                f"the keyring in use ({type(b).__name__}) lives in your desktop session, which "
                "cron and a service started outside it cannot reach"
            )
    return None
