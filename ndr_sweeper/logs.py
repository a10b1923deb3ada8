"""Logging set-up for the commands: one line per record on stderr, server text escaped.

Only the CLI calls these (the library modules just use ``logging.getLogger(__name__)``). A
one-off command logs plain lines at ``--log-level`` (warning by default); ``run`` logs for a
service manager: rich's handler on a terminal, one plain line per record otherwise (journald,
files). Either way every message is made printable first (``textsafe.SafeFormatter``): log
lines carry server answers, folder names and message headers.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Final

PLAIN_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The service's scheduler logger (service.scheduler_log), by name: no service import here.
SCHEDULER_LOGGER: Final = "ndr_sweeper.service.scheduler"


def setup_command(level: str | None) -> None:
    """For one-off commands: plain lines on stderr, unless logging is set up already."""
    from ndr_sweeper.textsafe import SafeFormatter

    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(PLAIN_FORMAT))
    root.addHandler(handler)
    root.setLevel(getattr(logging, (level or "warning").upper()))


def setup_service(level: str, stream: Any = None) -> logging.Handler:
    """For `run`: rich's handler on a terminal, one plain line per record otherwise."""
    from ndr_sweeper.textsafe import SafeFormatter

    stream = stream if stream is not None else sys.stderr
    root = logging.getLogger()
    for h in list(root.handlers):  # setup_command's handler: ours replaces it
        if type(h) is logging.StreamHandler and h.stream in (sys.stderr, stream):
            root.removeHandler(h)
    handler: logging.Handler
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        from rich.logging import RichHandler

        from ndr_sweeper import render

        handler = RichHandler(console=render.console(stderr=True), show_path=False, markup=False)
        handler.setFormatter(SafeFormatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(SafeFormatter(PLAIN_FORMAT))
    root.addHandler(handler)
    set_level(level)
    return handler


def set_level(level: str) -> None:
    numeric = getattr(logging, level.upper())
    logging.getLogger().setLevel(numeric)
    # APScheduler says "Running job ..." at INFO for every run: only its warnings, unless debugging.
    logging.getLogger("apscheduler").setLevel(max(numeric, logging.WARNING))
    logging.getLogger(SCHEDULER_LOGGER).setLevel(max(numeric, logging.WARNING))
