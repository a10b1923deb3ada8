"""The IMAP implementation of ``base.Mailbox``, on imapclient.

Every batched command goes through ``uidset.batches`` (ranges, capped set strings).  There is
no plain EXPUNGE anywhere in this module: only UID EXPUNGE, which needs UIDPLUS.  Errors are
mapped onto ``ndr_sweeper.errors``; passwords and tokens never appear in messages or logs.

``fetch_headers`` / ``fetch_messages`` are the only places that issue bulk FETCHes.  Their
answers are read as they arrive (``_FetchReader``: imaplib's per-line bookkeeping cost about
as much as the server's work on 20,000 header blocks, and the caller's work on one answer now
overlaps the server's on the next), each parsed by one regex when it has the usual shape, else
by ``fastfetch`` (imapclient's parser costs ~3x imaplib's reading), else by imapclient's.

Everything the server sends is read through ``guard`` (time and size limits per command); a
server that oversteps them ends the session with ``ServerLimitError``.

Folder names go back to the server exactly as its LIST gave them: callers use the decoded
``str`` (config names are Unicode), and each decoded name maps to the listed bytes
(``_wire_name``); a name the server did not list is encoded canonically (``mutf7.encode``).
A listed name that decodes to nothing usable (not modified UTF-7, a control character) is
returned with ``FolderInfo.unusable`` set and never sent in any command.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import socket
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timezone
from typing import Any, Literal, NamedTuple

import imapclient
from imapclient import exceptions as imapexc
from imapclient.response_parser import parse_fetch_response

from ndr_sweeper.errors import (
    AuthenticationError,
    BusyError,
    CapabilityError,
    ConnectError,
    CredentialError,
    MailboxError,
    ServerLimitError,
)
from ndr_sweeper.mailbox import fastfetch, guard, mutf7, uidset
from ndr_sweeper.mailbox.base import (
    SYSTEM_FLAG_SEARCH,
    FolderInfo,
    FolderStatus,
    HeaderItem,
    LogoutOnExit,
    missing_folder_message,
)

log = logging.getLogger(__name__)

Security = Literal["tls", "starttls", "plain"]
_CODE_RE = re.compile(rb"\[([A-Z-]+)(?: ([^\]]*))?\]")
_MISSING_CODES = {b"NONEXISTENT", b"TRYCREATE"}
_QUOTA_CODES = {b"OVERQUOTA"}  # RFC 5530
# Whole messages are fetched in batches of at most this many bytes (count x the partial size):
# what one FETCH may then hold in memory.
BODY_BATCH_BYTES = 64 * 1024 * 1024
HEADER_BATCH = 500  # whole headers (no field list) per FETCH: each may be up to 2 MB
MAX_NAME_BYTES = 1024  # a longer folder name from LIST is not used (and never sent back)


def _text(data: object) -> str:
    if isinstance(data, list | tuple):
        data = data[0] if data else b""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def _codes(text: str) -> set[bytes]:
    return {m.group(1) for m in _CODE_RE.finditer(text.encode("utf-8", "replace"))}


def _parse_copyuid(entries: Sequence[bytes], sent: Sequence[int]) -> dict[int, int]:
    """``[b"1234 1:3,7 10:13"]`` -> ``{1: 10, 2: 11, 3: 12, 7: 13}``, for the UIDs in *sent*.

    The server's sets are checked before they are expanded: both the same size, no bigger than
    what was sent, every source UID one of ours, no destination UID twice.  Anything else is
    bogus (``1:4000000000``) and ignored, with one warning: the journal then finds the copies
    by Message-ID.  A smaller set is fine (messages expunged meanwhile are not copied)."""
    ours = set(sent)
    mapping: dict[int, int] = {}
    bogus: list[bytes] = []
    for entry in entries:
        raw = entry if isinstance(entry, bytes) else str(entry).encode()
        parts = _text(raw).split()
        if len(parts) != 3:
            bogus.append(raw)
            continue
        try:
            src, dst = uidset.parse_runs(parts[1]), uidset.parse_runs(parts[2])
        except ValueError:
            bogus.append(raw)
            continue
        n = uidset.count(src)
        if n != uidset.count(dst) or n > len(ours):
            bogus.append(raw)
            continue
        pairs = dict(zip(uidset.expand(src), uidset.expand(dst), strict=True))
        if len(pairs) != n or not pairs.keys() <= ours or len(set(pairs.values())) != n:
            bogus.append(raw)
            continue
        mapping.update(pairs)
    if bogus:
        log.warning(
            "ignoring a COPYUID that does not fit the %d message(s) sent: %r",
            len(ours),
            bogus[0][:120],
        )
    return mapping


class _Client(guard.GuardedClient):
    """Folder names as ImapMailbox gives them: bytes are the server's own form (from LIST),
    sent as they are; str is encoded canonically (imapclient would decode bytes as ASCII and
    encode them again, turning "&A-" into "&-A-").  ImapMailbox sets ``folder_encode`` off,
    so LIST and NAMESPACE answer raw bytes too."""

    def _normalise_folder(self, folder_name: str | bytes) -> bytes:
        raw = mutf7.encode(folder_name) if isinstance(folder_name, str) else bytes(folder_name)
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class ImapMailbox(LogoutOnExit):
    """A logged-in IMAP connection.  Create it with ``ImapMailbox.connect(...)``.

    ``client`` is the underlying ``imapclient.IMAPClient`` (for later low-level speedups).
    ``max_set_bytes`` caps the UID-set string of every command (servers limit line length).
    """

    def __init__(
        self,
        client: imapclient.IMAPClient,
        *,
        host: str = "",
        port: int = 0,
        max_set_bytes: int = uidset.DEFAULT_MAX_BYTES,
        store_batch: int = 5000,
    ) -> None:
        self.client = client
        self.host = host
        self.port = port
        self.max_set_bytes = max_set_bytes
        self.store_batch = store_batch
        self.timeout: float | None = None  # per command (guard.Limits), for messages
        self.selected: str | None = None
        self.readonly = False
        self.capabilities: frozenset[str] = frozenset()
        self._prefix: str | None = None
        client.folder_encode = False  # names are ours to decode and encode (_wire_name)
        self._wire: dict[str, bytes] | None = None  # decoded name -> as LIST gave it
        self._status_uidnext: dict[str, int] = {}  # UIDNEXT of the last STATUS per folder
        self._flagsets: dict[bytes, frozenset[str]] = {}  # FLAGS as sent -> as fetch_headers gives

    # ---------------------------------------------------------------- connect
    @classmethod
    def connect(
        cls,
        host: str,
        port: int | None = None,
        security: Security = "tls",
        username: str = "",
        password: str | None = None,
        *,
        oauth2_token: str | None = None,
        ca_file: str | None = None,
        timeout: float = 60.0,
        account: str | None = None,
        max_set_bytes: int = uidset.DEFAULT_MAX_BYTES,
    ) -> ImapMailbox:
        """Connect, secure, log in and read CAPABILITY.

        *security*: "tls" (implicit TLS, port 993), "starttls" (port 143, then STARTTLS) or
        "plain" (no encryption: loopback tests only).  Certificates are verified against the
        system CAs, or *ca_file* (the config's tls_ca_file).  *timeout* bounds the greeting and
        every command's answer (``guard``: plus a second per 256 KB that arrives), and (at most
        30 s of it) the connect.  *account* only names the account in error messages.
        """
        if security not in ("tls", "starttls", "plain"):
            raise ValueError(f"security must be tls, starttls or plain, not {security!r}")
        if not username:
            raise ValueError("username is required")
        if password is None and oauth2_token is None:
            raise CredentialError(
                f"no password or OAuth2 token for {username} at {host}; "
                f"run `ndr-sweeper login {account or 'ACCOUNT'}`"
            )
        port = port or (993 if security == "tls" else 143)
        where = f"{host}:{port}"
        context = ssl.create_default_context(cafile=ca_file) if security != "plain" else None
        log.debug("connecting to %s (%s)", where, security)
        try:
            # Reaching the server gets at most 30 s; each read gets the whole *timeout* (a
            # server waiting on a lock of its own says so only every 30 s).
            limits = imapclient.SocketTimeout(connect=min(timeout, 30.0), read=timeout)
            client = _Client(
                host,
                port,
                ssl=security == "tls",
                ssl_context=context,
                timeout=limits,
                limits=guard.Limits(timeout=timeout),
            )
        except guard.LimitExceeded as exc:
            raise _limit_error(exc) from None
        except ssl.SSLCertVerificationError as exc:
            raise _cert_error(where, exc, ca_file) from None
        except ssl.SSLError as exc:
            raise ConnectError(
                f"TLS handshake with {where} failed: {exc.reason or exc}; "
                "check port and security (tls is usually port 993, starttls 143)"
            ) from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ConnectError(
                f"cannot reach {where}: {_reason(exc)}; check host, port and security"
            ) from None
        client.normalise_times = False
        box = cls(client, host=host, port=port, max_set_bytes=max_set_bytes)
        box.timeout = timeout
        try:
            try:
                if security == "starttls":
                    box._starttls(context, where, ca_file)
                box._login(username, password, oauth2_token, account, plain=security == "plain")
                box._read_capabilities()
            except guard.LimitExceeded as exc:
                raise _limit_error(exc) from None
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        log.debug("logged in to %s as %s", where, username)
        if not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
            # imapclient sets imaplib's debug level to 5, so imaplib formats every response
            # line (%r of 100k header blocks) for a log nobody reads: about a tenth of a
            # first sweep. Only after login, so credentials stay redacted either way.
            client._imap.debug = 0
        return box

    def _starttls(self, context: ssl.SSLContext | None, where: str, ca_file: str | None) -> None:
        try:
            self.client.starttls(context)
        except imapexc.CapabilityError:
            raise ConnectError(
                f"{where} does not offer STARTTLS; use security = tls (port 993) instead"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise _cert_error(where, exc, ca_file) from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ConnectError(f"STARTTLS with {where} failed: {_reason(exc)}") from None

    def _login(
        self,
        username: str,
        password: str | None,
        token: str | None,
        account: str | None,
        *,
        plain: bool = False,
    ) -> None:
        c = self.client
        what = "token" if token is not None else "password"
        try:
            if token is not None:
                pre = {x.upper() for x in c.capabilities()}
                bearer = b"AUTH=OAUTHBEARER" in pre
                mech = "OAUTHBEARER" if bearer else "XOAUTH2"
                log.debug("signing in to %s with %s", self.host, mech)
                try:
                    c._imap.authenticate(mech, _oauth_responder(username, token, bearer))
                except imaplib.IMAP4.abort:
                    raise
                except imaplib.IMAP4.error as exc:
                    raise imapexc.LoginError(str(exc)) from None
            else:
                assert password is not None
                pre = {x.upper() for x in c.capabilities()}
                ascii_ok = username.isascii() and password.isascii()
                if b"LOGINDISABLED" in pre and b"AUTH=PLAIN" not in pre:
                    # RFC 3501 6.2.3: a client must not send LOGIN then; nothing else we have
                    # carries a password, so nothing is sent.
                    what_to_do = (
                        "use security = starttls or tls"
                        if plain
                        else "it wants another sign-in method (OAuth2?)"
                    )
                    raise AuthenticationError(
                        f"{self.host}:{self.port} refuses LOGIN (LOGINDISABLED) and offers no "
                        f"AUTH=PLAIN, so no password was sent; {what_to_do}"
                    )
                if (b"LOGINDISABLED" in pre or not ascii_ok) and b"AUTH=PLAIN" in pre:
                    c.plain_login(username, password)
                else:
                    c.login(username, password)
        except imapexc.LoginError as exc:
            detail = _scrub(_unrepr(_text(exc.args[0] if exc.args else "")), password, token)
            busy = _busy_at_login(exc, detail)
            if busy is not None:
                # Not a refusal of the password: the server is full or went away (imapclient
                # calls a connection closed during LOGIN a LoginError too).
                raise BusyError(
                    f"{self.host}:{self.port} {busy} at login ({detail.strip() or 'no answer'}); "
                    "not a password problem: the next run tries again"
                ) from None
            raise AuthenticationError(
                f"login to {self.host} as {username} refused ({detail.strip()}): check the "
                f"{what} (or run `ndr-sweeper login {account or 'ACCOUNT'}`)"
            ) from None
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise ConnectError(
                f"connection to {self.host}:{self.port} lost during login: {_reason(exc)}"
            ) from None
        except imaplib.IMAP4.error as exc:
            detail = _scrub(_unrepr(str(exc)), password, token)
            busy = _busy_at_login(exc, detail)
            if busy is not None:
                raise BusyError(
                    f"{self.host}:{self.port} {busy} at login ({detail.strip()}); not a "
                    "password problem: the next run tries again"
                ) from None
            raise AuthenticationError(
                f"login to {self.host} as {username} failed ({detail}): check the {what} "
                f"(or run `ndr-sweeper login {account or 'ACCOUNT'}`)"
            ) from None

    def _read_capabilities(self) -> None:
        with self._op("CAPABILITY"):
            typ, data = self.client._imap.capability()
        if typ != "OK" or not data or data[-1] is None:
            raise MailboxError(f"CAPABILITY refused by {self.host}: {_text(data)}")
        raw = tuple(data[-1].upper().split())
        self.client._cached_capabilities = raw  # imapclient's own checks agree with ours
        self.capabilities = frozenset(c.decode("ascii", "replace") for c in raw)

    # ---------------------------------------------------------------- errors
    @contextlib.contextmanager
    def _op(
        self, operation: str, folder: str | None = None, *, may_be_missing: bool = True
    ) -> Iterator[None]:
        """Map imapclient/imaplib/socket errors of one operation onto our error tree."""
        where = f" on folder {folder!r}" if folder else ""
        try:
            yield
        except guard.LimitExceeded as exc:
            raise _limit_error(exc) from None
        except imapexc.CapabilityError as exc:
            raise CapabilityError(f"{operation}{where}: {exc}") from None
        except TimeoutError:
            # The server went quiet (busy, or waiting on a lock of its own): say so, and how
            # long we waited, rather than calling it a lost connection.
            raise ConnectError(
                f"{self.host}:{self.port} did not answer {operation}{where}{self._waited()}; "
                "try again later (or raise `timeout` in the config)"
            ) from None
        except (imaplib.IMAP4.abort, OSError) as exc:
            raise ConnectError(
                f"connection to {self.host}:{self.port} lost during {operation}{where}: "
                f"{_reason(exc)}; check the network and try again"
            ) from None
        except ValueError as exc:
            if "integer string conversion" not in str(exc):
                raise
            # A number of thousands of digits (a literal's size, a UID, a count): Python's int()
            # refuses it, and the answer cannot be read on from there.
            raise ConnectError(
                f"{self.host}:{self.port} sent a number of more than {sys.get_int_max_str_digits()} "
                f"digits during {operation}{where}; giving up on this account"
            ) from None
        except imaplib.IMAP4.error as exc:
            text = _unrepr(str(exc))
            if folder is not None and may_be_missing and self._missing(folder, text):
                raise MailboxError(missing_folder_message(folder)) from None
            if _codes(text) & _QUOTA_CODES:
                raise MailboxError(
                    f"{operation}{where} refused: the mailbox is over its quota ({text}); "
                    "make room (empty Trash or Junk) and sweep again"
                ) from None
            raise MailboxError(f"{operation}{where} refused by the server: {text}") from None

    def _waited(self) -> str:
        """' within N s': the command timeout of the connection, when it has one."""
        seconds = self.timeout
        if seconds is None:
            sock = getattr(getattr(self.client, "_imap", None), "sock", None)
            try:
                seconds = sock.gettimeout() if sock is not None else None
            except OSError:
                seconds = None
        return f" within {seconds:g} s" if seconds else ""

    def _missing(self, folder: str, error_text: str) -> bool:
        """Did a command fail because *folder* does not exist?  The response code says so
        when the server sends one (Dovecot 2.3 does not for SELECT/STATUS): else ask LIST."""
        if _codes(error_text) & _MISSING_CODES:
            return True
        try:
            return not self.folder_exists(folder)
        except Exception:
            return False

    def _sel(self, operation: str, write: bool = False) -> str:
        if self.selected is None:
            raise MailboxError(f"{operation}: no folder is selected; call select() first")
        if write and self.readonly:
            # Dovecot answers OK to a STORE after EXAMINE and changes nothing: refuse here
            raise MailboxError(
                f"{operation}: folder {self.selected!r} is selected read-only (EXAMINE)"
            )
        return self.selected

    # ---------------------------------------------------------------- protocol
    def has(self, cap: str) -> bool:
        return cap.upper() in self.capabilities

    def list_folders(self) -> list[FolderInfo]:
        with self._op("LIST"):
            rows = self.client.list_folders()
        entries = []
        for flags, delim, name in rows:
            raw = name if isinstance(name, bytes) else str(name).encode("ascii", "replace")
            entries.append(
                (frozenset(_text(f) for f in flags), _text(delim) if delim else None, raw)
            )
        named = _names([raw for _f, _d, raw in entries])
        self._wire = {}
        out = []
        for (flags, delim, raw), (name, why) in zip(entries, named, strict=True):
            if why is None:
                self._wire[name] = raw
            out.append(FolderInfo(name=name, flags=flags, delimiter=delim, unusable=why))
        return out

    def _wire_name(self, folder: str, *, list_first: bool = True) -> bytes:
        """*folder* as the server's LIST gave it (LISTing first if it has not been, unless
        *list_first* is false); a name it did not list, encoded canonically."""
        if self._wire is None and list_first:
            self.list_folders()
        raw = (self._wire or {}).get(folder)
        return raw if raw is not None else mutf7.encode(folder)

    def personal_prefix(self) -> str:
        if self._prefix is None:
            self._prefix = ""
            if self.has("NAMESPACE"):
                with self._op("NAMESPACE"):
                    ns = self.client.namespace()
                if ns.personal:
                    prefix = ns.personal[0][0]
                    if isinstance(prefix, bytes):
                        prefix = _names([prefix])[0][0]  # only used to match names: as text
                    self._prefix = str(prefix)
        return self._prefix

    def status(self, folder: str) -> FolderStatus:
        items = ["UIDVALIDITY", "UIDNEXT", "MESSAGES"]
        if self.has("CONDSTORE"):
            items.append("HIGHESTMODSEQ")
        # A sweep with nothing new costs one STATUS: a plain name needs no LIST first.
        wire = self._wire_name(folder, list_first=not _plain(folder))
        with self._op("STATUS", folder):
            st = self.client.folder_status(wire, items)
        status = FolderStatus(
            uidvalidity=int(st[b"UIDVALIDITY"]),
            uidnext=int(st[b"UIDNEXT"]),
            messages=int(st[b"MESSAGES"]),
            highestmodseq=int(st[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in st else None,
        )
        self._status_uidnext[folder] = status.uidnext
        return status

    def select(self, folder: str, readonly: bool = False) -> FolderStatus:
        self.selected = None
        wire = self._wire_name(folder)
        with self._op("EXAMINE" if readonly else "SELECT", folder):
            resp = self.client.select_folder(wire, readonly=readonly)
        self.selected, self.readonly = folder, readonly
        exists = int(resp.get(b"EXISTS", 0))
        uidnext = resp.get(b"UIDNEXT")
        if uidnext is None:  # not sent by every server: what STATUS said, else derive it
            uidnext = self._status_uidnext.get(folder)
        if uidnext is None:
            uids = self.search_uids()
            uidnext = (uids[-1] + 1) if uids else 1
        modseq = resp.get(b"HIGHESTMODSEQ")
        permanent = resp.get(b"PERMANENTFLAGS")
        return FolderStatus(
            uidvalidity=int(resp.get(b"UIDVALIDITY", 0)),
            uidnext=int(uidnext),
            messages=exists,
            highestmodseq=int(modseq) if modseq is not None else None,
            permanent_flags=(
                frozenset(_text(f) for f in permanent)
                if permanent is not None and not readonly
                else None
            ),
        )

    def search_uids(self, min_uid: int = 1, below: int | None = None) -> list[int]:
        folder = self._sel("SEARCH")
        min_uid = max(min_uid, 1)
        if below is not None and below <= min_uid:
            return []
        if below is not None:
            criteria = ["UID", f"{min_uid}:{below - 1}"]
        else:
            criteria = ["ALL"] if min_uid <= 1 else ["UID", f"{min_uid}:*"]
        with self._op("SEARCH", folder):
            uids = self.client.search(criteria)
        # "UID N:*" also matches the last message when its UID is below N (RFC 3501 6.4.8)
        found = sorted(u for u in uids if u >= min_uid)
        if below is None or not found or found[-1] < below:
            return found
        beyond = [u for u in found if u >= below]
        log.warning(
            "%s named %d UID(s) in %r at or beyond its UIDNEXT %d, which cannot exist "
            "(e.g. %d): ignored",
            self.host,
            len(beyond),
            folder,
            below,
            beyond[-1],
        )
        return [u for u in found if u < below]

    def search_uid_set(self, uids: Sequence[int]) -> list[int]:
        folder = self._sel("SEARCH")
        found: set[int] = set()
        for b in uidset.batches(uids, max_count=self.store_batch, max_bytes=self.max_set_bytes):
            with self._op("SEARCH", folder):
                answer = self.client.search(["UID", b.set])
            wanted = set(b.uids)
            found.update(u for u in answer if u in wanted)  # never a UID we did not ask about
        return sorted(found)

    def search_header(self, field: str, value: str) -> list[int]:
        folder = self._sel("SEARCH")
        charset = None if (field + value).isascii() else "UTF-8"
        with self._op("SEARCH HEADER", folder):
            uids = self.client.search(["HEADER", field, value], charset=charset)
        return sorted(uids)

    def search_flag(self, flag: str) -> list[int]:
        folder = self._sel("SEARCH")
        key = SYSTEM_FLAG_SEARCH.get(flag.lower())
        criteria = [key] if key else ["KEYWORD", flag]
        with self._op("SEARCH", folder):
            uids = self.client.search(criteria)
        return sorted(uids)

    def _uid_fetch(
        self,
        folder: str,
        set_: str,
        items: str,
        bodies: tuple[int | None, int] | None = None,
        heads: bool = False,
    ) -> Iterator[tuple[int, Any]]:
        """One UID FETCH, its answers yielded as they arrive, ``(uid, {item: value})``, so the
        caller's work on one overlaps the server's on the next.  *bodies*: (largest literal
        asked for or None, how many): the answer's limits (``guard``); without it, the limits
        for headers.  *heads*: an answer of the usual header shape comes as a ``_Head``, not
        as a dict (fetch_headers reads it straight from the match).  No other command may be
        sent on this connection until it is exhausted (closing it early reads the rest of the
        answer, within the same limits)."""
        imap = self.client._imap
        with self._op("FETCH", folder):
            expect = getattr(imap, "expect_literals", None)
            if bodies is not None and expect is not None:
                expect(*bodies)
            reader = _FetchReader(imap, imap._command("UID", "FETCH", set_, items), heads)
            try:
                yield from reader.answers()
            finally:
                reader.finish()

    def fetch_headers(
        self, uids: Sequence[int], fields: Sequence[str] | None = None, batch: int = 2000
    ) -> Iterator[HeaderItem]:
        folder = self._sel("FETCH")
        if fields:
            section = "HEADER.FIELDS (" + " ".join(f.upper() for f in fields) + ")"
        else:
            section = "HEADER"
            batch = min(batch, HEADER_BATCH)
        # MODSEQ when the server has CONDSTORE (asking for it enables it, RFC 7162 3.1): it
        # tells a message changed since it was read.
        modseq = " MODSEQ" if self.has("CONDSTORE") else ""
        items = f"(UID FLAGS INTERNALDATE RFC822.SIZE{modseq} BODY.PEEK[{section}])"
        flagsets = self._flagsets
        for b in uidset.batches(uids, max_count=batch, max_bytes=self.max_set_bytes):
            wanted = set(b.uids)
            for uid, item in self._uid_fetch(folder, b.set, items, heads=True):
                if uid not in wanted:
                    continue  # not ours (or a second answer for one: the first is kept)
                if type(item) is _Head:  # the usual shape: read straight from the match
                    m, header = item
                    if not m.group(7).upper().startswith(b"BODY[HEADER"):
                        continue
                    wanted.discard(uid)
                    raw_flags = m.group(3)
                    flags = flagsets.get(raw_flags)
                    if flags is None:
                        if len(flagsets) > 256:
                            flagsets.clear()
                        flags = flagsets[raw_flags] = _flags(raw_flags.split())
                    yield HeaderItem(
                        uid,
                        header,
                        fastfetch.date_or_none(m.group(4)),
                        flags,
                        int(m.group(5)),
                        None if m.group(6) is None else int(m.group(6)),
                    )
                    continue
                header = _body(item, b"BODY[HEADER")
                if header is None or b"INTERNALDATE" not in item:
                    continue  # an unsolicited FETCH (flag update) without our data
                wanted.discard(uid)
                date = item[b"INTERNALDATE"]  # None (or text) when the server sent garbage
                yield HeaderItem(
                    uid=uid,
                    header=header,
                    internaldate=_aware(date) if isinstance(date, datetime) else None,
                    flags=_flags(item.get(b"FLAGS", ())),
                    size=int(item.get(b"RFC822.SIZE", 0)),
                    modseq=_modseq(item.get(b"MODSEQ")),
                )

    def fetch_messages(
        self, uids: Sequence[int], max_bytes: int | None = None, batch: int = 200
    ) -> Iterator[tuple[int, bytes]]:
        folder = self._sel("FETCH")
        part = "BODY.PEEK[]" if max_bytes is None else f"BODY.PEEK[]<0.{int(max_bytes)}>"
        if max_bytes is not None:
            batch = max(1, min(batch, BODY_BATCH_BYTES // max(int(max_bytes), 1)))
        for b in uidset.batches(uids, max_count=batch, max_bytes=self.max_set_bytes):
            size = None if max_bytes is None else int(max_bytes)
            wanted = set(b.uids)
            for uid, item in self._uid_fetch(folder, b.set, f"(UID {part})", (size, len(b.uids))):
                body = _body(item, b"BODY[]") if uid in wanted else None
                if body is not None:
                    wanted.discard(uid)
                    yield uid, body

    def _copy_or_move(self, command: str, uids: Sequence[int], dest: str) -> dict[int, int]:
        folder = self._sel(command, write=command == "MOVE")
        wire = self._wire_name(dest)
        untagged = self.client._imap.untagged_responses
        mapping: dict[int, int] = {}
        for b in uidset.batches(uids, max_count=self.store_batch, max_bytes=self.max_set_bytes):
            untagged.pop("COPYUID", None)
            log.debug("UID %s %s -> %r (%d UIDs)", command, folder, dest, len(b.uids))
            with self._op(f"{command} to {dest!r}", folder):
                try:
                    if command == "MOVE":
                        self.client.move(b.set, wire)
                    else:
                        self.client.copy(b.set, wire)
                except imaplib.IMAP4.error as exc:
                    if self._missing(dest, str(exc)):
                        raise MailboxError(missing_folder_message(dest)) from None
                    raise
            # COPYUID comes in the tagged OK (COPY) or an untagged OK (MOVE); imaplib files
            # both under untagged_responses.  EXPUNGEs of a MOVE are dropped (memory).
            mapping.update(_parse_copyuid(untagged.pop("COPYUID", []), b.uids))
            for key in ("EXPUNGE", "VANISHED", "EXISTS", "RECENT"):
                untagged.pop(key, None)
        return mapping

    def move(self, uids: Sequence[int], dest: str) -> dict[int, int]:
        if not self.has("MOVE"):
            raise CapabilityError(
                f"{self.host} does not support MOVE; use copy + \\Deleted + expunge_uids"
            )
        return self._copy_or_move("MOVE", uids, dest)

    def copy(self, uids: Sequence[int], dest: str) -> dict[int, int]:
        return self._copy_or_move("COPY", uids, dest)

    def _store(
        self,
        uids: Sequence[int],
        flags: Sequence[str],
        add: bool,
        unchanged_since: int | None = None,
    ) -> None:
        folder = self._sel("STORE", write=True)
        if not flags:
            return
        conditional = unchanged_since is not None and self.has("CONDSTORE")
        for b in uidset.batches(uids, max_count=self.store_batch, max_bytes=self.max_set_bytes):
            with self._op("STORE", folder):
                if conditional:
                    # UID STORE set (UNCHANGEDSINCE n) +FLAGS.SILENT (...): a message changed
                    # since we looked is left alone; the server names it in [MODIFIED ...].
                    what = ("+" if add else "-") + "FLAGS.SILENT"
                    typ, data = self.client._imap.uid(
                        "STORE",
                        b.set,
                        f"(UNCHANGEDSINCE {int(unchanged_since or 0)})",
                        what,
                        "(" + " ".join(flags) + ")",
                    )
                    if typ != "OK":
                        raise imaplib.IMAP4.error(f"STORE failed: {_text(data)}")
                    self.client._imap.untagged_responses.pop("FETCH", None)
                elif add:
                    self.client.add_flags(b.set, list(flags), silent=True)
                else:
                    self.client.remove_flags(b.set, list(flags), silent=True)

    def add_flags(
        self, uids: Sequence[int], flags: Sequence[str], *, unchanged_since: int | None = None
    ) -> None:
        self._store(uids, flags, add=True, unchanged_since=unchanged_since)

    def remove_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        self._store(uids, flags, add=False)

    def expunge_uids(self, uids: Sequence[int]) -> None:
        if not self.has("UIDPLUS"):
            raise CapabilityError(
                f"{self.host} does not support UIDPLUS, so messages cannot be expunged by UID "
                "without also expunging other \\Deleted messages"
            )
        folder = self._sel("UID EXPUNGE", write=True)
        untagged = self.client._imap.untagged_responses
        for b in uidset.batches(uids, max_count=self.store_batch, max_bytes=self.max_set_bytes):
            with self._op("UID EXPUNGE", folder):
                self.client.uid_expunge(b.set)
            for key in ("EXPUNGE", "VANISHED", "EXISTS", "RECENT"):
                untagged.pop(key, None)

    def expunge_flagged_deleted(self) -> None:
        """Plain EXPUNGE of the selected folder: removes EVERY message flagged \\Deleted.

        Only `actions.apply.remove_from_selected` calls this, on servers without UIDPLUS,
        after it has lifted the \\Deleted flag of every message that is not ours.
        """
        folder = self._sel("EXPUNGE", write=True)
        with self._op("EXPUNGE", folder):
            self.client.expunge()
        untagged = self.client._imap.untagged_responses
        for key in ("EXPUNGE", "VANISHED", "EXISTS", "RECENT"):
            untagged.pop(key, None)

    def create_folder(self, name: str) -> None:
        # A refused CREATE is about a folder that does not exist yet: never report it as
        # "folder does not exist".
        wire = self._wire_name(name, list_first=False)
        with self._op("CREATE", name, may_be_missing=False):
            self.client.create_folder(wire)
        self._wire = None  # LIST again before the next name is sent

    def folder_exists(self, name: str) -> bool:
        wire = self._wire_name(name, list_first=False)
        with self._op("LIST", name):
            rows = self.client.list_folders("", wire)
        for flags, _delim, found in rows:
            raw = found if isinstance(found, bytes) else str(found).encode("ascii", "replace")
            same = raw == wire or (raw.upper() == b"INBOX" and wire.upper() == b"INBOX")
            if same and b"\\NonExistent" not in flags:
                return True
        return False

    def append(
        self,
        folder: str,
        msg: bytes,
        flags: Sequence[str] = (),
        internaldate: datetime | None = None,
    ) -> int | None:
        wire = self._wire_name(folder)
        with self._op("APPEND to", folder):
            resp = self.client.append(wire, msg, list(flags), internaldate)
        m = re.search(rb"\[APPENDUID \d+ (\d+)\]", resp if isinstance(resp, bytes) else b"")
        return int(m.group(1)) if m else None

    def logout(self) -> None:
        """LOGOUT; never raises (the connection may already be gone)."""
        try:
            self.client.logout()
        except Exception as exc:  # already closed or broken: just drop the socket
            log.debug("logout from %s failed: %s", self.host, exc)
            with contextlib.suppress(Exception):
                self.client.shutdown()
        self.selected = None


def connect(
    host: str,
    port: int | None = None,
    security: Security = "tls",
    username: str = "",
    password: str | None = None,
    **kwargs: Any,
) -> ImapMailbox:
    """Module-level shorthand for ``ImapMailbox.connect``."""
    return ImapMailbox.connect(host, port, security, username, password, **kwargs)


# -------------------------------------------------------------------- FETCH answers
# One answer of a header FETCH as Dovecot (and most servers) send it: the items in the order
# asked, the header fields as one literal, ")" on the next line.  Anything else goes through
# fastfetch's general parser, then imapclient's.
_HEAD_LINE = re.compile(
    rb'\* (\d+) FETCH \(UID (\d+) FLAGS \(([^()"{}\r\n]*)\) INTERNALDATE "([^"\r\n]*)" '
    rb"RFC822\.SIZE (\d+) (?:MODSEQ \((\d+)\) )?(BODY\[[^\]\r\n]*\]) \{(\d+)\}\r\n"
)
_FETCH_LINE = re.compile(rb"\* (\d+) FETCH (.*)", re.DOTALL)
_LITERAL_AT_END = re.compile(rb".*\{(\d+)\}$", re.DOTALL)


class _Head(NamedTuple):
    """An answer of _HEAD_LINE's shape, as it came (see _FetchReader's ``heads``)."""

    match: re.Match[bytes]
    body: bytes


class _FetchReader:
    """Reads the answer to one UID FETCH off imaplib's connection (its ``readline`` and
    ``read``: under ``guard``, every byte is counted against the command and its deadline),
    line by line as imaplib would, without imaplib's per-line bookkeeping: the untagged FETCH
    answers are parsed and handed out one by one; other untagged answers are skipped (a BYE
    ends the session), and the tagged answer ends the command (NO or BAD: IMAP4.error)."""

    def __init__(self, imap: Any, tag: bytes, heads: bool = False) -> None:
        self.imap = imap
        self.tag = tag
        self.done = False
        self.heads = heads
        self._flags: dict[bytes, tuple[bytes, ...]] = {}

    def _line(self) -> bytes:
        line = self.imap.readline()
        if not line:
            raise self.imap.abort("socket error: EOF")
        if not line.endswith(b"\r\n"):
            raise self.imap.abort(f"socket error: unterminated line: {line[:200]!r}")
        return bytes(line)

    def _literal(self, size: int) -> bytes:
        data = self.imap.read(size)
        if len(data) != size:
            raise self.imap.abort("socket error: EOF in a literal")
        return bytes(data)

    def answers(self) -> Iterator[tuple[int, dict[bytes, Any]]]:
        while not self.done:
            line = self._line()
            m = _HEAD_LINE.fullmatch(line)
            if m is not None:
                body = self._literal(int(m.group(8)))
                tail = self._line()
                if tail == b")\r\n":
                    yield int(m.group(2)), _Head(m, body) if self.heads else self._item(m, body)
                    continue
                elements: list[Any] = [(line[2:-2].replace(b"FETCH ", b"", 1), body)]
                yield from self._general(elements, tail)
                continue
            m = _FETCH_LINE.match(line)
            if m is not None:
                yield from self._general([], line[2:-2].replace(b"FETCH ", b"", 1) + b"\r\n")
            else:
                self._other(line)

    def _item(self, m: re.Match[bytes], body: bytes) -> dict[bytes, Any]:
        raw_flags = m.group(3)
        flags = self._flags.get(raw_flags)
        if flags is None:
            if len(self._flags) > 256:
                self._flags.clear()
            flags = self._flags[raw_flags] = tuple(raw_flags.split())
        item: dict[bytes, Any] = {
            b"UID": int(m.group(2)),
            b"FLAGS": flags,
            b"INTERNALDATE": fastfetch.date_or_none(m.group(4)),
            b"RFC822.SIZE": int(m.group(5)),
            m.group(7).upper(): body,
        }
        if m.group(6) is not None:
            item[b"MODSEQ"] = int(m.group(6))
        return item

    def _general(self, elements: list[Any], text: bytes) -> Iterator[tuple[int, dict[bytes, Any]]]:
        """One untagged FETCH answer of any shape: its literals read as imaplib reads them,
        then parsed as a whole."""
        dat = text[:-2]
        while (lit := _LITERAL_AT_END.match(dat)) is not None:
            elements.append((dat, self._literal(int(lit.group(1)))))
            dat = self._line()[:-2]
        elements.append(dat)
        try:
            parsed = fastfetch.parse_fetch(elements)
        except fastfetch.Unparsed as exc:  # a shape the fast path does not know
            log.debug("FETCH answer left to imapclient's parser: %s", exc)
            try:
                parsed = parse_fetch_response(elements, normalise_times=False, uid_is_key=True)
            except (AttributeError, TypeError, ValueError) as exc:  # imapclient's own surprise
                raise imaplib.IMAP4.error(f"FETCH answer not understood: {exc}") from None
        yield from parsed.items()

    def _other(self, line: bytes) -> None:
        if line.startswith(self.tag + b" "):
            self.done = True
            status, _, text = line[len(self.tag) + 1 : -2].partition(b" ")
            if status.upper() != b"OK":
                raise imaplib.IMAP4.error(
                    f"FETCH failed: {status.decode('ascii', 'replace')} "
                    f"{text.decode('utf-8', 'replace')}"
                )
            return
        if not line.startswith(b"* "):
            raise self.imap.abort(f"unexpected response: {line[:200]!r}")
        if line[2:6].upper() == b"BYE " or line[2:-2].upper() == b"BYE":
            raise self.imap.abort(f"server said BYE: {line[2:200].decode('utf-8', 'replace')}")
        dat = line[:-2]
        while (lit := _LITERAL_AT_END.match(dat)) is not None:  # skipped, literals and all
            self._literal(int(lit.group(1)))
            dat = self._line()[:-2]

    def finish(self) -> None:
        """The command is over: its tag forgotten; an answer left unread (the caller stopped
        early) is read to its end first, within the limits, or the connection is closed."""
        try:
            if not self.done:
                try:
                    for _ in self.answers():
                        pass
                except Exception:
                    log.debug("FETCH answer left unread; closing the connection", exc_info=True)
                    with contextlib.suppress(Exception):
                        self.imap.shutdown()
        finally:
            self.imap.tagged_commands.pop(self.tag, None)


# -------------------------------------------------------------------- helpers
def _body(item: dict[bytes, Any], prefix: bytes) -> bytes | None:
    for key, value in item.items():
        if isinstance(key, bytes) and key.startswith(prefix):
            return value if isinstance(value, bytes) else b""
    return None


def _plain(name: str) -> bool:
    """Printable ASCII without "&": a name whose canonical form is itself."""
    return all(" " <= ch <= "~" for ch in name) and "&" not in name


def _names(raws: Sequence[bytes]) -> list[tuple[str, str | None]]:
    """(name, why it is unusable or None) for each folder name LIST gave.

    A name decodes from modified UTF-7, or from UTF-8 when it has 8-bit bytes (RFC 3501 has no
    room for them, but some servers send UTF-8).  One that does not, holds a raw control byte
    (CR or LF would end a command line) or is over MAX_NAME_BYTES is unusable: its text is only
    for messages.  Two entries that decode to the same name (one of them in a non-canonical form):
    the canonical one keeps it, the other goes by its bytes as text."""
    decoded: list[tuple[str, str | None]] = []
    for raw in raws:
        text = raw.decode("utf-8", "backslashreplace")
        try:
            if len(raw) > MAX_NAME_BYTES:
                raise ValueError(f"it is longer than {MAX_NAME_BYTES} bytes")
            name = _decode_name(raw)
        except ValueError as exc:
            decoded.append((text, str(exc)))
            continue
        decoded.append((name, None))
    forms: dict[str, set[bytes]] = {}
    for raw, (name, why) in zip(raws, decoded, strict=True):
        if why is None:
            forms.setdefault(name, set()).add(raw)
    out: list[tuple[str, str | None]] = []
    taken: set[str] = set()
    for raw, (name, why) in zip(raws, decoded, strict=True):
        if why is None and len(forms[name]) > 1 and raw != mutf7.encode(name):
            alias = raw.decode("utf-8", "backslashreplace")
            if alias in forms or alias in taken or not raw.isascii():
                why = f"another folder's name is {name!r} too"
            else:
                name = alias
        if why is None:
            taken.add(name)
        out.append((name, why))
    return out


def _decode_name(raw: bytes) -> str:
    if any(b < 0x20 or b == 0x7F for b in raw):
        raise ValueError("it holds a control character")
    if raw.isascii():
        try:
            name = mutf7.decode(raw)
        except ValueError:
            raise ValueError("it is not valid modified UTF-7 (RFC 3501 5.1.3)") from None
    else:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("it is neither modified UTF-7 nor UTF-8") from None
    if any(ch < " " or ch == "\x7f" for ch in name):  # a line break or ESC, encoded
        raise ValueError("it holds a control character")
    # C1 controls and bidi marks go back as the bytes LIST gave and are escaped wherever a
    # name is shown: such a folder stays usable (Dovecot allows them, and people use them).
    return name


def _modseq(value: object) -> int | None:
    """A FETCH MODSEQ as an int (fastfetch gives an int, imapclient's parser a tuple)."""
    if isinstance(value, tuple | list):
        value = value[0] if value else None
    try:
        return int(value) if value is not None else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _aware(date: datetime) -> datetime:
    """imapclient's FixedOffset -> datetime.timezone (naive is taken as UTC)."""
    if isinstance(date.tzinfo, timezone):
        return date  # fastfetch's already
    offset = date.utcoffset()
    return date.replace(tzinfo=UTC if offset is None else timezone(offset))


def _flags(raw: Sequence[bytes | str]) -> frozenset[str]:
    return frozenset(f for f in (_text(x) for x in raw) if f.lower() != "\\recent")


def _limit_error(exc: guard.LimitExceeded) -> ServerLimitError:
    if exc.slow:
        return ServerLimitError(str(exc))  # says what to do already
    return ServerLimitError(f"{exc}; giving up on this account")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _cert_error(where: str, exc: ssl.SSLCertVerificationError, ca_file: str | None) -> ConnectError:
    reason = exc.verify_message or exc.reason or str(exc)
    hint = (
        f"is tls_ca_file ({ca_file}) the CA that signed it?"
        if ca_file
        else "set tls_ca_file to the CA that signed it"
    )
    return ConnectError(f"TLS certificate of {where} is not trusted ({reason}); {hint}")


def _oauth_responder(username: str, token: str, bearer: bool) -> Callable[[bytes], str]:
    """The client side of OAUTHBEARER (RFC 7628) or XOAUTH2 for ``imaplib.authenticate``.

    The token goes out once.  A failed login gets a challenge carrying the server's JSON error;
    it is answered with the dummy response the mechanism asks for (RFC 7628 3.2.3: %x01;
    XOAUTH2: an empty line), not with the token again as imapclient's own methods would.
    """
    if bearer:
        gs2 = "n,a=" + username.replace("=", "=3D").replace(",", "=2C") + ","
        first, after = f"{gs2}\x01auth=Bearer {token}\x01\x01", "\x01"
    else:
        first, after = f"user={username}\x01auth=Bearer {token}\x01\x01", ""
    sent = False

    def respond(challenge: bytes) -> str:
        nonlocal sent
        if sent:
            log.debug("OAuth2 login refused: %s", challenge.decode("utf-8", "replace")[:200])
            return after
        sent = True
        return first

    return respond


# RFC 5530 codes a server sends when a login fails for a reason other than the credentials.
_BUSY_CODES = {b"UNAVAILABLE", b"SERVERBUG", b"LIMIT", b"INUSE"}


def _busy_at_login(exc: BaseException, detail: str) -> str | None:
    """Why a failed login is the server's capacity, not the credentials; None when it is a
    refusal of the credentials (an explicit NO, with AUTHENTICATIONFAILED or no code)."""
    cause = exc.__context__ or exc.__cause__
    if isinstance(exc, imaplib.IMAP4.abort) or isinstance(cause, imaplib.IMAP4.abort | OSError):
        return "closed the connection"
    if _codes(detail) & _BUSY_CODES:
        return "is busy or at its limit"
    lowered = detail.lower()
    if "bye" in lowered.split()[:3] or "eof" in lowered or "socket error" in lowered:
        return "closed the connection"
    return None


_BYTES_REPR = re.compile(r"""b(['"])(.*?)\1""")


def _unrepr(text: str) -> str:
    """imapclient words a server's answer as Python bytes (``b'[AUTHENTICATIONFAILED] ...'``):
    the text the server sent, as it sent it."""
    return _BYTES_REPR.sub(lambda m: m.group(2), text).strip()


def _scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
