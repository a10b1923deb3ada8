"""Shared pieces of the fault tests: a mailbox to sweep, a wrapper that breaks the connection at
a chosen command, and the invariant every interrupted-then-resumed sweep must meet.

Every message carries an ``X-Fault-Tag`` header, so messages are told apart even when they have
no Message-ID (a bounce without one is part of every mailbox here).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ndr_sweeper.errors import ConnectError

import bounces

TAG_RE = re.compile(rb"^X-Fault-Tag: (\S+)", re.M | re.I)

# The mailbox methods that talk to the server, and which of them change something.
WRITES = ("move", "copy", "add_flags", "remove_flags", "expunge_uids", "expunge_flagged_deleted")


def tagged(raw: bytes, tag: str) -> bytes:
    """`raw` with an X-Fault-Tag header in front (headers are CRLF)."""
    return f"X-Fault-Tag: {tag}\r\n".encode() + raw


def tag_of(raw: bytes) -> str | None:
    m = TAG_RE.search(raw.split(b"\r\n\r\n", 1)[0])
    return m.group(1).decode() if m else None


@dataclass
class Mail:
    """What goes where, by tag. `inbox` is in delivery order."""

    sent: list[bytes] = field(default_factory=list)
    inbox: list[tuple[bytes, tuple[str, ...]]] = field(default_factory=list)  # (raw, flags)
    backscatter: set[str] = field(default_factory=set)
    keep: set[str] = field(default_factory=set)
    user_deleted: set[str] = field(default_factory=set)


def make_mail(n_backscatter: int = 8, n_keep: int = 4, *, no_id_bounce: bool = True) -> Mail:
    """Backscatter (one without a Message-ID), own bounces, look-alikes, ordinary mail, and a
    message the user flagged \\Deleted and did not expunge."""
    mail = Mail()
    for i in range(n_backscatter):
        raw = bounces.dsn(bounces.new_id("forged"), bounce_id=bounces.new_id("bs"))
        if no_id_bounce and i == n_backscatter // 2:
            raw = re.sub(rb"(?m)^Message-ID: [^\r\n]*\r\n", b"", raw, count=1)
        tag = f"bs{i}"
        mail.inbox.append((tagged(raw, tag), ()))
        mail.backscatter.add(tag)
    for i in range(n_keep):
        sent_id = bounces.new_id()
        mail.sent.append(bounces.original(sent_id))
        kinds = [
            bounces.dsn(sent_id, bounce_id=bounces.new_id("own")),
            bounces.ordinary(),
            bounces.autoreply(sent_id),
            bounces.freetext_ndr_without_original(),
        ]
        raw = kinds[i % len(kinds)]
        tag = f"keep{i}"
        # interleave: keepers sit between backscatter UIDs
        mail.inbox.insert(min(2 * i + 1, len(mail.inbox)), (tagged(raw, tag), ()))
        mail.keep.add(tag)
    raw = tagged(bounces.original(bounces.new_id("userdel")), "userdel")
    mail.inbox.append((raw, ("\\Deleted",)))
    mail.keep.add("userdel")
    mail.user_deleted.add("userdel")
    return mail


class ConnectionCut(Exception):
    """Raised inside the wrapper; turned into ConnectError like a real lost connection."""


class FaultyMailbox:
    """Delegates to a real mailbox; breaks the connection at the `nth` call of `op`.

    when="before": the command never reaches the server.
    when="after": the server carried it out, the answer is lost (the worst case for a journal).
    `on_fault` runs at that moment (e.g. kill the Dovecot server); the call then raises
    ConnectError, and so does every later call, as with a dead socket.
    """

    def __init__(
        self,
        inner: Any,
        op: str,
        when: str = "after",
        nth: int = 1,
        on_fault: Callable[[], None] | None = None,
    ) -> None:
        self._inner = inner
        self._op, self._when, self._nth = op, when, nth
        self._on_fault = on_fault
        self.count = 0
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target) or name.startswith("_"):
            return target
        if self.fired and name not in ("logout", "close", "has"):
            raise ConnectError(f"connection lost (fault injected before {name})")
        if name != self._op:
            return target
        if name in ("fetch_headers", "fetch_messages"):
            return self._fetch(target)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            if self.count != self._nth:
                return target(*args, **kwargs)
            if self._when == "before":
                self._fire()
            result = target(*args, **kwargs)
            self._fire()
            return result

        return call

    def _fetch(self, target: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        """Fetches break after `nth` items have been received (in the middle of the stream)."""

        def gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for item in target(*args, **kwargs):
                self.count += 1
                if self.count > self._nth:
                    self._fire()
                yield item

        return gen

    def _fire(self) -> None:
        self.fired = True
        if self._on_fault is not None:
            self._on_fault()
        raise ConnectError(f"connection lost during {self._op} (fault injected)")


def assert_invariant(
    junk: Sequence[bytes],
    inbox: Sequence[tuple[bytes, frozenset[str] | set[str]]],
    mail: Mail,
    journal: Sequence[Any] = (),
) -> None:
    """Every backscatter message in Junk exactly once; nothing else moved; nothing lost; the
    user's \\Deleted flag kept; no journal entry left half done."""
    junk_tags = Counter(tag_of(m) for m in junk)
    dup = {t: n for t, n in junk_tags.items() if n > 1}
    assert not dup, f"duplicated in Junk: {dup}"
    assert set(junk_tags) == mail.backscatter, (
        f"Junk should hold exactly the backscatter: missing {mail.backscatter - set(junk_tags)}, "
        f"wrong {set(junk_tags) - mail.backscatter}"
    )
    # Without MOVE and UIDPLUS the default leaves a moved original in place flagged \Deleted and
    # $NdrBackscatter (never expunging): the user's client removes it; it counts as moved.
    inbox = [
        (m, f)
        for m, f in inbox
        if not {"\\deleted", "$ndrbackscatter"} <= {x.lower() for x in f}
        or tag_of(m) in mail.user_deleted
    ]
    inbox_tags = Counter(tag_of(m) for m, _ in inbox)
    assert set(inbox_tags) == mail.keep and all(n == 1 for n in inbox_tags.values()), (
        f"INBOX should keep exactly the rest once: {dict(inbox_tags)}"
    )
    for raw, flags in inbox:
        tag = tag_of(raw)
        lowered = {f.lower() for f in flags}
        if tag in mail.user_deleted:
            assert "\\deleted" in lowered, f"the user's \\Deleted flag on {tag} was lost"
        else:
            assert "\\deleted" not in lowered, f"{tag} kept but flagged \\Deleted"
            assert "$ndrbackscatter" not in lowered, f"{tag} kept but flagged $NdrBackscatter"
    pending = [r for r in journal if r.state in ("planned", "copied")]
    assert not pending, f"journal entries left half done: {pending}"
