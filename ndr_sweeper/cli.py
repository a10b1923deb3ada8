"""Command line: parses arguments, wires the pieces together, maps errors to exit codes.

Heavy modules (imapclient, rich, keyring, apscheduler) are imported inside the commands
that need them, so `ndr-sweeper --version` and a no-op sweep start fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ndr_sweeper import __version__
from ndr_sweeper.errors import NdrSweeperError

log = logging.getLogger("ndr_sweeper")


# ---------------------------------------------------------------- commands


def cmd_explain(args: argparse.Namespace) -> int:
    from ndr_sweeper import render
    from ndr_sweeper.classify import classify
    from ndr_sweeper.inputs import read_inputs

    failures = 0
    out = None if args.json else render.console()
    for item in read_inputs(args.paths):
        if item.raw is None:
            render.error(f"{item.file}: cannot read: {item.error}")
            failures += 1
            continue
        verdict = classify(item.raw)
        if args.json:
            obj: dict[str, object] = {"file": item.file}
            if item.index is not None:
                obj["index"] = item.index
            obj.update(verdict.to_dict())
            render.json_line(obj)
        else:
            name = item.file if item.index is None else f"{item.file}#{item.index}"
            render.explain(name, verdict, out=out)
    return 1 if failures else 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ndr-sweeper",
        description="Move NDR backscatter (bounces of mail you never sent) out of your mailbox.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="logging level (default: warning; info for `run`)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sp = sub.add_parser("explain", help="classify message files and show the verdict")
    sp.add_argument("paths", nargs="+", metavar="PATH", help="message file, '-', Maildir or mbox")
    sp.add_argument("--json", action="store_true", help="one JSON object per message on stdout")
    sp.set_defaults(func=cmd_explain)
    return p


def _setup_logging(level: str | None) -> None:
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(getattr(logging, (level or "warning").upper()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    _setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except NdrSweeperError as exc:
        from ndr_sweeper import render

        render.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
