"""Many watched accounts on one Dovecot, served by one `ndr-sweeper run` process started with
a low open-file limit: every account is watched (or, past the hard limit, said not to be) and
every bounce is swept on time.

``NDR_WATCH_MANY`` sets the number of accounts (default 300, about 30 s per test on two
cores); benchmarks/watch.py measures the same at 1,000 and more, against any version.
"""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from ndr_sweeper import fdlimit

import crowd
import lab

pytestmark = [pytest.mark.imap, pytest.mark.slow]

N = int(os.environ.get("NDR_WATCH_MANY", "300"))
MOVED_WITHIN = 10.0  # seconds from delivery to the end of the sweep that moved the bounce
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


@pytest.fixture(scope="module")
def crowded() -> Iterator[tuple[lab.DovecotLab, list[str]]]:
    reason = lab.missing_reason()
    if reason:
        pytest.skip(reason)
    server = lab.DovecotLab(max_connections=2 * N + 200).start()
    try:
        yield server, crowd.add_users(server, N)
    finally:
        server.cleanup()


def problems(log: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if re.search(r" (WARNING|ERROR) |Traceback|Too many open files", line)
    ]


@pytest.mark.skipif(
    HARD != resource.RLIM_INFINITY and HARD < N + 300, reason=f"hard open-file limit {HARD}"
)
def test_all_watched_and_swept_on_time_from_a_soft_limit_of_256(crowded, tmp_path: Path) -> None:
    server, names = crowded
    config = crowd.write_config(tmp_path / "config.toml", server, names, every="1m")
    with crowd.ServiceProcess(tmp_path, config, nofile=(256, None)) as proc:
        summary = f"watching {N} folder(s) of {N} account(s) for new mail"
        proc.wait_for(lambda: summary in proc.log(), 90, "every account watched")
        # the first runs are spread over N x 50 ms: every account has been swept once
        proc.wait_for(
            lambda: {a for _, a, _ in crowd.summaries(proc.log())} == set(names),
            N * 0.05 + 30,
            "a first sweep of every account",
        )
        targets = names[::5]
        delivered = crowd.deliver(server, targets, pace=10)
        latency = proc.wait_moved(delivered, timeout=MOVED_WITHIN + 20)
        assert set(latency) == set(targets), f"not moved: {sorted(set(targets) - set(latency))}"
        slowest = max(latency, key=latency.__getitem__)
        assert latency[slowest] < MOVED_WITHIN, (slowest, latency[slowest], proc.tail())
        assert all(crowd.in_junk(server, n) for n in targets[:: max(len(targets) // 5, 1)])
        threads, fds = proc.sampler.most("threads"), proc.sampler.most("fds")
        # main, scheduler, 4 sweeps, the watch loop and 4 connectors (and a spare) for N
        assert threads <= 12, threads
        assert fds > 256 and fds >= N, fds  # the soft limit was raised: all of them fit
        code, seconds = proc.stop()
        assert code == 0 and seconds < 10, (code, seconds)
        assert problems(proc.log()) == []


def test_past_the_hard_limit_the_first_are_watched_and_all_swept(crowded, tmp_path: Path) -> None:
    server, names = crowded
    limit = 256
    fit = fdlimit.capacity(limit, 4, 4)
    assert fit is not None and fit < N
    config = crowd.write_config(tmp_path / "config.toml", server, names, every="15s")
    with crowd.ServiceProcess(tmp_path, config, nofile=(limit, limit)) as proc:
        summary = f"watching {fit} folder(s) of {fit} account(s) for new mail"
        proc.wait_for(lambda: summary in proc.log(), 60, "the watchers that fit")
        (line,) = problems(proc.log())  # one line says what is not watched and what to do
        assert f"open-file limit of {limit}: {N} watched folders" in line
        assert f"watching {fit}, not {names[fit]}/INBOX, " in line
        assert "LimitNOFILE=65536" in line
        watched, unwatched = names[0], names[-1]
        delivered = crowd.deliver(server, [watched, unwatched])
        latency = proc.wait_moved(delivered, timeout=15 + MOVED_WITHIN + 10)
        assert latency[watched] < MOVED_WITHIN, proc.tail()
        assert latency[unwatched] < 15 + MOVED_WITHIN, proc.tail()  # by the schedule
        # every account is swept (the schedule does not stall for want of files)
        proc.wait_for(
            lambda: {a for _, a, _ in crowd.summaries(proc.log())} == set(names),
            30,
            "a sweep of every account",
        )
        assert proc.sampler.most("fds") <= limit
        code, _ = proc.stop()
        assert code == 0
        assert len(problems(proc.log())) == 1
