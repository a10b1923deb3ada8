"""`ndr-sweeper completion bash|zsh|fish`: scripts made from the CLI's own parser. Each is
checked by its shell (syntax, then real completions) when that shell is installed; the tree
they are made from is checked against build_parser itself."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from ndr_sweeper import completion
from ndr_sweeper.cli import build_parser

from test_sweep_imap import REPO


def script(shell: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ndr_sweeper", "completion", shell],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_tree_is_the_parser() -> None:
    root = completion.walk(build_parser())
    names = {c.name: c for c in root.commands}
    for expected in ("sweep", "undo", "init", "folders", "check", "report", "completion"):
        assert expected in names
    assert names["check"].aliases == ["doctor"]
    assert [c.name for c in names["rules"].commands] == ["check"]
    sweep = {f: o for o in names["sweep"].options for f in o.flags}
    assert not sweep["--dry-run"].takes_value and sweep["--account"].takes_value
    assert sweep["--config"].files
    init = {f: o for o in names["init"].options for f in o.flags}
    assert init["--security"].choices == ["tls", "starttls", "plain"]
    assert names["explain"].files and not names["sweep"].files


def test_a_new_option_completes_without_touching_the_generator() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    sub.choices["sweep"].add_argument("--brand-new", choices=["x", "y"])
    for shell in completion.SHELLS:
        text = completion.script(shell, parser)
        assert "brand-new" in text and "x y" in text


def _run(shell: str, code: str) -> str:
    result = subprocess.run([shell, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash(tmp_path) -> None:
    path = tmp_path / "c.bash"
    path.write_text(script("bash"))
    subprocess.run(["bash", "-n", str(path)], check=True, timeout=60)
    (tmp_path / "some.toml").write_text("")
    code = f"""cd {tmp_path}; source {path}
t() {{ COMP_WORDS=("$@"); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); _ndr_sweeper; echo "${{COMPREPLY[*]}}"; }}
t ndr-sweeper ''
t ndr-sweeper sw
t ndr-sweeper sweep --d
t ndr-sweeper --log-level debug init --security ''
t ndr-sweeper rules ''
t ndr-sweeper sweep --config so
t ndr-sweeper sweep --account work --js
t ndr-sweeper doctor --j
"""
    top, sw, dry, sec, rules, cfg, after_value, doctor = _run("bash", code).splitlines()
    assert {"sweep", "init", "folders", "check", "doctor", "report", "completion"} <= set(
        top.split()
    )
    assert sw == "sweep" and dry == "--dry-run" and sec == "tls starttls plain"
    assert rules.split()[0] == "check" and cfg == "some.toml"
    assert after_value == "--json" and doctor == "--json"


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh(tmp_path) -> None:
    path = tmp_path / "_ndr-sweeper"
    path.write_text(script("zsh"))
    subprocess.run(["zsh", "-n", str(path)], check=True, timeout=60)
    # The completion system's functions stand in as printers, so the script runs plainly.
    code = f"""
_describe() {{ local x; for x in "${{(@P)4}}"; do print -rn -- "${{x%%:*}} "; done; print }}
compadd() {{ shift; print -r -- "$*" }}
_files() {{ print -r -- FILES }}
_message() {{ print -r -- VALUE }}
compdef() {{ }}
source {path}
t() {{ words=("$@"); CURRENT=${{#words}}; _ndr_sweeper }}
t ndr-sweeper ''
t ndr-sweeper sweep --
t ndr-sweeper init --security ''
t ndr-sweeper report --days ''
"""
    top, sweep, sec, days = _run("zsh", code).splitlines()
    assert {"sweep", "init", "check", "doctor", "report"} <= set(top.split())
    assert "--dry-run" in sweep.split() and sec == "tls starttls plain" and days == "VALUE"


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish(tmp_path) -> None:
    path = tmp_path / "ndr-sweeper.fish"
    path.write_text(script("fish"))
    subprocess.run(["fish", "-n", str(path)], check=True, timeout=60)

    def complete(line: str) -> list[str]:
        out = _run("fish", f"source {path}; complete -C '{line}'")
        return [row.split("\t")[0] for row in out.splitlines()]

    assert {"sweep", "init", "check", "doctor", "report"} <= set(complete("ndr-sweeper "))
    assert complete("ndr-sweeper rules ") == ["check"]
    # "check" under rules is not the top-level check: no --account there
    assert "--account" not in complete("ndr-sweeper rules check --")
    assert "--account" in complete("ndr-sweeper check --")
    assert complete("ndr-sweeper init --security ") == ["plain", "starttls", "tls"]
    assert "--dry-run" in complete("ndr-sweeper sweep --account work --")


def test_unknown_shell_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ndr_sweeper", "completion", "tcsh"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 2 and "invalid choice" in result.stderr
