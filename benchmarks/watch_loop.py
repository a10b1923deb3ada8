"""The IDLE watch loop alone at 10,000 connections: threads, open files, memory, CPU, and how
fast new mail on every one of them is noticed.

Usage: python benchmarks/watch_loop.py [--connections 10000] [--connect-rate 500]

A lab Dovecot needs an imap process (about 5 MB) per connection, so this talks to a small
stub IMAP server instead (asyncio, in a subprocess: greeting, CAPABILITY, LOGIN, EXAMINE, IDLE,
DONE, LOGOUT, and ``* n EXISTS`` to every IDLE session when told). The client side is the
real thing: ``ImapMailbox.connect`` in the connector threads, ``watch.WatchLoop`` holding the
connections. Reported: the time to connect them all (at ``--connect-rate``; the service's
default is 50 a second), this process's threads, open files and RSS, its CPU while nothing
happens, the time from one EXISTS broadcast to the last ``mail_arrived``, and the time
``stop()`` takes. It asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ndr_sweeper.config import Account  # noqa: E402
from ndr_sweeper.mailbox.imap import connect  # noqa: E402
from ndr_sweeper.watch import WatchLoop  # noqa: E402

STUB = textwrap.dedent(
    """\
    import asyncio, resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    idling = {}
    exists = 0

    async def session(reader, writer):
        writer.write(b"* OK stub ready\\r\\n")
        idle_tag = None
        try:
            while line := await reader.readline():
                if idle_tag is not None:
                    idling.pop(writer, None)
                    writer.write(idle_tag + b" OK idle done\\r\\n")
                    idle_tag = None
                    continue
                tag, _, rest = line.rstrip().partition(b" ")
                cmd = rest.split(b" ", 1)[0].upper()
                if cmd == b"CAPABILITY":
                    writer.write(b"* CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN\\r\\n" + tag + b" OK done\\r\\n")
                elif cmd in (b"EXAMINE", b"SELECT"):
                    writer.write(b"* %d EXISTS\\r\\n* OK [UIDVALIDITY 1] x\\r\\n"
                                 b"* OK [UIDNEXT %d] x\\r\\n" % (exists, exists + 1)
                                 + tag + b" OK [READ-ONLY] done\\r\\n")
                elif cmd == b"IDLE":
                    writer.write(b"+ idling\\r\\n")
                    idle_tag = tag
                    idling[writer] = True
                elif cmd == b"LOGOUT":
                    writer.write(b"* BYE bye\\r\\n" + tag + b" OK done\\r\\n")
                    break
                else:
                    writer.write(tag + b" OK done\\r\\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            idling.pop(writer, None)
            writer.close()

    async def control():
        global exists
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            exists += 1
            for w in list(idling):
                w.write(b"* %d EXISTS\\r\\n" % exists)
            print("sent", len(idling), flush=True)

    async def main():
        server = await asyncio.start_server(session, "127.0.0.1", 0, backlog=4096)
        print(server.sockets[0].getsockname()[1], flush=True)
        await control()

    asyncio.run(main())
    """
)


class Host:
    reconnect_backoff = (5.0, 300.0)
    idle_renew = 600.0

    def __init__(self, port: int) -> None:
        self.port = port
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()

    def open_mailbox(self, name: str):  # type: ignore[no-untyped-def]
        return connect("127.0.0.1", self.port, "plain", name, "pw", timeout=30)

    def auth_wait(self, name: str) -> float:
        return 0.0

    def mail_arrived(self, name: str) -> None:
        with self.lock:
            self.arrived[name] = time.monotonic()


def me() -> tuple[int, int, float, float]:
    """(threads, open files, RSS MB, CPU seconds) of this process."""
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return (
        threading.active_count(),
        len(os.listdir("/proc/self/fd")),
        int(fields["VmRSS"].split()[0]) / 1024,
        ru.ru_utime + ru.ru_stime,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--connect-rate", type=float, default=500.0)
    p.add_argument("--quiet", type=float, default=20.0)
    args = p.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stub = subprocess.Popen(
        [sys.executable, "-c", STUB], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert stub.stdout is not None and stub.stdin is not None
    port = int(stub.stdout.readline())
    host = Host(port)
    threads0, fds0, rss0, _ = me()
    loop = WatchLoop(host, connect_rate=args.connect_rate).start()  # type: ignore[arg-type]
    t0 = time.monotonic()
    for i in range(args.connections):
        loop.add(Account(name=f"u{i}", host="127.0.0.1", username=f"u{i}"), ["INBOX"])
    while loop.states()["idling"] < args.connections and time.monotonic() - t0 < 1800:
        time.sleep(0.5)
    connected = time.monotonic() - t0
    idle = loop.states()["idling"]
    threads, fds, rss, cpu0 = me()
    time.sleep(args.quiet)
    cpu1 = me()[3]
    t1 = time.monotonic()
    stub.stdin.write("go\n")
    stub.stdin.flush()
    sent = stub.stdout.readline().split()[1]
    while len(host.arrived) < args.connections and time.monotonic() - t1 < 120:
        time.sleep(0.05)
    last = max(host.arrived.values(), default=t1) - t1
    cpu2 = me()[3]
    t2 = time.monotonic()
    loop.stop()
    stopped = time.monotonic() - t2
    stub.kill()
    rows = {
        "connections": f"{idle} idling after {connected:.1f} s "
        f"(rate {args.connect_rate:g}/s, 4 connectors)",
        "threads": f"{threads} ({threads - threads0} for the loop)",
        "open files": f"{fds} ({fds - fds0} more than before)",
        "RSS": f"{rss:.0f} MB ({rss - rss0:.0f} MB for the connections)",
        "CPU while quiet": f"{100 * (cpu1 - cpu0) / args.quiet:.1f} % of a core",
        "EXISTS to all": f"{sent} sent; {len(host.arrived)} noticed, the last after {last:.2f} s"
        f" ({cpu2 - cpu1:.1f} CPU s)",
        "stop": f"{stopped:.2f} s",
    }
    for k, v in rows.items():
        print(f"{k:>16}  {v}")


if __name__ == "__main__":
    main()
