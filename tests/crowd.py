"""Many accounts on one lab Dovecot, served by one `ndr-sweeper run` process: the helpers that
tests/test_watch_many.py and benchmarks/watch.py share.

    server = lab.DovecotLab(max_connections=2 * n + 200).start()
    names = add_users(server, n)
    config = write_config(tmp / "config.toml", server, names, every="1m")
    with ServiceProcess(tmp, config, nofile=(1024, None)) as proc:   # soft, hard (None: ours)
        proc.wait_for(lambda: "watching 300 folder(s)" in proc.log(), 60, "the watchers")
        delivered = deliver(server, names[:50], pace=10)               # name -> wall time
        latency = proc.wait_moved(delivered, timeout=60)               # name -> seconds
        proc.sampler.samples[-1]   # threads, open files, RSS, CPU seconds (from /proc)
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import bounces
import lab

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "pw-crowd"
_SUMMARY = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO ndr_sweeper\.service: (\S+): scanned \d+, "
    r"NDRs \d+, own \d+, backscatter \d+, acted (\d+)",
    re.M,
)


def add_users(server: lab.DovecotLab, n: int, prefix: str = "w") -> list[str]:
    names = [f"{prefix}{i:05d}" for i in range(n)]
    for name in names:
        server.add_user(name, PASSWORD)
    return names


def write_config(
    path: Path,
    server: lab.DovecotLab,
    names: list[str],
    *,
    every: str,
    max_parallel: int = 4,
    watch: bool = True,
) -> Path:
    lines = [f"max_parallel = {max_parallel}"]
    for name in names:
        lines += [
            "[[accounts]]",
            f'name = "{name}"',
            f'host = "{server.env.host}"',
            f"port = {server.port}",
            'security = "plain"',
            f'username = "{name}"',
            f'password_command = "printf %s {PASSWORD}"',
            'min_age = "0s"',
            f'every = "{every}"',
            f"watch = {'true' if watch else 'false'}",
        ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def deliver(server: lab.DovecotLab, names: list[str], pace: float = 0.0) -> dict[str, float]:
    """One backscatter bounce APPENDed to each account's INBOX by 8 clients at once, at most
    *pace* a second (0: as fast as they go); returns the wall-clock time of each APPEND."""
    done: dict[str, float] = {}
    t0 = time.monotonic()

    def one(i: int, name: str) -> None:
        if pace:
            time.sleep(max(t0 + i / pace - time.monotonic(), 0.0))
        client = server.env_for(name, PASSWORD).connect()
        try:
            original = f"forged.{name}.{os.urandom(4).hex()}@example.org"
            lab.append_messages(client, "INBOX", [bounces.dsn(original)])
            done[name] = time.time()
        finally:
            client.logout()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(len(names)), names))
    return done


def in_junk(server: lab.DovecotLab, name: str) -> bool:
    """Is a bounce (Message-ID bounce.*) in the account's Junk?"""
    client = server.env_for(name, PASSWORD).connect()
    try:
        return any(
            (e.message_id or "").startswith("bounce.") for e in lab.read_folder(client, "Junk")
        )
    finally:
        client.logout()


def summaries(log_text: str) -> list[tuple[float, str, int]]:
    """(epoch seconds, account, acted) of every sweep summary in a service log."""
    out = []
    for m in _SUMMARY.finditer(log_text):
        when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
        out.append((when + int(m.group(2)) / 1000, m.group(3), int(m.group(4))))
    return out


@dataclass
class Sample:
    t: float  # time.monotonic()
    threads: int
    fds: int
    rss_mb: float
    cpu_s: float  # user + system since the process started


@dataclass
class Sampler:
    """Samples /proc/PID every *every* seconds in a thread (Linux)."""

    pid: int
    every: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Sampler:
        threading.Thread(target=self._run, name="sampler", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(self.every):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                stat = Path(f"/proc/{self.pid}/stat").read_text()
                fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if "VmRSS" not in fields:  # exiting
                return
            rest = stat[stat.rfind(")") + 2 :].split()
            cpu = (int(rest[11]) + int(rest[12])) / tick  # utime + stime
            self.peak_rss_mb = max(self.peak_rss_mb, int(fields["VmHWM"].split()[0]) / 1024)
            self.samples.append(
                Sample(
                    time.monotonic(),
                    int(fields["Threads"]),
                    fds,
                    int(fields["VmRSS"].split()[0]) / 1024,
                    cpu,
                )
            )

    def now(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def most(self, what: str) -> float:
        return max((getattr(s, what) for s in self.samples), default=0)


class ServiceProcess:
    """`ndr-sweeper run --config CONFIG` with its own XDG folders under *base*, the code of
    *source* (default: this checkout), and RLIMIT_NOFILE set to *nofile* (soft, hard; None
    keeps ours) before it starts. Its log goes to base/service.log."""

    def __init__(
        self,
        base: Path,
        config: Path,
        *,
        nofile: tuple[int, int | None] | None = None,
        source: Path | None = None,
    ) -> None:
        self.base = base
        for sub in ("config", "state"):
            (base / sub).mkdir(exist_ok=True)
        self.log_path = base / "service.log"
        source = (source or REPO).resolve()
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(base / "config"),
            "XDG_STATE_HOME": str(base / "state"),
            "NO_COLOR": "1",
            "PYTHONPATH": str(source),
        }

        def limit() -> None:
            if nofile is not None:
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile[0], nofile[1] or hard))

        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ndr_sweeper", "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=source,
                preexec_fn=limit,
            )
        self.started = time.monotonic()
        self.sampler = Sampler(self.proc.pid).start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pred: Callable[[], object], timeout: float, what: str) -> float:
        """Seconds until *pred* holds; AssertionError (with the log's tail) when it does not."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred():
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise AssertionError(f"the service exited waiting for {what}:\n{self.tail()}")
            time.sleep(0.25)
        raise AssertionError(f"no {what} after {timeout:g} s:\n{self.tail()}")

    def wait_moved(self, delivered: dict[str, float], timeout: float) -> dict[str, float]:
        """For each delivery, the seconds until a sweep of that account that acted ended
        (from the log); waits up to *timeout* for all of them, returns what it found."""
        latency: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            for t, name, acted in summaries(self.log()):
                if acted and name in delivered and name not in latency and t >= delivered[name]:
                    latency[name] = t - delivered[name]
            if len(latency) == len(delivered):
                break
            time.sleep(0.5)
        return latency

    def tail(self, lines: int = 30) -> str:
        return "\n".join(line[:300] for line in self.log().splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> tuple[int | str, float]:
        """SIGTERM; (exit status or "killed", seconds it took)."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | str = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            code = "killed"
        self.sampler.stop()
        return code, time.monotonic() - t0

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.sampler.stop()
