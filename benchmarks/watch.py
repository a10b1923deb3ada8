"""`ndr-sweeper run` with many watched accounts on one lab Dovecot: does every account get swept
on time, and what does it cost?

Usage: python benchmarks/watch.py [--accounts 1000] [--every 1m] [--max-parallel 4]
                                  [--nofile 1024] [--nofile-hard N] [--settle 20]
                                  [--sample N] [--pace R] [--source DIR] [--keep] [--json]

A throw-away Dovecot (tests/lab.py, its limits raised to take them all) gets one user per
account; the service runs as a subprocess with ``watch = true`` for every account, its soft
open-file limit set to ``--nofile`` before it starts (as a login shell or a bare systemd unit
would), and ``--source`` another checkout's code (e.g. ``git archive`` of the version before)
on the same lab. Then:

  connect   until every account says "watching INBOX" (or ``--connect-timeout``);
  schedule  how many accounts the schedule swept in the last minute, after ``--settle`` s;
  deliver   one backscatter bounce APPENDed to every account (or ``--sample`` of them, at
            most ``--pace`` a second; 8 clients at once), each delivery timed; then, from the
            service's log, the time from each delivery to the end of the sweep that moved it;
  check     a sample of mailboxes: the bounce is in Junk;
  stop      SIGTERM, and how long the service takes to exit.

All along the service process is sampled from /proc: threads, open files, RSS (and its peak),
CPU seconds. It prints a table (``--json``: one JSON object) and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import crowd  # noqa: E402  (tests/crowd.py: many accounts on one lab, one service process)
import lab  # noqa: E402  (tests/lab.py: the project's Dovecot fixture)


def run(args: argparse.Namespace) -> dict[str, object]:
    server = lab.DovecotLab(max_connections=args.accounts * 2 + 200).start()
    base = Path(tempfile.mkdtemp(prefix="ndr-watch-bench-"))
    result: dict[str, object] = {
        "accounts": args.accounts,
        "every": args.every,
        "max_parallel": args.max_parallel,
        "nofile": args.nofile,
        "source": str(args.source or REPO),
    }
    try:
        names = crowd.add_users(server, args.accounts)
        config = crowd.write_config(
            base / "config.toml", server, names, every=args.every, max_parallel=args.max_parallel
        )
        source = Path(args.source) if args.source else None
        with crowd.ServiceProcess(
            base, config, nofile=(args.nofile, args.nofile_hard), source=source
        ) as proc:
            measure(args, server, names, proc, result)
    finally:
        for line in server.log_path.read_text(errors="replace").splitlines():
            if "Fatal" in line or "Panic" in line:
                result["dovecot_says"] = line[:200]
                break
        server.cleanup()
        if args.keep:
            result["log"] = str(base / "service.log")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return result


def measure(args, server, names, proc, result) -> None:  # type: ignore[no-untyped-def]
    # connect: until every account says so (the version before has no summary line)
    def watching() -> int:
        return len(re.findall(r": watching INBOX for new mail$", proc.log(), re.M))

    try:
        proc.wait_for(lambda: watching() >= len(names), args.connect_timeout, "all watchers")
    except AssertionError:
        pass
    result["watching"] = watching()
    result["connect_s"] = round(time.monotonic() - proc.started, 1)

    # schedule: accounts swept in the last minute, once settled
    time.sleep(args.settle)
    now = time.time()
    result["swept_last_minute"] = len(
        {a for t, a, _ in crowd.summaries(proc.log()) if t >= now - 60}
    )

    # deliver, and the time from each delivery to the end of the sweep that moved it
    step = max(len(names) // (args.sample or len(names)), 1)
    targets = names[::step][: args.sample or None]
    result["delivered_to"] = len(targets)
    before = proc.sampler.now()
    t0 = time.monotonic()
    delivered = crowd.deliver(server, targets, args.pace)
    result["deliver_s"] = round(time.monotonic() - t0, 1)
    latency = sorted(proc.wait_moved(delivered, args.sweep_timeout).values())
    result["moved"] = len(latency)
    if latency:
        result["latency_s"] = {
            "median": round(statistics.median(latency), 1),
            "p95": round(latency[int(0.95 * (len(latency) - 1))], 1),
            "max": round(latency[-1], 1),
        }
    after = proc.sampler.now()
    if before and after:
        result["cpu_during_deliveries_s"] = round(after.cpu_s - before.cpu_s, 1)
    sample = targets[:: max(len(targets) // 10, 1)]
    result["in_junk_sample"] = f"{sum(crowd.in_junk(server, n) for n in sample)}/{len(sample)}"

    # quiet: CPU with nothing new arriving
    q0 = proc.sampler.now()
    time.sleep(args.quiet)
    q1 = proc.sampler.now()
    if q0 and q1 and q1.t > q0.t:
        result["cpu_quiet_pct"] = round(100 * (q1.cpu_s - q0.cpu_s) / (q1.t - q0.t), 1)
    last = proc.sampler.now()
    if last:
        result["threads"] = int(proc.sampler.most("threads"))
        result["fds"] = int(proc.sampler.most("fds"))
        result["rss_mb"] = round(last.rss_mb)
        result["peak_rss_mb"] = round(proc.sampler.peak_rss_mb)
        result["cpu_total_s"] = round(last.cpu_s, 1)

    code, seconds = proc.stop()
    result["exit"] = code
    result["stop_s"] = round(seconds, 1)
    text = proc.log()
    result["tracebacks"] = text.count("Traceback")
    result["warnings"] = len(re.findall(r" WARNING ", text))
    result["errors"] = len(re.findall(r" ERROR ", text))
    result["too_many_open_files"] = text.count("Too many open files")
    first = re.search(r"^.* (WARNING|ERROR) .*$", text, re.M)
    if first:
        result["first_problem"] = first.group(0)[:300]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--every", default="1m")
    p.add_argument("--max-parallel", type=int, default=4)
    p.add_argument("--nofile", type=int, default=1024, help="soft RLIMIT_NOFILE at start")
    p.add_argument("--nofile-hard", type=int, default=None, help="hard limit (default: ours)")
    p.add_argument("--settle", type=float, default=20.0)
    p.add_argument("--sample", type=int, default=0, help="deliver to this many (0: all)")
    p.add_argument("--pace", type=float, default=0.0, help="deliveries a second (0: at once)")
    p.add_argument("--quiet", type=float, default=20.0)
    p.add_argument("--connect-timeout", type=float, default=120.0)
    p.add_argument("--sweep-timeout", type=float, default=120.0)
    p.add_argument("--source", help="run the service from this source tree instead")
    p.add_argument("--keep", action="store_true", help="keep (and print) the service log")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>24}  {value}")


if __name__ == "__main__":
    main()
