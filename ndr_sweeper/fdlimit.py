"""How many watched folders fit under the open-file limit (RLIMIT_NOFILE).

Every watched folder holds one connection, so one file descriptor, for as long as the service
runs; every sweep in progress needs a few more for a while (its connection, the state database
and the account lock, a ``password_command``'s pipes), and so does every watch connector. The
soft limit is often 1,024 while the hard limit is far higher, so ``raise_open_file_limit``
lifts the soft one to the hard one at start; ``capacity`` then says how many watched folders fit
and ``shortage`` words the one start-up line when they do not all fit.

Pure apart from ``raise_open_file_limit`` (the ``resource`` module, injectable for tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

# Measured: about 20 for the process itself, 1,033 in all with 1,000 watched folders and 4
# sweeps under way; these leave a margin.
RESERVED: Final = 48  # the process: stdio, logs, the state database, the loop's selector
PER_SWEEP: Final = 10  # connection, state database (+WAL, SHM), lock, password_command pipes
PER_CONNECTOR: Final = 6  # a watch connector's connection and password_command pipes
ADVICE: Final = 65536  # what to raise the limit to
_SHOWN: Final = 5  # names listed in the shortage line


@dataclass(frozen=True)
class OpenFiles:
    """The limit found at start (``before``) and the one in force (``soft``) under ``hard``."""

    before: int
    soft: int
    hard: int


def raise_open_file_limit(
    getrlimit: Callable[[int], tuple[int, int]] | None = None,
    setrlimit: Callable[[int, tuple[int, int]], None] | None = None,
) -> OpenFiles | None:
    """Raise the soft RLIMIT_NOFILE to the hard one; None where there is no such limit."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    get = getrlimit or resource.getrlimit
    put = setrlimit or resource.setrlimit
    soft, hard = get(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    if soft == infinite:
        return OpenFiles(soft, soft, hard)
    # An infinite hard limit cannot be the soft one everywhere (macOS caps it at OPEN_MAX).
    targets = [hard] if hard != infinite else [1 << 20, ADVICE, 10240]
    for target in targets:
        if target <= soft:
            break
        try:
            put(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        return OpenFiles(soft, target, hard)
    return OpenFiles(soft, soft, hard)


def reserve(max_parallel: int, connectors: int) -> int:
    """Descriptors kept for everything but the watched connections."""
    return RESERVED + max_parallel * PER_SWEEP + connectors * PER_CONNECTOR


def capacity(limit: int | None, max_parallel: int, connectors: int) -> int | None:
    """How many watched folders fit under *limit* (None: no limit, so no cap)."""
    if limit is None:
        return None
    return max(0, limit - reserve(max_parallel, connectors))


def shortage(
    limits: OpenFiles, wanted: int, skipped: Sequence[str], max_parallel: int, connectors: int
) -> str:
    """The one line said when *skipped* ("account/folder") of *wanted* folders do not fit."""
    need = wanted + reserve(max_parallel, connectors)
    names = ", ".join(skipped[:_SHOWN])
    if len(skipped) > _SHOWN:
        names += f" and {len(skipped) - _SHOWN} more"
    hard = "" if limits.hard == limits.soft else f" (hard limit {limits.hard})"
    return (
        f"too many watched folders for the open-file limit of {limits.soft}{hard}: "
        f"{wanted} watched folders and {max_parallel} sweeps at a time need about {need}; "
        f"watching {wanted - len(skipped)}, not {names} (the schedule still sweeps them); "
        f"raise the limit: LimitNOFILE={ADVICE} in the systemd unit, or "
        f"`ulimit -n {ADVICE}` before `ndr-sweeper run`"
    )
