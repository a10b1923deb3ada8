"""All terminal output: rich on a terminal, plain text otherwise, JSON on request.

This is the only module that prints. Errors and progress go to stderr; results to stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from ndr_sweeper.classify import Verdict


def _plain() -> bool:
    return bool(os.environ.get("NO_COLOR")) or not sys.stdout.isatty()


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    plain = bool(os.environ.get("NO_COLOR")) or not stream.isatty()
    return Console(
        file=stream,
        no_color=plain,
        color_system=None if plain else "auto",
        highlight=False,
        emoji=False,
        soft_wrap=plain,
        width=100 if plain else None,
    )


def error(message: str) -> None:
    """One line on stderr; never a traceback."""
    print(f"ndr-sweeper: error: {message}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    print(f"ndr-sweeper: warning: {message}", file=sys.stderr, flush=True)


def json_line(obj: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


def json_doc(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


# ---------------------------------------------------------------- explain


def explain(
    name: str, verdict: Verdict, rule: str | None = None, out: Console | None = None
) -> None:
    """A readable view of one verdict."""
    from rich.markup import escape
    from rich.table import Table

    out = out or console()
    style = "bold red" if verdict.is_ndr else "bold green"
    label = "NDR" if verdict.is_ndr else "not an NDR"
    out.print(
        f"[bold]{escape(name)}[/]: [{style}]{label}[/] ({verdict.kind}, detector {verdict.detector})"
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    if verdict.subject:
        grid.add_row("subject", escape(verdict.subject))
    if verdict.is_ndr or verdict.original.message_id:
        grid.add_row(
            "original", escape(verdict.original.message_id or "(not carried: undetermined)")
        )
    for other in verdict.original.other_message_ids:
        grid.add_row("also", escape(other))
    if verdict.original.from_ or verdict.original.subject:
        grid.add_row(
            "original from",
            escape(f"{verdict.original.from_ or '?'}  subject: {verdict.original.subject or '?'}"),
        )
    for r in verdict.recipients:
        bits = [r.address]
        if r.status:
            bits.append(r.status)
        if r.diagnostic:
            bits.append(r.diagnostic)
        grid.add_row("recipient", escape("  ".join(bits)))
    for e in verdict.evidence:
        grid.add_row("evidence", escape(e))
    for d in verdict.defects:
        grid.add_row("defect", escape(d))
    if rule is not None:
        grid.add_row("rule", escape(rule))
    out.print(grid)
    out.print()


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    out: Console | None = None,
) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = out or console()
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*(escape("" if v is None else str(v)) for v in row))
    out.print(t)
