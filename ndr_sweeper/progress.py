"""How a sweep reports its progress: the protocol both the sweep and its steps use.

A module of its own so that ``sweep`` and ``actions.apply`` both import it without importing
each other. The terminal renders progress (``render.Progress``), the service turns it into a
place to stop (``service._StopReporter``); everything else ignores it (:class:`NullReporter`).
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    """Progress callbacks: a stage begins (with how many items, when known); items are done."""

    def stage(self, account: str, name: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class NullReporter:
    def stage(self, account: str, name: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass
