"""ImapMailbox against the lab Dovecot only: TLS, STARTTLS, login and connection errors,
long UID sets, a server that dies mid-session."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from ndr_sweeper.errors import (
    AuthenticationError,
    ConnectError,
    CredentialError,
    MailboxError,
)
from ndr_sweeper.mailbox.imap import ImapMailbox, connect

from lab import append_messages, make_message, read_folder

pytestmark = pytest.mark.imap


def test_implicit_tls_with_lab_ca(imap_user):
    e = imap_user
    with ImapMailbox.connect(e.host, e.tls_port, "tls", e.user, e.password, ca_file=e.cafile) as m:
        assert m.has("MOVE") and m.has("SPECIAL-USE")
        assert "STARTTLS" not in m.capabilities  # the post-login list, not the greeting
        assert m.status("INBOX").messages == 0


def test_starttls_with_lab_ca(imap_user):
    e = imap_user
    with connect(e.host, e.port, "starttls", e.user, e.password, ca_file=e.cafile) as m:
        assert m.has("UIDPLUS")
        assert m.status("INBOX").messages == 0


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_untrusted_certificate(imap_user, security):
    e = imap_user
    port = e.tls_port if security == "tls" else e.port
    with pytest.raises(ConnectError, match=r"not trusted.*tls_ca_file"):
        ImapMailbox.connect(e.host, port, security, e.user, e.password, timeout=5)


def test_tls_on_plain_port(imap_user):
    e = imap_user
    with pytest.raises(ConnectError, match="check port and security"):
        ImapMailbox.connect(e.host, e.port, "tls", e.user, e.password, ca_file=e.cafile, timeout=5)


def test_wrong_password_is_refused_and_never_shown(dovecot_factory, caplog):
    # a private server: Dovecot penalises the source IP's next logins after a failure
    caplog.set_level(logging.DEBUG)
    e = dovecot_factory().env
    secret = "Wr0ng-" + e.password
    with pytest.raises(AuthenticationError) as info:
        ImapMailbox.connect(e.host, e.port, "plain", e.user, secret, account="work")
    msg = str(info.value)
    assert f"login to {e.host} as {e.user} refused" in msg
    assert "ndr-sweeper login work" in msg
    assert secret not in msg
    assert secret not in caplog.text


def test_password_not_logged_on_success(imap_user, caplog):
    caplog.set_level(logging.DEBUG)
    e = imap_user
    ImapMailbox.connect(e.host, e.port, "plain", e.user, e.password).logout()
    assert e.password not in caplog.text


def test_non_ascii_password(dovecot, new_imap_user):
    env = new_imap_user(dovecot)
    env = dovecot.add_user(env.user + "-u", "pässwörd-ß")
    with ImapMailbox.connect(env.host, env.port, "plain", env.user, env.password) as m:
        assert m.status("INBOX").messages == 0


def test_oauth2_refused_maps_to_authentication_error(dovecot_factory):
    e = dovecot_factory().env
    token = "ya29.secret-token"
    with pytest.raises(AuthenticationError, match="check the token") as info:
        ImapMailbox.connect(e.host, e.port, "plain", e.user, oauth2_token=token)
    assert token not in str(info.value)


def test_missing_credentials():
    with pytest.raises(CredentialError, match="ndr-sweeper login"):
        ImapMailbox.connect("127.0.0.1", 1, "plain", "someone")


def test_unreachable_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ConnectError, match=rf"cannot reach 127.0.0.1:{port}: .*refused"):
            ImapMailbox.connect("127.0.0.1", port, "plain", "u", "p", timeout=5)


def test_silent_server_times_out():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        accepted: list[socket.socket] = []
        t = threading.Thread(target=lambda: accepted.append(srv.accept()[0]), daemon=True)
        t.start()
        with pytest.raises(ConnectError, match="timed out"):
            ImapMailbox.connect("127.0.0.1", port, "plain", "u", "p", timeout=0.3)
        t.join(2)
        for c in accepted:
            c.close()


def test_server_killed_mid_session(dovecot_factory):
    server = dovecot_factory()
    e = server.env
    m = ImapMailbox.connect(e.host, e.port, "plain", e.user, e.password, timeout=5)
    m.select("INBOX")
    server.kill()
    with pytest.raises(ConnectError, match="lost during"):
        m.search_uids()
    m.logout()  # must not raise on a dead connection
    server.start()
    with ImapMailbox.connect(e.host, e.port, "plain", e.user, e.password) as m2:
        assert m2.status("INBOX").uidvalidity > 0


def test_long_uid_sets_stay_under_the_line_limit(dovecot_factory):
    server = dovecot_factory(max_line=2048)
    e = server.env
    with e.connect() as raw:
        append_messages(raw, "INBOX", [make_message(f"l{i}@x") for i in range(1500)])
        odd_set = ",".join(str(u) for u in range(1, 1501, 2))  # ~3.4 KB
        raw.select_folder("INBOX")
        with pytest.raises(Exception, match=r"(?i)too long"):
            raw._imap.uid("FETCH", odd_set, "(FLAGS)")
    odd = list(range(1, 1501, 2))
    with ImapMailbox.connect(e.host, e.port, "plain", e.user, e.password, max_set_bytes=1000) as m:
        m.select("INBOX")
        assert [h.uid for h in m.fetch_headers(odd, ["Message-ID"])] == odd
        m.add_flags(odd, ["\\Flagged"])
        mapping = m.move(odd, "Junk")
        assert sorted(mapping) == odd and sorted(mapping.values()) == list(range(1, 751))
        assert m.search_uids() == list(range(2, 1501, 2))
    with e.connect() as raw:
        junk = read_folder(raw, "Junk")
    assert len(junk) == 750 and all("\\Flagged" in j.flags for j in junk)


def test_default_cap_splits_big_scattered_sets(imap_user):
    e = imap_user
    with e.connect() as raw:
        append_messages(raw, "INBOX", [make_message(f"b{i}@x") for i in range(4000)])
    odd = list(range(1, 4001, 2))  # 2000 UIDs, ~9.4 KB as one set: two commands
    with ImapMailbox.connect(e.host, e.port, "plain", e.user, e.password) as m:
        m.select("INBOX")
        assert len(list(m.fetch_headers(odd, ["Message-ID"], batch=5000))) == 2000
        m.add_flags(odd, ["\\Deleted"])
        m.expunge_uids(odd)
        assert m.status("INBOX").messages == 2000


def test_operation_errors_name_operation_and_folder(imap_user):
    e = imap_user
    with ImapMailbox.connect(e.host, e.port, "plain", e.user, e.password) as m:
        with pytest.raises(MailboxError, match="no folder is selected"):
            m.search_uids()
        with pytest.raises(MailboxError, match="'INBOX/Nope' does not exist"):
            m.select("INBOX/Nope")
        m.append("INBOX", make_message("e@x"))
        m.select("INBOX")
        with pytest.raises(MailboxError, match="'Nope' does not exist"):
            m.move([1], "Nope")
        m.create_folder("Twice")
        with pytest.raises(MailboxError, match="CREATE on folder 'Twice' refused"):
            m.create_folder("Twice")


def test_client_is_exposed_for_low_level_use(imap_user):
    e = imap_user
    with ImapMailbox.connect(e.host, e.port, "plain", e.user, e.password) as m:
        assert m.client.noop()
