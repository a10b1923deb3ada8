"""`--help` of every command: a description, help for every option and argument, examples, and
--log-level accepted before or after the command name."""

from __future__ import annotations

import argparse

import pytest

from ndr_sweeper import cli


def _commands(p: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sp in action.choices.items():
                if id(sp) in seen:  # an alias (doctor) of a command already listed
                    continue
                seen.add(id(sp))
                yield (*prefix, name), sp
                yield from _commands(sp, (*prefix, name))


COMMANDS = list(_commands(cli.build_parser()))


def test_every_command_is_listed() -> None:
    names = {" ".join(path) for path, _sp in COMMANDS}
    assert {"sweep", "undo", "run", "init", "check", "rules check", "completion"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=" ".join)
def test_help_has_description_examples_and_help_for_every_argument(path, capsys) -> None:
    sp = dict(COMMANDS)[path]
    undocumented = [
        a.dest for a in sp._actions if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert not undocumented, f"{' '.join(path)}: no help for {undocumented}"
    assert sp.description and sp.description.endswith("."), sp.description
    with pytest.raises(SystemExit) as exc:
        cli.main([*path, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:\n  ndr-sweeper " in out or "pass show" in out, out


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["sweep", "--log-level", "debug"], "debug"),
        (["--log-level", "info", "sweep"], "info"),
        (["--log-level", "info", "sweep", "--log-level", "error"], "error"),
        (["sweep"], None),
        (["rules", "check", "x.toml", "--log-level", "warning"], "warning"),
    ],
)
def test_log_level_before_or_after_the_command(argv, level) -> None:
    assert cli.build_parser().parse_args(argv).log_level == level


def test_top_level_help_says_where_to_start(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "ndr-sweeper demo" in out and "ndr-sweeper init" in out
