"""Test doubles built from the real signatures, so they cannot drift from what they stand for.

``as_run_sweep(fn)`` turns ``fn(account, state, mailbox_factory, reporter)`` into a callable
that accepts exactly what ``sweep.run_sweep`` accepts (a call the real one would refuse raises
TypeError here too), with run_sweep's defaults applied.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from ndr_sweeper.sweep import run_sweep

RUN_SWEEP = inspect.signature(run_sweep)


def as_run_sweep(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(run_sweep)
    def fake(*args: Any, **kwargs: Any) -> Any:
        bound = RUN_SWEEP.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        return fn(a["account"], a["state"], a["mailbox_factory"], a["reporter"])

    return fake
