"""All terminal output: rich on a terminal, plain text otherwise, JSON on request.

This is the only module that prints. Errors and progress go to stderr; results to stdout.
Everything shown passes through :func:`ndr_sweeper.textsafe.printable` (JSON through
``json_safe``): server answers, folder names and message headers can hold terminal escapes,
which are shown escaped, never interpreted; rich markup in them is escaped too.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ndr_sweeper.textsafe import json_safe, printable

if TYPE_CHECKING:
    from rich.console import Console

    from ndr_sweeper.classify import Verdict


def _plain() -> bool:
    return bool(os.environ.get("NO_COLOR")) or not sys.stdout.isatty()


PIPE_WIDTH = 80  # columns of output that goes to a pipe or file, unless COLUMNS says


def width(stream: Any = None) -> int:
    """The width to lay output out in: $COLUMNS when set, else the terminal's, else 80."""
    raw = os.environ.get("COLUMNS", "")
    if raw.isdigit() and 20 <= int(raw) <= 1000:
        return int(raw)
    stream = stream or sys.stdout
    try:
        if stream.isatty():
            return max(os.get_terminal_size(stream.fileno()).columns, 20)
    except (OSError, ValueError, AttributeError):
        pass
    return PIPE_WIDTH


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
        soft_wrap=False,  # fit the width (80 in a pipe): every screen fits
        width=width(stream),
    )


def error(message: str) -> None:
    """One line on stderr; never a traceback."""
    print(f"ndr-sweeper: error: {printable(message)}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    print(f"ndr-sweeper: warning: {printable(message)}", file=sys.stderr, flush=True)


def say(
    text: str, *, stderr: bool = False, out: Console | None = None, soft_wrap: bool | None = None
) -> None:
    """One line of text as it is: no markup, no highlighting, control characters escaped.

    By default it fits the width (80 in a pipe), broken only between words: a path, an address
    or a command stays whole, so it can be copied. ``soft_wrap=True`` never breaks it.
    """
    import textwrap

    out = out or console(stderr=stderr)
    text = printable(text)
    if soft_wrap is not None:
        out.print(text, markup=False, highlight=False, soft_wrap=soft_wrap)
        return
    lead = " " * (len(text) - len(text.lstrip(" ")))
    lines = textwrap.wrap(
        text.strip(" "),
        width=max(out.width, 20),
        initial_indent=lead,
        subsequent_indent=lead + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    for line in lines or [""]:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def json_line(obj: Mapping[str, Any]) -> None:
    """One JSON object on a line. Non-ASCII text stays readable; the control characters
    json.dumps leaves raw (DEL, C1, bidi) are written as \\u escapes."""
    sys.stdout.write(json_safe(json.dumps(obj, ensure_ascii=False, default=str)) + "\n")


def json_doc(obj: Any) -> None:
    sys.stdout.write(json_safe(json.dumps(obj, ensure_ascii=False, indent=2, default=str)) + "\n")


# ---------------------------------------------------------------- explain


def _markup_safe(text: object) -> str:
    """Text for a rich markup string: control characters escaped, then rich's markup."""
    from rich.markup import escape

    return escape(printable("" if text is None else text))


def explain(
    name: str, verdict: Verdict, rule: str | None = None, out: Console | None = None
) -> None:
    """A readable view of one verdict."""
    from rich.table import Table

    esc = _markup_safe
    out = out or console()
    style = "bold red" if verdict.is_ndr else "bold green"
    label = "NDR" if verdict.is_ndr else "not an NDR"
    out.print(
        f"[bold]{esc(name)}[/]: [{style}]{label}[/] ({esc(verdict.kind)}, detector "
        f"{esc(verdict.detector)})"
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    if verdict.subject:
        grid.add_row("subject", esc(verdict.subject))
    if verdict.is_ndr or verdict.original.message_id:
        grid.add_row("original", esc(verdict.original.message_id or "(not carried: undetermined)"))
    for other in verdict.original.other_message_ids:
        grid.add_row("also", esc(other))
    if verdict.original.from_ or verdict.original.subject:
        grid.add_row(
            "original from",
            esc(f"{verdict.original.from_ or '?'}  subject: {verdict.original.subject or '?'}"),
        )
    for r in verdict.recipients:
        bits = [r.address]
        if r.status:
            bits.append(r.status)
        if r.diagnostic:
            bits.append(r.diagnostic)
        grid.add_row("recipient", esc("  ".join(bits)))
    for e in verdict.evidence:
        grid.add_row("evidence", esc(e))
    for d in verdict.defects:
        grid.add_row("defect", esc(d))
    if rule is not None:
        grid.add_row("rule", esc(rule))
    out.print(grid)
    out.print()


def _ascii_head() -> Any:
    from rich.box import Box

    # rich's SIMPLE_HEAD (a rule under the header, nothing else) drawn with "-"
    return Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    out: Console | None = None,
    *,
    flexible: Sequence[str] = ("error", "reason", "note"),
) -> None:
    """A plain table that fits the width: no borders, one space between columns, headers and
    numbers never broken; only the `flexible` text columns (errors, reasons) fold."""
    from rich import box
    from rich.table import Table

    out = out or console()
    rows = [list(r) for r in rows]
    plain = out.no_color or not out.is_terminal
    t = Table(
        title=_markup_safe(title) if title else None,
        title_justify="left",
        title_style=None if plain else "bold",
        box=_ascii_head() if plain else box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 0),  # the box draws one space between columns
    )
    for i, c in enumerate(columns):
        numeric = bool(rows) and all(isinstance(r[i], int) or r[i] is None for r in rows)
        # Text (an account, an error) folds onto a second line rather than being cut;
        # headers and numbers never break.
        fold = c in flexible or (i == 0 and not numeric)
        t.add_column(
            _markup_safe(c),
            justify="right" if numeric else "left",
            no_wrap=not fold,
            overflow="fold",
            min_width=len(c),
        )
    for row in rows:
        t.add_row(*(_markup_safe("" if v is None else v) for v in row))
    out.print(t)


# ---------------------------------------------------------------- sweep


class Progress:
    """A rich progress display on stderr; does nothing when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self._progress = None
        self._task = None
        if enabled and sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console(stderr=True),
                transient=True,
            )

    def __enter__(self) -> Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def stage(self, account: str, name: str, total: int | None = None) -> None:
        if self._progress is None:
            return
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(f"{account}: {name}", total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)


PREVIEW_LINES = 20  # plan entries a dry run shows without -v


def _plan_lines(account: str, p: Any, verbose: bool = False) -> list[str]:
    """One decision as a user checks it: what happens, and the message by date, sender and
    subject (not only by Message-ID; -v adds the IDs)."""
    what = f"{p.action}" + (f" -> {p.dest}" if p.dest else "")
    when = (p.arrived or "")[:16].replace("T", " ")
    head = f"{account} {p.folder} #{p.uid}: {what}"
    lines = [head]
    lines.append(f"    {when}  {p.sender or '(no From)'}".rstrip())
    lines.append(f"    {p.subject or '(no Subject)'}")
    reason = f"    {p.decision}: {p.reason}"
    if p.rule:
        reason += f" [rule {p.rule}]"
    lines.append(reason)
    if verbose:
        lines.append(f"    bounce <{p.bounce_message_id or '?'}>")
    return lines


def sweep_summary(results: Sequence[Any], verbose: bool = False) -> None:
    """The plan (dry run: what would act; -v: every decision), then the per-account table,
    then what the user should know: where to undo, notes, errors, what the columns hold."""
    out = console()
    dry = any(r.dry_run for r in results)
    for r in results:
        shown = [p for p in r.decisions if verbose or (r.dry_run and p.acts)]
        limit = None if verbose else PREVIEW_LINES
        for p in shown[:limit]:
            for line in _plan_lines(r.account, p, verbose):
                say(line, out=out)
        if limit is not None and len(shown) > limit:
            say(f"{r.account}: ... and {len(shown) - limit} more (`-v` shows all)", out=out)
    swept = [r for r in results if r.scanned or not r.error]
    if swept:
        table(
            "ndr-sweeper: dry run, nothing changed" if dry else "ndr-sweeper sweep",
            [
                "account",
                "scanned",
                "NDRs",
                "own",
                "backscatter",
                "would act" if dry else "acted",
                "undetermined",
                "waiting",
                "errors",
            ],
            [
                [
                    r.account,
                    r.scanned,
                    r.ndrs,
                    r.own,
                    r.backscatter,
                    r.would_act if r.dry_run else r.acted,
                    r.undetermined,
                    r.too_young,
                    r.errors + (1 if r.error else 0),
                ]
                for r in swept
            ],
            out=out,
        )
    for r in results:
        if r.run_id and not r.dry_run and r.acted:
            say(
                f"{r.account}: run {r.run_id} ({r.seconds:.2f} s); undo with "
                f"`ndr-sweeper undo {r.run_id}`",
                out=out,
            )
        for n in r.notes:
            say(f"{r.account}: note: {n}", out=out)
        if r.error:
            error(f"{r.account}: {r.error}")
        if (verbose or r.dry_run) and r.sent_folders:
            say(f"{r.account}: Sent folders checked: {', '.join(r.sent_folders)}", out=out)
    if swept:
        for line in _legend(swept, dry, verbose):
            say(line, out=out)


def _legend(results: Sequence[Any], dry: bool, verbose: bool) -> list[str]:
    """What the columns that need it mean, said only when they hold something."""
    lines = []
    kept = sum(r.backscatter - (r.would_act if r.dry_run else r.acted) for r in results)
    if kept > 0:
        lines.append(
            f"{kept} backscatter bounce(s) were not acted on: see the notes (put back by an "
            'undo, action = "none", or waiting for an earlier action)'
        )
    if any(r.undetermined for r in results):
        lines.append(
            "undetermined: NDRs that carry no usable original Message-ID; they stay where they "
            "are for you to look at" + ("" if verbose else " (`sweep --dry-run -v` lists them)")
        )
    if any(r.too_young for r in results):
        lines.append(
            "waiting: bounces younger than min_age (your Sent copy may not be saved yet), or "
            "to be tried again; a later sweep takes them"
        )
    return lines


# ---------------------------------------------------------------- questions


def ask(question: str) -> str:
    """Ask on stderr and read one line of standard input (without its line end); "" at the
    end of the input. The question is shown escaped, like everything else."""
    sys.stderr.write(printable(question))
    sys.stderr.flush()
    return sys.stdin.readline().rstrip("\r\n")


WIDTH = 80  # the screens of init, folders, check and report fit 80 columns, piped or not


def narrow(out: Console | None = None, stderr: bool = False) -> Console:
    """A console at most WIDTH columns wide (a terminal's own width when it is narrower)."""
    out = out or console(stderr=stderr)
    out.width = min(out.width, WIDTH)
    return out


def para(text: str, *, indent: str = "", out: Console | None = None, stderr: bool = False) -> None:
    """``text`` wrapped to the console's width (at most WIDTH), later lines indented."""
    import textwrap

    out = narrow(out, stderr=stderr)
    lines = textwrap.wrap(
        printable(text),
        width=out.width,
        subsequent_indent=indent,
        break_on_hyphens=False,
    )
    for line in lines or [""]:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def bar_char(out: Console) -> str:
    """ "#" through a pipe, a full block on a terminal."""
    return "#" if (out.no_color or not out.is_terminal) else "\u2588"


def chart(lines: Sequence[str], out: Console, bar: str = "#") -> None:
    """Lines of a text chart as they are; on a colour terminal the bars are coloured."""
    from rich.text import Text

    colour = not (out.no_color or not out.is_terminal)
    for line in lines:
        text = Text(printable(line))
        if colour and bar.strip():
            text.highlight_regex(f"{re.escape(bar)}+", "bold red")
        out.print(text, soft_wrap=True)
