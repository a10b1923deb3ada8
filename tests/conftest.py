"""Shared pytest fixtures.

Real-server fixtures (see tests/lab.py); every test using them must be marked
``@pytest.mark.imap`` and is skipped, with the reason, when Dovecot is not installed:

- ``dovecot``: session-wide lab server with Dovecot's default capabilities (MOVE, UIDPLUS, ...).
- ``dovecot_nomove``: session-wide server advertising neither MOVE nor UIDPLUS.
- ``dovecot_nomove_uidplus``: session-wide server without MOVE but with UIDPLUS
  (the COPY + \\Deleted + UID EXPUNGE path).
- ``dovecot_nouidplus``: session-wide server with MOVE but without UIDPLUS.
- ``dovecot_factory``: ``dovecot_factory(no_move=..., uidplus=..., max_line=...)`` starts a
  private server for this test only (~30 ms), stopped afterwards.  Use it for kill()/restart()
  fault tests and for failed logins: Dovecot delays the next logins from 127.0.0.1 for a few
  seconds after a failed one (auth penalty), which would slow down the shared servers.
- ``imap_user`` / ``imap_user_nomove``: a fresh user (unique name, empty mailbox with INBOX,
  Drafts, Sent, Junk, Trash) on ``dovecot`` / ``dovecot_nomove``; a ``lab.LabEnv`` with
  host, port, tls_port, user, password, cafile and ``connect()`` (raw imapclient).
- ``new_imap_user``: ``new_imap_user(server)`` for a fresh user on any lab server.
- ``token_server`` / ``dovecot_oauth2``: a loopback OAuth2 provider (``lab.TokenServer``) and a
  private Dovecot that checks XOAUTH2/OAUTHBEARER tokens against it (introspection).

- ``imap_proxy``: ``imap_proxy(server)`` starts a ``imapproxy.ImapProxy`` in front of a lab server
  (or ``LabEnv``) that cuts, refuses, fakes or rewrites chosen commands (tests/imapproxy.py);
  ``proxy.wrap(env)`` is the user reached through it.  Stopped after the test, which fails if a
  hook raised or a proxy thread outlived it.

The scriptable fake server (tests/fakeimap.py; no Dovecot needed, no ``imap`` mark):

- ``fake_imap``: ``fake_imap(capabilities=..., folders=..., ...)`` starts a
  ``fakeimap.FakeImapServer`` on loopback for this test, stopped afterwards.

Helpers for filling and checking mailboxes live in tests/lab.py: ``make_message``,
``LabMessage``, ``append_messages`` and ``read_folder``.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import imapproxy
import lab

_LAB_MISSING = lab.missing_reason()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _LAB_MISSING is None:
        return
    skip = pytest.mark.skip(reason=_LAB_MISSING)
    for item in items:
        if "imap" in item.keywords:
            item.add_marker(skip)


def _start_lab(**options: object) -> lab.DovecotLab:
    if _LAB_MISSING is not None:
        pytest.skip(_LAB_MISSING)
    server = lab.DovecotLab(**options)  # type: ignore[arg-type]
    try:
        server.start()
    except Exception:
        server.cleanup()
        raise
    return server


@pytest.fixture(scope="session")
def dovecot() -> Iterator[lab.DovecotLab]:
    server = _start_lab()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def dovecot_nomove() -> Iterator[lab.DovecotLab]:
    server = _start_lab(no_move=True)
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def dovecot_nomove_uidplus() -> Iterator[lab.DovecotLab]:
    server = _start_lab(no_move=True, uidplus=True)
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def dovecot_nouidplus() -> Iterator[lab.DovecotLab]:
    server = _start_lab(uidplus=False)
    yield server
    server.cleanup()


@pytest.fixture
def dovecot_factory() -> Iterator[Callable[..., lab.DovecotLab]]:
    started: list[lab.DovecotLab] = []

    def factory(**options: object) -> lab.DovecotLab:
        server = _start_lab(**options)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.cleanup()


_user_seq = itertools.count(1)


def _unique_user(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:40].strip("-") or "t"
    return f"{base}-{os.getpid()}-{next(_user_seq)}"


@pytest.fixture
def new_imap_user(request: pytest.FixtureRequest) -> Callable[[lab.DovecotLab], lab.LabEnv]:
    def make(server: lab.DovecotLab) -> lab.LabEnv:
        return server.add_user(_unique_user(request), "pw-" + os.urandom(6).hex())

    return make


@pytest.fixture
def imap_user(dovecot: lab.DovecotLab, new_imap_user) -> lab.LabEnv:
    return new_imap_user(dovecot)


@pytest.fixture
def imap_user_nomove(dovecot_nomove: lab.DovecotLab, new_imap_user) -> lab.LabEnv:
    return new_imap_user(dovecot_nomove)


@pytest.fixture
def imap_proxy() -> Iterator[Callable[..., imapproxy.ImapProxy]]:
    started: list[imapproxy.ImapProxy] = []

    def make(server: object) -> imapproxy.ImapProxy:
        proxy = imapproxy.ImapProxy(server).start()
        started.append(proxy)
        return proxy

    yield make
    errors: list[BaseException] = []
    for proxy in started:
        try:
            proxy.stop()
        except imapproxy.ProxyError as exc:
            errors.append(exc)
        errors.extend(proxy.errors)
    if errors:
        raise errors[0]


# ---------------------------------------------------------------------- mailbox backends
def _imap_mailbox(env: lab.LabEnv):
    from ndr_sweeper.mailbox.imap import ImapMailbox

    return ImapMailbox.connect(env.host, env.port, "plain", env.user, env.password, timeout=10)


_NO_MOVE_CAPS = {"MOVE", "UIDPLUS"}


def _maildir_mailbox(tmp: Path, layout: str):
    """An empty Maildir tree (Dovecot's Maildir++ or mbsync's verbatim layout) opened as a
    mailbox, with its UID map in a state directory of its own."""
    from ndr_sweeper.mailbox.maildir import open_maildir

    from maildirs import Tree

    tree = Tree(tmp / "Mail", layout).make()
    return open_maildir(tree.root, tmp / "state")


@pytest.fixture(
    params=[
        "memory",
        pytest.param("imap", marks=pytest.mark.imap),
        "maildir++",
        "mbsync",
    ]
)
def mailbox(request: pytest.FixtureRequest):
    """A logged-in, empty ``Mailbox`` (INBOX, Drafts, Sent, Junk, Trash; SPECIAL-USE where the
    backend has it): in memory, on the lab Dovecot, and on a local Maildir tree laid out as
    Dovecot (Maildir++) and as mbsync (verbatim): tests using it run against each."""
    from ndr_sweeper.mailbox.memory import MemoryMailbox

    if request.param == "memory":
        box = MemoryMailbox()
    elif request.param == "imap":
        box = _imap_mailbox(request.getfixturevalue("imap_user"))
    else:
        box = _maildir_mailbox(request.getfixturevalue("tmp_path"), request.param)
    yield box
    box.logout()


@pytest.fixture(params=["memory", pytest.param("imap", marks=pytest.mark.imap)])
def mailbox_nomove(request: pytest.FixtureRequest):
    """Like ``mailbox``, but the server advertises neither MOVE nor UIDPLUS."""
    from ndr_sweeper.mailbox.memory import DEFAULT_CAPABILITIES, MemoryMailbox

    if request.param == "memory":
        box = MemoryMailbox(DEFAULT_CAPABILITIES - _NO_MOVE_CAPS)
    else:
        box = _imap_mailbox(request.getfixturevalue("imap_user_nomove"))
    yield box
    box.logout()


@pytest.fixture(params=["memory", pytest.param("imap", marks=pytest.mark.imap)])
def mailbox_nomove_uidplus(request: pytest.FixtureRequest, new_imap_user):
    """Like ``mailbox``, without MOVE but with UIDPLUS (COPY + \\Deleted + UID EXPUNGE)."""
    from ndr_sweeper.mailbox.memory import DEFAULT_CAPABILITIES, MemoryMailbox

    if request.param == "memory":
        box = MemoryMailbox(DEFAULT_CAPABILITIES - {"MOVE"})
    else:
        box = _imap_mailbox(new_imap_user(request.getfixturevalue("dovecot_nomove_uidplus")))
    yield box
    box.logout()


# ---------------------------------------------------------------------- fake server
@pytest.fixture
def fake_imap() -> Iterator[Callable[..., object]]:
    from fakeimap import FakeImapServer

    started: list[FakeImapServer] = []

    def factory(**options: object) -> FakeImapServer:
        server = FakeImapServer(**options).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


# ---------------------------------------------------------------------- OAuth2
@pytest.fixture
def token_server() -> Iterator[lab.TokenServer]:
    """A fresh loopback OAuth2 provider (``lab.TokenServer``) for this test."""
    server = lab.TokenServer().start()
    yield server
    server.stop()


@pytest.fixture
def dovecot_oauth2(token_server: lab.TokenServer) -> Iterator[lab.DovecotLab]:
    """A private Dovecot whose XOAUTH2/OAUTHBEARER logins are checked by ``token_server``
    (user ``token_server.user`` exists).  Private: refused tokens bring auth penalties."""
    server = _start_lab(oauth2_introspection_url=token_server.introspection_url)
    server.add_user(token_server.user, "pw-" + os.urandom(6).hex())
    yield server
    server.cleanup()


@pytest.fixture
def memory():  # type: ignore[no-untyped-def]
    """An in-memory keyring for the test, the previous one restored afterwards."""
    import keyring

    from keyrings import MemoryKeyring

    old = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    yield kr
    keyring.set_keyring(old)
