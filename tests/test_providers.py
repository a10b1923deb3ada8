"""The provider table, RFC 6186 SRV discovery and the small DNS client: pure parsing of
answers we build byte by byte, and one exchange with a DNS server on loopback. No test here
sends anything beyond this machine."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from ndr_sweeper import dnsquery, providers
from ndr_sweeper.dnsquery import DnsError, DnsResolver, Mx, Srv, parse_answer, read_name


class FakeResolver:
    """SRV and MX records by name; a name in `fail` raises DnsError like a dead server."""

    def __init__(self, srv=None, mx=None, fail=()):  # type: ignore[no-untyped-def]
        self.srv_records = srv or {}
        self.mx_records = mx or {}
        self.fail = set(fail)
        self.asked: list[str] = []

    def srv(self, name: str) -> list[Srv]:
        self.asked.append(name)
        if name in self.fail:
            raise DnsError("no answer")
        return list(self.srv_records.get(name, []))

    def mx(self, name: str) -> list[Mx]:
        self.asked.append("MX " + name)
        if "MX " + name in self.fail:
            raise DnsError("no answer")
        return list(self.mx_records.get(name, []))


# --------------------------------------------------------------------------- the table


def test_every_preset_is_complete_and_unique() -> None:
    keys = [p.key for p in providers.PRESETS]
    assert len(keys) == len(set(keys))
    seen: dict[str, str] = {}
    for p in providers.PRESETS:
        assert p.security in ("tls", "starttls") and 0 < p.port < 65536
        assert p.auth in ("password", "oauth2")
        assert (p.auth == "oauth2") == (p.oauth2_provider is not None)
        assert p.host == "" or dnsquery.host_name(p.host) == p.host
        assert p.sent and p.junk and p.trash and p.hint
        for d in p.domains:
            assert d not in seen, f"{d} in {p.key} and {seen[d]}"
            seen[d] = p.key


@pytest.mark.parametrize(
    ("address", "key", "host"),
    [
        ("a@gmail.com", "gmail", "imap.gmail.com"),
        ("a@GoogleMail.com", "gmail", "imap.gmail.com"),
        ("a@outlook.com", "microsoft", "outlook.office365.com"),
        ("a@hotmail.co.uk", "microsoft", "outlook.office365.com"),
        ("a@yahoo.com", "yahoo", "imap.mail.yahoo.com"),
        ("a@aol.com", "aol", "imap.aol.com"),
        ("a@icloud.com", "icloud", "imap.mail.me.com"),
        ("a@fastmail.com", "fastmail", "imap.fastmail.com"),
        ("a@gmx.de", "gmx", "imap.gmx.net"),
        ("a@gmx.com", "gmx.com", "imap.gmx.com"),
        ("a@web.de", "webde", "imap.web.de"),
        ("a@zoho.com", "zoho", "imap.zoho.com"),
        ("a@zoho.eu", "zoho-eu", "imappro.zoho.eu"),
    ],
)
def test_known_domains_need_no_dns(address: str, key: str, host: str) -> None:
    resolver = FakeResolver()
    found = providers.discover(address, resolver)
    assert found is not None and found.preset is not None
    assert (found.preset.key, found.host, found.port, found.security, found.source) == (
        key,
        host,
        993,
        "tls",
        "provider",
    )
    assert resolver.asked == []


@pytest.mark.parametrize(
    ("mx", "key"),
    [
        ("aspmx.l.google.com.", "gmail"),
        ("smtp.google.com", "gmail"),
        ("example-org.mail.protection.outlook.com", "microsoft"),
        ("in1-smtp.messagingengine.com", "fastmail"),
        ("mx.zoho.com", "zoho-org"),
        ("mx.zoho.eu", "zoho-eu"),
        ("mx01.mail.icloud.com", "icloud"),
    ],
)
def test_custom_domains_are_recognised_by_their_mx(mx: str, key: str) -> None:
    resolver = FakeResolver(mx={"example.org": [Mx(20, "backup.example.net"), Mx(10, mx)]})
    found = providers.discover("me@example.org", resolver)
    assert found is not None and found.preset is not None and found.preset.key == key
    assert found.source == "mx" and found.host == found.preset.host
    # SRV records were asked first (they are the domain's own word), and there were none
    assert resolver.asked[:2] == ["_imaps._tcp.example.org", "_imap._tcp.example.org"]


def test_lookalike_mx_is_not_a_provider() -> None:
    resolver = FakeResolver(mx={"example.org": [Mx(10, "mx.notgoogle.com")]})
    assert providers.discover("me@example.org", resolver) is None


# --------------------------------------------------------------------------- SRV


def test_srv_imaps_best_priority_then_weight() -> None:
    resolver = FakeResolver(
        srv={
            "_imaps._tcp.example.org": [
                Srv(20, 100, 993, "backup.example.org."),
                Srv(10, 1, 9993, "light.example.org."),
                Srv(10, 50, 993, "Heavy.Example.org."),
            ],
            "_imap._tcp.example.org": [Srv(0, 0, 143, "plain.example.org.")],
        }
    )
    found = providers.discover("me@example.org", resolver)
    assert found == providers.Found(
        "heavy.example.org", 993, "tls", "srv", None, "_imaps._tcp.example.org"
    )


def test_srv_root_target_means_not_offered_then_starttls() -> None:
    resolver = FakeResolver(
        srv={
            "_imaps._tcp.example.org": [Srv(0, 0, 0, "")],  # "." : no IMAPS here
            "_imap._tcp.example.org": [Srv(0, 0, 143, "mail.example.org")],
        }
    )
    found = providers.discover("me@example.org", resolver)
    assert found is not None
    assert (found.host, found.port, found.security) == ("mail.example.org", 143, "starttls")


def test_srv_hostile_targets_are_skipped() -> None:
    resolver = FakeResolver(
        srv={
            "_imaps._tcp.example.org": [
                Srv(0, 0, 993, 'evil"\nhost = "attacker.example'),
                Srv(1, 0, 993, "x" * 300),
                Srv(2, 0, 993, "ok.example.org"),
            ]
        }
    )
    found = providers.discover("me@example.org", resolver)
    assert found is not None and found.host == "ok.example.org"


def test_dns_failures_mean_nothing_found() -> None:
    resolver = FakeResolver(
        fail={"_imaps._tcp.example.org", "MX example.org"},
        srv={"_imap._tcp.example.org": [Srv(0, 0, 143, "mail.example.org")]},
    )
    # a failed SRV look-up ends the SRV step; MX fails too: nothing found, no exception
    assert providers.discover("me@example.org", resolver) is None
    assert providers.discover("me@example.org", None) is None


# --------------------------------------------------------------------------- the wire


def _name(name: str) -> bytes:
    return dnsquery.encode_name(name)


def answer(
    qid: int, qname: str, qtype: int, records: list[bytes], *, rcode: int = 0, tc: bool = False
) -> bytes:
    flags = 0x8180 | rcode | (0x0200 if tc else 0)
    head = struct.pack("!HHHHHH", qid, flags, 1, len(records), 0, 0)
    return head + _name(qname) + struct.pack("!HH", qtype, 1) + b"".join(records)


def srv_rr(target: bytes, prio: int = 0, weight: int = 0, port: int = 993) -> bytes:
    rdata = struct.pack("!HHH", prio, weight, port) + target
    return b"\xc0\x0c" + struct.pack("!HHIH", 33, 1, 300, len(rdata)) + rdata


def test_parse_srv_answer_with_compression() -> None:
    qname = "_imaps._tcp.example.org"
    # target "mail" + pointer to "example.org" inside the question (offset 12 + 7 + 5)
    records = [srv_rr(b"\x04mail\xc0\x18", 5, 7, 993), srv_rr(_name("imap.example.net"))]
    data = answer(0x1234, qname, 33, records)
    assert read_name(data, 12)[0] == qname
    assert parse_answer(data, 0x1234, 33) == [
        Srv(5, 7, 993, "mail.example.org"),
        Srv(0, 0, 993, "imap.example.net"),
    ]


def test_parse_mx_answer_and_nxdomain() -> None:
    rdata = struct.pack("!H", 10) + _name("aspmx.l.google.com")
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 15, 1, 300, len(rdata)) + rdata
    assert parse_answer(answer(7, "example.org", 15, [rr]), 7, 15) == [Mx(10, "aspmx.l.google.com")]
    assert parse_answer(answer(7, "example.org", 15, [], rcode=3), 7, 15) == []
    with pytest.raises(DnsError, match="error code 2"):
        parse_answer(answer(7, "example.org", 15, [], rcode=2), 7, 15)
    with pytest.raises(DnsError, match="not an answer"):
        parse_answer(answer(8, "example.org", 15, [rr]), 7, 15)


@pytest.mark.parametrize(
    "target",
    [
        b"\xc0\x3b",  # the target (offset 59) points at itself
        b"\x04mail\xc0\x3b",  # points back to its own first label: a loop
        b"\x3fabc",  # label runs past the end
        b"\x80",  # unknown label type
    ],
)
def test_hostile_names_are_errors_not_loops(target: bytes) -> None:
    data = answer(1, "_imaps._tcp.example.org", 33, [srv_rr(target)])
    with pytest.raises(DnsError):
        parse_answer(data, 1, 33)


def test_long_pointer_chain_is_bounded() -> None:
    """200 labels of 63 octets, each pointing back to the one before: the name would be
    12,800 octets; reading stops past 255."""
    data = bytearray(struct.pack("!HHHHHH", 1, 0x8180, 0, 1, 0, 0))
    offsets = []
    for i in range(200):
        offsets.append(len(data))
        tail = b"\x00\x00" if i == 0 else struct.pack("!H", 0xC000 | offsets[i - 1])
        data += b"\x3f" + b"a" * 63 + tail
    with pytest.raises(DnsError, match="255"):
        read_name(bytes(data), offsets[-1])
    assert len(read_name(bytes(data), offsets[2])[0]) == 3 * 64 - 1  # three labels are fine


def test_resolv_conf() -> None:
    text = "# comment\nsearch example.org\nnameserver 10.0.0.1\nnameserver ::1 # x\n" * 2
    assert dnsquery.nameservers(text) == ["10.0.0.1", "::1", "10.0.0.1"]


def test_query_to_a_dns_server_on_loopback() -> None:
    """One real exchange: the query the resolver sends is well formed and the answer it gets
    back (from a server on 127.0.0.1) is read; a truncated answer is asked again over TCP."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(1)
    seen: list[str] = []

    def serve() -> None:
        data, peer = udp.recvfrom(512)
        qid = struct.unpack("!H", data[:2])[0]
        seen.append(read_name(data, 12)[0])
        udp.sendto(b"\x00\x00" + data[2:], peer)  # a stray answer with another id: ignored
        udp.sendto(answer(qid, seen[0], 33, [], tc=True), peer)
        conn, _ = tcp.accept()
        with conn:
            (length,) = struct.unpack("!H", conn.recv(2))
            query = conn.recv(length)
            qid = struct.unpack("!H", query[:2])[0]
            full = answer(qid, seen[0], 33, [srv_rr(_name("mail.example.org"), port=993)])
            conn.sendall(struct.pack("!H", len(full)) + full)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        resolver = DnsResolver([("127.0.0.1", port)], timeout=5, deadline=10)
        assert resolver.srv("_imaps._tcp.example.org") == [Srv(0, 0, 993, "mail.example.org")]
        assert seen == ["_imaps._tcp.example.org"]
    finally:
        t.join(5)
        udp.close()
        tcp.close()


def test_silent_server_times_out_quickly() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        resolver = DnsResolver([udp.getsockname()], timeout=0.2, deadline=0.5)
        with pytest.raises(DnsError, match=r"127\.0\.0\.1"):
            resolver.mx("example.org")
    finally:
        udp.close()
