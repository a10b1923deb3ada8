"""A tiny DNS client for the two questions ``init`` asks: SRV and MX records.

The standard library resolves names to addresses but cannot ask for SRV (RFC 6186 says where
a domain's IMAP server is) or MX (who hosts a domain's mail). This module sends one question
over UDP to the name servers in ``/etc/resolv.conf`` (TCP when the answer is truncated),
with a timeout per server and a deadline for the whole look-up, and parses the answer with
bounds on everything a hostile answer could inflate (name length, compression pointers,
record count). Standard library only; nothing here runs unless ``init`` meets a domain it
does not know.

Answers are data from the network: names are checked to be host names before anyone uses
them (:func:`host_name`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

TYPE_MX: Final = 15
TYPE_SRV: Final = 33
CLASS_IN: Final = 1
PORT: Final = 53
MAX_ANSWERS: Final = 64  # records read from one answer
MAX_NAME: Final = 255  # octets of a decoded name (RFC 1035 2.3.4)
MAX_TCP: Final = 65535
RESOLV_CONF: Final = Path("/etc/resolv.conf")

_HOST_RE: Final = re.compile(r"(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
                             r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # fmt: skip


class DnsError(Exception):
    """The question could not be answered (no server answered, or the answer was malformed)."""


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str  # "" for the root (".": the service is not offered)


@dataclass(frozen=True, slots=True)
class Mx:
    preference: int
    host: str


def host_name(name: str) -> str | None:
    """``name`` without its trailing dot, lower-cased, when it is a host name; else None."""
    name = name.rstrip(".").lower()
    return name if _HOST_RE.fullmatch(name) else None


# --------------------------------------------------------------------------- wire format


def encode_name(name: str) -> bytes:
    """A name in wire format; ValueError for a label that cannot be sent."""
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
        if not 0 < len(raw) <= 63:
            raise ValueError(f"{name!r} is not a domain name")
        out += bytes([len(raw)]) + raw
    out += b"\x00"
    if len(out) > MAX_NAME:
        raise ValueError(f"{name!r} is too long for a domain name")
    return bytes(out)


def build_query(name: str, rtype: int, query_id: int) -> bytes:
    """One question, recursion desired."""
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", rtype, CLASS_IN)


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The name at ``offset`` and the offset after it (after the first pointer, if any).

    Compression pointers must point backwards, so a loop cannot be built; the decoded name is
    at most 255 octets.
    """
    labels: list[str] = []
    length = 0
    end: int | None = None
    pos = offset
    limit = len(data)
    while True:
        if pos >= limit:
            raise DnsError("name runs past the end of the answer")
        n = data[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= limit:
                raise DnsError("truncated compression pointer")
            target = ((n & 0x3F) << 8) | data[pos + 1]
            if end is None:
                end = pos + 2
            if target >= pos:
                raise DnsError("compression pointer does not point backwards")
            limit = pos  # everything reached from here lies before this pointer
            pos = target
            continue
        if n & 0xC0:
            raise DnsError("unknown label type")
        pos += 1
        if n == 0:
            break
        if pos + n > len(data):
            raise DnsError("label runs past the end of the answer")
        length += n + 1
        if length > MAX_NAME:
            raise DnsError("name longer than 255 octets")
        labels.append(data[pos : pos + n].decode("ascii", "replace"))
        pos += n
    return ".".join(labels), (end if end is not None else pos)


def parse_answer(data: bytes, query_id: int, rtype: int) -> list[Srv] | list[Mx]:
    """The records of type ``rtype`` in an answer to query ``query_id``.

    NXDOMAIN and an empty answer are ``[]``; a server failure, a refusal or a malformed
    answer is DnsError.
    """
    if len(data) < 12:
        raise DnsError("answer shorter than a DNS header")
    qid, flags, qdcount, ancount, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
    if qid != query_id or not flags & 0x8000:
        raise DnsError("not an answer to our question")
    rcode = flags & 0x000F
    if rcode == 3:  # NXDOMAIN
        return []
    if rcode != 0:
        raise DnsError(f"the name server answered with error code {rcode}")
    pos = 12
    for _ in range(min(qdcount, 4)):
        _name, pos = read_name(data, pos)
        pos += 4
    srv: list[Srv] = []
    mx: list[Mx] = []
    for _ in range(min(ancount, MAX_ANSWERS)):
        _owner, pos = read_name(data, pos)
        if pos + 10 > len(data):
            raise DnsError("record header runs past the end of the answer")
        atype, aclass, _ttl, rdlength = struct.unpack("!HHIH", data[pos : pos + 10])
        pos += 10
        rdata_end = pos + rdlength
        if rdata_end > len(data):
            raise DnsError("record data runs past the end of the answer")
        if aclass == CLASS_IN and atype == rtype == TYPE_SRV:
            if rdlength < 7:
                raise DnsError("SRV record too short")
            priority, weight, port = struct.unpack("!HHH", data[pos : pos + 6])
            target, _ = read_name(data, pos + 6)
            srv.append(Srv(priority, weight, port, target))
        elif aclass == CLASS_IN and atype == rtype == TYPE_MX:
            if rdlength < 3:
                raise DnsError("MX record too short")
            (preference,) = struct.unpack("!H", data[pos : pos + 2])
            host, _ = read_name(data, pos + 2)
            mx.append(Mx(preference, host))
        pos = rdata_end
    return srv if rtype == TYPE_SRV else mx


# --------------------------------------------------------------------------- resolver


def nameservers(text: str) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf text, at most three (as glibc uses)."""
    out: list[str] = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            out.append(parts[1])
    return out[:3]


class DnsResolver:
    """Ask the system's name servers (or ``servers``: ``(address, port)`` pairs).

    ``timeout`` bounds the wait for each server, ``deadline`` the whole look-up.
    """

    def __init__(
        self,
        servers: Sequence[tuple[str, int]] | None = None,
        *,
        timeout: float = 2.0,
        deadline: float = 6.0,
    ) -> None:
        if servers is None:
            try:
                text = RESOLV_CONF.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            servers = [(s, PORT) for s in nameservers(text)] or [("127.0.0.1", PORT)]
        self.servers = list(servers)
        self.timeout = timeout
        self.deadline = deadline

    def srv(self, name: str) -> list[Srv]:
        return self._ask(name, TYPE_SRV)  # type: ignore[return-value]

    def mx(self, name: str) -> list[Mx]:
        return self._ask(name, TYPE_MX)  # type: ignore[return-value]

    def _ask(self, name: str, rtype: int) -> list[Srv] | list[Mx]:
        stop = time.monotonic() + self.deadline
        problems: list[str] = []
        for address, port in self.servers:
            left = stop - time.monotonic()
            if left <= 0:
                break
            query_id = secrets.randbits(16)
            try:
                query = build_query(name, rtype, query_id)
            except ValueError as exc:
                raise DnsError(str(exc)) from None
            try:
                data = _udp(address, port, query, min(self.timeout, left))
                if len(data) >= 4 and data[2] & 0x02:  # TC: the whole answer needs TCP
                    data = _tcp(address, port, query, min(self.timeout, max(left, 0.1)))
                return parse_answer(data, query_id, rtype)
            except (OSError, DnsError) as exc:
                log.debug("DNS %s %s via %s: %s", name, rtype, address, exc)
                problems.append(f"{address}: {exc}")
        raise DnsError("; ".join(problems) or "no name server answered in time")


def _family(address: str, port: int) -> tuple[int, tuple[object, ...]]:
    info = socket.getaddrinfo(address, port, type=socket.SOCK_DGRAM)[0]
    return info[0], info[4]


def _udp(address: str, port: int, query: bytes, timeout: float) -> bytes:
    family, sockaddr = _family(address, port)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(sockaddr)  # answers from anyone else are not delivered to us
        sock.send(query)
        end = time.monotonic() + timeout
        while True:
            data = sock.recv(4096)
            if data[:2] == query[:2]:
                return data
            sock.settimeout(max(end - time.monotonic(), 0.01))  # a stray datagram: wait on


def _tcp(address: str, port: int, query: bytes, timeout: float) -> bytes:
    family, sockaddr = _family(address, port)
    with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as sock:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
        sock.sendall(struct.pack("!H", len(query)) + query)
        head = _read_exact(sock, 2)
        (length,) = struct.unpack("!H", head)
        return _read_exact(sock, min(length, MAX_TCP))


def _read_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise DnsError("the name server closed the connection mid-answer")
        out += chunk
    return bytes(out)
