"""Command line: parses arguments, wires the pieces together, maps errors to exit codes.

Heavy modules (imapclient, rich, keyring, apscheduler) are imported inside the commands
that need them, so `ndr-sweeper --version` and a no-op sweep start fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ndr_sweeper import __version__
from ndr_sweeper.errors import NdrSweeperError

if TYPE_CHECKING:
    from ndr_sweeper.config import Config

log = logging.getLogger("ndr_sweeper")


# ---------------------------------------------------------------- commands


def cmd_explain(args: argparse.Namespace) -> int:
    from ndr_sweeper import render
    from ndr_sweeper.classify import classify
    from ndr_sweeper.inputs import read_inputs

    failures = 0
    out = None if args.json else render.console()
    rules = None
    if args.config or args.account:
        from ndr_sweeper.config import load_config
        from ndr_sweeper.rules import load_rules

        config = load_config(args.config)
        account = config.account(args.account) if args.account else config.select(None)[0]
        rules = load_rules(account.rules)
    for item in read_inputs(args.paths):
        if item.raw is None:
            render.error(f"{item.file}: cannot read: {item.error}")
            failures += 1
            continue
        verdict = classify(item.raw)
        rule_text = _rule_for(verdict, rules) if rules is not None else None
        if args.json:
            obj: dict[str, object] = {"file": item.file}
            if item.index is not None:
                obj["index"] = item.index
            obj.update(verdict.to_dict())
            if rules is not None:
                obj["rule"] = rule_text
            render.json_line(obj)
        else:
            name = item.file if item.index is None else f"{item.file}#{item.index}"
            render.explain(name, verdict, rule=rule_text, out=out)
    return 1 if failures else 0


def _rule_for(verdict, rules) -> str:  # type: ignore[no-untyped-def]
    """Which rule would fire for this verdict, judged as backscatter and as an own bounce."""
    from ndr_sweeper.actions.plan import Context, Policy, decide

    policy = Policy(action="move", junk_folder="Junk", min_age=0)
    ctx = Context(age=float("inf"))
    fired = []
    for label, match in (("if backscatter", None), ("if your own bounce", "in-sent")):
        if not verdict.is_ndr and match:
            continue
        plan = decide("INBOX", 0, verdict, match, ctx.age, policy)
        rule = rules.first_match(verdict, plan, ctx)
        what = f"rule {rule.name}: {rule.describe()}" if rule else "no rule: built-in decision"
        fired.append(what if not verdict.is_ndr else f"{label}: {what}")
    return "; ".join(fired)


def cmd_rules_check(args: argparse.Namespace) -> int:
    from ndr_sweeper import render
    from ndr_sweeper.rules import explain_rules, load_rule_file

    out = render.console()
    for path in args.files:
        for line in explain_rules(load_rule_file(Path(path))):
            render.say(line, out=out)
    return 0


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ndr_sweeper import render
    from ndr_sweeper.config import load_config

    config = load_config(args.config)
    for w in config.warnings:
        render.warning(w)
    return config


def cmd_sweep(args: argparse.Namespace) -> int:
    from ndr_sweeper import render
    from ndr_sweeper.errors import LockedError
    from ndr_sweeper.state import open_state
    from ndr_sweeper.sweep import AccountResult, run_sweep

    config = _load(args)
    accounts = config.select(args.account)
    results: list[AccountResult] = []
    invocation: str | None = None  # the first account's run id: undo --last takes them all
    with (
        open_state(config.state_dir) as state,
        render.Progress(not (args.json or args.quiet)) as progress,
    ):
        for acc in accounts:
            try:
                result = run_sweep(
                    config,
                    acc,
                    state,
                    dry_run=args.dry_run,
                    full=args.full,
                    reporter=progress,
                    invocation=invocation,
                )
                invocation = invocation or result.run_id
            except LockedError as exc:
                result = AccountResult(acc.name, dry_run=args.dry_run, error=str(exc))
            except KeyboardInterrupt:
                progress.__exit__(None, None, None)  # the progress line goes, the message stays
                finished = [r.account for r in results]
                render.error(
                    f"interrupted (Ctrl-C) while sweeping {acc.name}: what it had already done "
                    "is journalled (`ndr-sweeper history` shows the run as interrupted, `undo "
                    "--last` can put it back) and the next sweep continues from there"
                    + (f"; swept before it: {', '.join(finished)}" if finished else "")
                )
                return 130
            results.append(result)
    if args.json:
        render.json_doc(
            {"ok": all(r.ok for r in results), "accounts": [r.to_dict() for r in results]}
        )
    elif args.quiet:
        for r in results:
            if r.error:
                render.error(f"{r.account}: {r.error}")
    else:
        render.sweep_summary(results, verbose=args.verbose)
    return 0 if all(r.ok for r in results) else 1


def cmd_undo(args: argparse.Namespace) -> int:
    from ndr_sweeper import render
    from ndr_sweeper.errors import ConfigError
    from ndr_sweeper.state import open_state

    config = _load(args)
    with open_state(config.state_dir) as state:
        if args.last:
            runs = state.last_undoable_invocation()
            if not runs:
                raise ConfigError(
                    "nothing to undo: no sweep moved or flagged anything that is still there; "
                    "`ndr-sweeper history` lists the runs"
                )
        else:
            run = state.run(args.run_id)
            if run is None:
                raise ConfigError(f"no run {args.run_id!r}: `ndr-sweeper history` lists the runs")
            if run.dry_run or run.command != "sweep":
                what = "a dry run" if run.dry_run else f"an {run.command}"
                raise ConfigError(f"run {run.id} was {what}: it changed nothing to undo")
            runs = [run]
        by_account: dict[str, list[str]] = {}
        for r in sorted(runs, key=lambda r: (r.account, r.id)):
            by_account.setdefault(r.account, []).append(r.id)
        if args.last and not args.json:
            render.say(
                f"undoing the sweep of {runs[0].started:%Y-%m-%d %H:%M} UTC "
                f"({', '.join(r.id for r in runs)}) on {', '.join(by_account)}"
            )
        reports = [
            _undo_account(config, state, name, run_ids) for name, run_ids in by_account.items()
        ]
    if args.json:
        render.json_doc({"ok": all(r["ok"] for r in reports), "accounts": reports})
    else:
        out = render.console()
        for r in reports:
            if r["error"]:
                render.error(f"{r['account']}: {r['error']}")
                continue
            render.say(
                f"run {', '.join(r['run_ids'])} ({r['account']}): "
                f"{r['restored']} message(s) put back",
                out=out,
            )
            for n in r["notes"]:
                render.say(f"note: {n}", out=out)
            if r["missing"] or r["failed"]:
                render.error(
                    f"{r['account']}: {r['missing'] + r['failed']} message(s) could not be put "
                    "back (see the notes above)"
                )
    return 0 if all(r["ok"] for r in reports) else 1


def _undo_account(config, state, name: str, run_ids: list[str]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Undo `run_ids` of one account as a journalled run of its own; never raises (but for
    Ctrl-C, which is recorded as an interrupted run)."""
    from ndr_sweeper.actions.apply import UndoResult, undo_runs
    from ndr_sweeper.connect import open_mailbox
    from ndr_sweeper.state import account_lock

    result = UndoResult()
    report: dict[str, object] = {"account": name, "run_ids": run_ids, "undo_run_id": None}
    error: str | None = None
    try:
        account = config.account(name)
        with account_lock(config.state_dir, name):
            state.interrupt_stale_runs(name)
            undo_id = state.start_run(name, dry_run=False, command="undo")
            report["undo_run_id"] = undo_id
            status = "failed"
            try:
                mb = open_mailbox(account)
                try:
                    result = undo_runs(mb, state, name, run_ids, undo_id, account.expunge_fallback)
                finally:
                    mb.logout()
                status = "partial" if result.failed or result.missing else "ok"
            except KeyboardInterrupt:
                status, error = "interrupted", "interrupted (Ctrl-C); run the undo again"
                raise
            except NdrSweeperError as exc:
                error = str(exc)
            except Exception as exc:  # a bug of ours: one line; the journal says what is left
                error = (
                    f"unexpected {type(exc).__name__}: {exc}; the journal is intact, run the undo "
                    "again; run with --log-level debug for the details, and please report it"
                )
                log.debug("%s: undo failed", name, exc_info=True)
            finally:
                state.finish_run(
                    undo_id,
                    status,
                    {
                        "restored": result.restored,
                        "missing": result.missing,
                        "errors": result.failed,
                    },
                    error,
                )
    except NdrSweeperError as exc:  # unknown account (renamed), locked, state
        error = str(exc)
    report.update(
        restored=result.restored,
        missing=result.missing,
        failed=result.failed,
        notes=result.notes,
        error=error,
        ok=error is None and not result.failed and not result.missing,
    )
    return report


def cmd_history(args: argparse.Namespace) -> int:
    from ndr_sweeper import render
    from ndr_sweeper.state import open_state

    config = _load(args)
    with open_state(config.state_dir) as state:
        # Runs that found nothing are left out unless --all; the state keeps only the last of
        # them per account anyway, and counts the others.
        runs = state.runs(account=args.account, limit=args.limit, quiet=args.all)
        summaries = state.quiet_runs(args.account)
    if args.json:
        render.json_doc(
            [
                {
                    "run_id": r.id,
                    "account": r.account,
                    "command": r.command,
                    "started": r.started,
                    "finished": r.finished,
                    "dry_run": r.dry_run,
                    "status": r.status,
                    "quiet": r.quiet,
                    "counts": r.counts,
                    "error": r.error,
                }
                for r in runs
            ]
        )
        return 0
    render.table(
        "ndr-sweeper history",
        ["run", "account", "started (UTC)", "status", "scanned", "backscatter", "acted"],
        [
            [
                r.id,
                r.account,
                f"{r.started:%Y-%m-%d %H:%M}",
                ("dry run" if r.dry_run else r.status if r.command == "sweep" else r.command),
                r.counts.get("scanned"),
                r.counts.get("backscatter"),
                r.counts.get("acted", r.counts.get("restored")),
            ]
            for r in runs
        ],
    )
    for r in runs:  # errors under the table: a column of them would not fit 80 columns
        if r.error:
            render.say(f"{r.id} {r.account}: {r.error}")
    out = render.console()
    for q in summaries:
        render.say(
            f"{q.account}: {q.runs} more run(s) found nothing new between "
            f"{q.first:%Y-%m-%d %H:%M} and {q.last:%Y-%m-%d %H:%M} (not kept)",
            out=out,
        )
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    from ndr_sweeper.login import cmd_login as run

    return run(args)


def cmd_logout(args: argparse.Namespace) -> int:
    from ndr_sweeper.login import cmd_logout as run

    return run(args)


# ---------------------------------------------------------------- the first hour


def cmd_init(args: argparse.Namespace) -> int:
    from ndr_sweeper.wizard import cmd_init as run

    return run(args)


def cmd_folders(args: argparse.Namespace) -> int:
    from ndr_sweeper.folders import cmd_folders as run

    return run(args)


def cmd_check(args: argparse.Namespace) -> int:
    from ndr_sweeper.doctor import cmd_check as run

    return run(args)


def cmd_completion(args: argparse.Namespace) -> int:
    from ndr_sweeper import completion

    sys.stdout.write(completion.script(args.shell, build_parser()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`ndr-sweeper report`: the last --days days of each account, from the journal only."""
    from datetime import timedelta

    from ndr_sweeper import render, report
    from ndr_sweeper.errors import ConfigError
    from ndr_sweeper.state import open_state

    if not 1 <= args.days <= 3660:
        raise ConfigError(f"--days {args.days}: give a number of days from 1 to 3660")
    config = _load(args)
    names = [a.name for a in config.select(args.account)] if args.account else config.names
    today = datetime.now().astimezone().date()
    first = today - timedelta(days=args.days - 1)
    since = datetime.combine(first, datetime.min.time()).astimezone()
    with open_state(config.state_dir) as state:
        entries = state.report_entries(since)
        runs = state.sweep_runs_since(since)
    reports = report.build(names, entries, runs, days=args.days, today=today)
    if args.json:
        render.json_doc(
            {
                "days": args.days,
                "since": first.isoformat(),
                "until": today.isoformat(),
                "accounts": [r.to_dict() for r in reports],
            }
        )
        return 0
    out = render.narrow()
    bar = render.bar_char(out)
    for i, r in enumerate(reports):
        if i:
            render.chart([""], out)
        render.chart(report.lines(r, args.days, out.width, bar), out, bar)
    return 0


# ---------------------------------------------------------------- the service


def cmd_run(args: argparse.Namespace) -> int:
    """`ndr-sweeper run`: sweep every enabled account on its schedule until stopped."""
    from ndr_sweeper import logs
    from ndr_sweeper.config import load_config
    from ndr_sweeper.service import Service, serve

    config = load_config(args.config)
    logs.setup_service(args.log_level or config.log_level)
    for w in config.warnings:
        log.warning("%s", w)

    def reload_config() -> Config:
        new = load_config(args.config)
        for w in new.warnings:
            log.warning("%s", w)
        if not args.log_level:
            logs.set_level(new.log_level)
        return new

    clean = serve(Service(config), reload_config)
    if not clean:
        # Pool threads would keep the interpreter alive until their sweep ends.
        for h in logging.getLogger().handlers:
            h.flush()
        os._exit(0)
    return 0


def _when(dt: datetime | None) -> str:
    return "" if dt is None else dt.astimezone().strftime("%m-%d %H:%M")


def status_rows(
    config: Config, statuses: Mapping[str, Any], last: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One row per account: its last run (service, terminal or cron alike), the service's
    next run. `statuses`: the service's account_status rows; `last`: each account's latest
    sweep run from the journal."""
    from ndr_sweeper.service import schedule_text

    rows = []
    for acc in config.accounts:
        s = statuses.get(acc.name)
        run = (last or {}).get(acc.name)
        if run is not None and (s is None or s.last_run is None or run.started >= s.last_run):
            last_run, run_id, counts, error = run.started, run.id, run.counts, run.error
            running = run.status == "running"
        else:
            last_run = s.last_run if s else None
            run_id = s.run_id if s else None
            counts = s.counts if s else {}
            error = s.error if s else None
            running = False
        rows.append(
            {
                "account": acc.name,
                "enabled": acc.enabled,
                "schedule": schedule_text(acc),
                "last_run": last_run,
                "run_id": run_id,
                "running": running,
                "counts": counts,
                "error": error,
                "next_run": s.next_run if s else None,
            }
        )
    return rows


def cmd_status(args: argparse.Namespace) -> int:
    """`ndr-sweeper status`: each account's last run, its counts and error, and the next run."""
    from ndr_sweeper import render
    from ndr_sweeper.config import load_config
    from ndr_sweeper.state import open_state

    config = load_config(args.config)
    for w in config.warnings:
        render.warning(w)
    with open_state(config.state_dir) as state:
        statuses = {s.account: s for s in state.account_status()}
        last = state.last_runs("sweep")
    rows = status_rows(config, statuses, last)
    if getattr(args, "json", False):
        render.json_doc(
            [
                {
                    **r,
                    "last_run": r["last_run"].isoformat() if r["last_run"] else None,
                    "next_run": r["next_run"].isoformat() if r["next_run"] else None,
                }
                for r in rows
            ]
        )
        return 0
    # Every count is in --json; the table keeps what fits 80 columns, errors go under it.
    columns = ["account", "schedule", "last run", "backscatter", "acted", "next run"]
    table_rows = []
    for r in rows:
        c = r["counts"]
        if not r["enabled"]:
            nxt = "disabled"
        elif r["next_run"] is None:
            nxt = "not scheduled"
        else:
            nxt = _when(r["next_run"])
        when = _when(r["last_run"]) or "never"
        if r["running"]:
            minutes = (datetime.now(UTC) - r["last_run"]).total_seconds() / 60
            when = f"running {minutes:.0f} min"
        table_rows.append(
            [r["account"], r["schedule"], when, c.get("backscatter"), c.get("acted"), nxt]
        )
    render.table("ndr-sweeper status", columns, table_rows)
    for r in rows:
        if r["error"]:
            render.say(f"{r['account']}: {r['error']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Copy the sample Maildir to a folder of the user's and sweep it: dry run, sweep, undo."""
    import shlex

    from ndr_sweeper import render
    from ndr_sweeper.demo import prepare, sample_messages
    from ndr_sweeper.paths import default_demo_dir

    target = Path(args.dir).expanduser() if args.dir else default_demo_dir()
    config = prepare(target)
    counts = {f: sum(len(v) for v in subs.values()) for f, subs in sample_messages().items()}
    render.say(
        f"A sample mailbox of our own messages is in {target / 'Maildir'} (a Maildir as mbsync "
        f"keeps one: INBOX {counts['INBOX']}, Sent {counts['Sent']}, Junk {counts['Junk']}), "
        f"with a config of its own, {config}. In INBOX: two bounces of mail you sent, five "
        "bounces of spam sent in your name (backscatter) from five kinds of mail server, a "
        "bounce that does not say what bounced, an auto-reply and ordinary mail."
    )
    tail = ["--config", str(config)]
    steps = (["sweep", "--dry-run", "-v"], ["sweep"], ["undo", "--last"])
    code = 0
    for step in steps:
        render.say("")
        render.say(f"$ ndr-sweeper {shlex.join(step + tail)}", soft_wrap=True)  # whole
        sub = build_parser().parse_args(step + tail)
        code = code or int(sub.func(sub))
    render.say("")
    render.say(
        "The backscatter went to Junk and came back; nothing else moved. What undo put back "
        "stays put back: a sweep of this copy leaves it alone from now on (`ndr-sweeper demo` "
        "makes a fresh copy). The runs so far: "
        f"`ndr-sweeper {shlex.join(['history', *tail])}`. Next: a config for your own mailbox "
        "(README, A first sweep)."
    )
    return code


# ---------------------------------------------------------------- parser


LOG_LEVELS = ["debug", "info", "warning", "error"]
LOG_LEVEL_HELP = "logging level (default: warning; info for `run`)"

# Examples shown under each command's --help.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "explain": [
        ("ndr-sweeper explain bounce.eml", "what one saved message is, and why"),
        ("ndr-sweeper explain ~/Mail/INBOX", "every message of a Maildir folder"),
        ("ndr-sweeper explain --config config.toml -", "a message on stdin, with your rules"),
    ],
    "demo": [("ndr-sweeper demo", "a dry run, a sweep and an undo on a sample mailbox")],
    "rules": [("ndr-sweeper rules check my.rules.toml", "is the file right, and what it does")],
    "sweep": [
        ("ndr-sweeper sweep --dry-run -v", "the exact plan; nothing changes on the server"),
        ("ndr-sweeper sweep", "move the backscatter to Junk"),
        ("ndr-sweeper sweep --account work --quiet", "one account, only errors (cron)"),
    ],
    "undo": [
        ("ndr-sweeper undo --last", "put back what the last sweep moved"),
        ("ndr-sweeper undo 20261203-091500-1234", "put back one run (see `history`)"),
    ],
    "history": [("ndr-sweeper history --account work --limit 5", "the last five runs of one")],
    "run": [("ndr-sweeper run", "sweep on each account's schedule; Ctrl-C or SIGTERM stops")],
    "status": [("ndr-sweeper status", "last run, what it found, next run, per account")],
    "login": [
        ("ndr-sweeper login work", "ask for the password, check it, keep it in the keyring"),
        ("pass show mail | ndr-sweeper login work --password-stdin", "from a script"),
        ("ndr-sweeper login gmail --no-browser", "OAuth2: print the sign-in address"),
    ],
    "logout": [("ndr-sweeper logout work", "forget the stored password or token")],
    "init": [
        ("ndr-sweeper init", "asks for your address and the rest"),
        ("ndr-sweeper init --email me@fastmail.com --non-interactive", "from a script"),
    ],
    "folders": [("ndr-sweeper folders work", "what the server has, and what the sweep uses")],
    "check": [("ndr-sweeper check", "everything the sweep needs, one line each, with the fix")],
    "report": [("ndr-sweeper report --days 90", "backscatter per week, who sends it")],
    "completion": [
        (
            "ndr-sweeper completion bash > ~/.local/share/bash-completion/completions/ndr-sweeper",
            "",
        ),
        ("ndr-sweeper completion fish > ~/.config/fish/completions/ndr-sweeper.fish", ""),
    ],
}


def _epilog(name: str) -> str | None:
    rows = EXAMPLES.get(name)
    if not rows:
        return None
    lines = ["examples:"]
    for command, what in rows:
        lines.append(f"  {command}")
        if what:
            lines.append(f"      {what}")
    return "\n".join(lines)


def _command(
    sub: Any, name: str, help: str, examples: str | None = None, **kw: Any
) -> argparse.ArgumentParser:
    """A sub-command's parser: its help line as the description, examples below the options,
    and --log-level accepted after the command name too."""
    sp: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=help[:1].upper() + help[1:] + ".",
        epilog=_epilog(examples or name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kw,
    )
    return sp


def _log_level_everywhere(p: argparse.ArgumentParser) -> None:
    """--log-level after the command name too (`ndr-sweeper sweep --log-level debug`), last in
    each command's options; not given there, the one before the command (or none) holds."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in {id(v): v for v in action.choices.values()}.values():
                sp.add_argument(
                    "--log-level",
                    default=argparse.SUPPRESS,
                    choices=LOG_LEVELS,
                    help=LOG_LEVEL_HELP,
                )
                _log_level_everywhere(sp)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ndr-sweeper",
        description="Move NDR backscatter (bounces of mail you never sent) out of your mailbox.",
        epilog=(
            "new here?\n"
            "  ndr-sweeper demo               a sweep of a sample mailbox, nothing of yours\n"
            "  ndr-sweeper init               set up your account, then a dry run\n"
            "  ndr-sweeper COMMAND --help     each command's options, with examples"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--log-level", default=None, choices=LOG_LEVELS, help=LOG_LEVEL_HELP)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sp = _command(sub, "explain", help="classify message files and show the verdict")
    sp.add_argument("paths", nargs="+", metavar="PATH", help="message file, '-', Maildir or mbox")
    sp.add_argument("--json", action="store_true", help="one JSON object per message on stdout")
    sp.add_argument(
        "--config", metavar="PATH", help="also show which of the account's rules would fire"
    )
    sp.add_argument(
        "--account", metavar="NAME", help="the account whose rules to use (default: the first)"
    )
    sp.set_defaults(func=cmd_explain)

    sp = _command(
        sub,
        "demo",
        help="sweep a sample Maildir that ships with ndr-sweeper: dry run, sweep, undo",
    )
    sp.add_argument(
        "--dir",
        metavar="DIR",
        help="where to put the sample and its config (default: "
        "$XDG_DATA_HOME/ndr-sweeper/demo; a folder of an earlier demo is replaced)",
    )
    sp.set_defaults(func=cmd_demo)

    sp = _command(sub, "rules", help="work with rule files")
    rsub = sp.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)
    rp = _command(
        rsub, "check", examples="rules", help="validate rule files and explain each rule in words"
    )
    rp.add_argument("files", nargs="+", metavar="FILE", help="a rules file (TOML)")
    rp.set_defaults(func=cmd_rules_check)

    def config_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config",
            metavar="PATH",
            help="config file (default: $XDG_CONFIG_HOME/ndr-sweeper/config.toml)",
        )

    sp = _command(sub, "sweep", help="sweep the accounts once")
    config_arg(sp)
    sp.add_argument(
        "--account", action="append", metavar="NAME", help="only this account (repeatable)"
    )
    sp.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    sp.add_argument(
        "--full", action="store_true", help="look at every message again, not only new ones"
    )
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")
    sp.add_argument("-v", "--verbose", action="store_true", help="one line per decision")
    sp.add_argument("-q", "--quiet", action="store_true", help="print only errors (for cron)")
    sp.set_defaults(func=cmd_sweep)

    sp = _command(sub, "undo", help="put every message of a run back where it was")
    config_arg(sp)
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run to undo (see `history`)")
    g.add_argument(
        "--last",
        action="store_true",
        help="the last sweep that left something to undo, on every account it touched",
    )
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")
    sp.set_defaults(func=cmd_undo)

    sp = _command(sub, "history", help="list runs with their counts")
    config_arg(sp)
    sp.add_argument("--account", metavar="NAME", help="only this account")
    sp.add_argument(
        "--limit", type=int, default=20, metavar="N", help="the last N runs (default 20)"
    )
    sp.add_argument("--all", action="store_true", help="also runs that found nothing new")
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")
    sp.set_defaults(func=cmd_history)

    sp = _command(sub, "run", help="sweep every enabled account on its schedule until stopped")
    config_arg(sp)
    sp.set_defaults(func=cmd_run)

    sp = _command(sub, "status", help="each account's last run, its counts, and the next run")
    config_arg(sp)
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")
    sp.set_defaults(func=cmd_status)

    sp = _command(sub, "login", help="store an account's password, or sign in with OAuth2")
    config_arg(sp)
    sp.add_argument("account", metavar="ACCOUNT", help="the account's name in the config")
    sp.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    sp.add_argument(
        "--device", action="store_true", help="OAuth2: sign in with a code on another device"
    )
    sp.add_argument(
        "--no-browser", action="store_true", help="OAuth2: print the sign-in URL, open no browser"
    )
    sp.add_argument("--no-verify", action="store_true", help="do not log in to check")
    sp.set_defaults(func=cmd_login)

    sp = _command(sub, "logout", help="forget an account's stored password and OAuth2 token")
    config_arg(sp)
    sp.add_argument("account", metavar="ACCOUNT", help="the account's name in the config")
    sp.set_defaults(func=cmd_logout)

    _first_hour_parsers(sub, config_arg)
    _log_level_everywhere(p)
    return p


def _first_hour_parsers(sub: Any, config_arg: Any) -> None:
    """init, folders, check, report and completion."""
    from ndr_sweeper.config import AUTH_METHODS, SECURITY_MODES

    sp = _command(sub, "init", help="set up an account from its email address, then dry-run it")
    config_arg(sp)
    sp.add_argument("--email", metavar="ADDRESS", help="the account's email address")
    sp.add_argument("--name", metavar="NAME", help="the account's name (default: the address)")
    sp.add_argument("--provider", metavar="KEY", help="use this provider's preset (e.g. gmail)")
    sp.add_argument("--host", metavar="HOST", help="IMAP server (default: found from the address)")
    sp.add_argument("--port", metavar="PORT", type=int, help="IMAP port (default: by security)")
    sp.add_argument("--security", choices=SECURITY_MODES, help="how to connect (default: tls)")
    sp.add_argument("--username", metavar="USER", help="login name (default: the address)")
    sp.add_argument("--auth", choices=AUTH_METHODS, help="how to sign in (default: by provider)")
    sp.add_argument(
        "--oauth2-provider", choices=["google", "microsoft"], help="whose OAuth2 to use"
    )
    sp.add_argument("--oauth2-client-id", metavar="ID", help="client id of your registered app")
    sp.add_argument("--password-command", metavar="CMD", help="a command that prints the password")
    sp.add_argument("--sent-folder", metavar="FOLDER", help="pin the Sent folder")
    sp.add_argument("--junk-folder", metavar="FOLDER", help="pin the Junk folder")
    sp.add_argument("--trash-folder", metavar="FOLDER", help="pin the Trash folder")
    sp.add_argument("--force", action="store_true", help="replace the config file (kept as .bak)")
    sp.add_argument(
        "--non-interactive", action="store_true", help="ask nothing: a missing answer is an error"
    )
    sp.add_argument("--no-dns", action="store_true", help="do not look up SRV or MX records")
    sp.add_argument("--no-login", action="store_true", help="do not offer to log in")
    sp.add_argument("--no-dry-run", action="store_true", help="do not end with a dry run")
    sp.set_defaults(func=cmd_init)

    sp = _command(
        sub, "folders", help="the server's folders, their counts, and which are Sent, Junk, Trash"
    )
    config_arg(sp)
    sp.add_argument("account", nargs="?", metavar="ACCOUNT", help="default: the first account")
    sp.add_argument(
        "--count",
        type=int,
        default=200,
        metavar="N",
        help="count the messages of at most N folders (default 200; 0: none)",
    )
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")
    sp.set_defaults(func=cmd_folders)

    for name, aliases in (("check", ["doctor"]),):
        sp = _command(
            sub,
            name,
            aliases=aliases,
            help="check config, secret, server, TLS, login, folders, state",
        )
        config_arg(sp)
        sp.add_argument(
            "--account", action="append", metavar="NAME", help="only this account (repeatable)"
        )
        sp.add_argument("--json", action="store_true", help="one JSON document on stdout")
        sp.set_defaults(func=cmd_check)

    sp = _command(sub, "report", help="backscatter moved per day, top bouncing servers, and more")
    config_arg(sp)
    sp.add_argument("--days", type=int, default=30, metavar="N", help="the last N days (30)")
    sp.add_argument(
        "--account", action="append", metavar="NAME", help="only this account (repeatable)"
    )
    sp.add_argument("--json", action="store_true", help="one JSON document on stdout")
    sp.set_defaults(func=cmd_report)

    sp = _command(sub, "completion", help="print the shell completion script")
    sp.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete for")
    sp.set_defaults(func=cmd_completion)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from ndr_sweeper import logs

    logs.setup_command(args.log_level)
    try:
        return int(args.func(args))
    except NdrSweeperError as exc:
        from ndr_sweeper import render

        render.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        from ndr_sweeper import render

        render.error("interrupted (Ctrl-C)")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
