"""``ndr-sweeper completion bash|zsh|fish``: shell completion made from the CLI's own parser.

:func:`walk` reads the argparse tree (commands, their aliases and sub-commands, options,
which options take a value, their choices, which values are files); one generator per shell
turns it into a script. Nothing is hand-written per command, so a new option completes as
soon as it is in ``build_parser``. Standard library only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

SHELLS: Final = ("bash", "zsh", "fish")
PROG: Final = "ndr-sweeper"
_FILE_METAVARS: Final = ("PATH", "FILE", "CMD")


@dataclass
class Option:
    flags: list[str]
    help: str
    takes_value: bool
    choices: list[str] = field(default_factory=list)
    files: bool = False  # its value is a file name


@dataclass
class Command:
    name: str
    help: str = ""
    aliases: list[str] = field(default_factory=list)
    options: list[Option] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    files: bool = False  # its positional arguments are file names


def _help(action: argparse.Action) -> str:
    text = action.help if isinstance(action.help, str) else ""
    return "" if text == argparse.SUPPRESS else " ".join(text.replace("%(prog)s", PROG).split())


def walk(parser: argparse.ArgumentParser, name: str = PROG, help: str = "") -> Command:
    """The command tree of ``parser``."""
    cmd = Command(name, help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: _help(a) for a in action._choices_actions}
            seen: dict[int, Command] = {}
            for sub_name, sub in action.choices.items():
                if id(sub) in seen:
                    seen[id(sub)].aliases.append(sub_name)
                    continue
                child = walk(sub, sub_name, helps.get(sub_name, ""))
                seen[id(sub)] = child
                cmd.commands.append(child)
        elif action.option_strings:
            metavar = action.metavar if isinstance(action.metavar, str) else ""
            cmd.options.append(
                Option(
                    flags=list(action.option_strings),
                    help=_help(action),
                    takes_value=action.nargs != 0,
                    choices=[str(c) for c in action.choices or ()],
                    files=metavar in _FILE_METAVARS,
                )
            )
        else:
            metavar = action.metavar if isinstance(action.metavar, str) else ""
            cmd.files = cmd.files or metavar in _FILE_METAVARS
    return cmd


def _paths(cmd: Command, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    """Every command with the words that lead to it (aliases are paths of their own)."""
    out = [(prefix, cmd)]
    for child in cmd.commands:
        for word in [child.name, *child.aliases]:
            out += _paths(child, (*prefix, word))
    return out


def _value_flags(root: Command) -> list[str]:
    return sorted(
        {f for _p, c in _paths(root) for o in c.options if o.takes_value for f in o.flags}
    )


# bash and zsh share the syntax of `case`: the loop that follows the command words, and the
# completion of an option's value, are written once for both.


def _follow_words(root: Command, paths: list[tuple[tuple[str, ...], Command]], w: str) -> list[str]:
    """The rest of the loop over the words typed so far (after ``w`` is set; *w* is how the
    shell reads it): skip options and their values, follow sub-command names into
    ``cmdpath``."""
    return [
        f"        case {w} in",
        f"            {'|'.join(_value_flags(root))}) ((i++)); continue ;;",
        "            -*) continue ;;",
        "        esac",
        '        case "$cmdpath $w" in',
        "            " + "|".join(f'"{" ".join(("", *p))}"' for p, _c in paths if p) + ")",
        '                cmdpath="$cmdpath $w" ;;',
        "        esac",
        "    done",
    ]


def _value_cases(
    paths: list[tuple[tuple[str, ...], Command]],
    choices: Callable[[str], str],
    files: str,
    other: str,
) -> list[str]:
    """``case "$cmdpath|$prev"``: the value after an option that takes one is completed from
    its choices (*choices* of them, space-separated), as a file name, or not at all."""
    lines = ['    case "$cmdpath|$prev" in']
    for p, c in paths:
        key = " ".join(("", *p))
        for o in c.options:
            if o.takes_value:
                pattern = "|".join(f'"{key}|{f}"' for f in o.flags)
                reply = choices(" ".join(o.choices)) if o.choices else files if o.files else other
                lines.append(f"        {pattern}) {reply}; return ;;")
    return [*lines, "    esac"]


# --------------------------------------------------------------------------- bash


def bash(root: Command) -> str:
    func = "_" + PROG.replace("-", "_")
    paths = _paths(root)
    lines = [
        f"# bash completion for {PROG}; generated by `{PROG} completion bash`.",
        f'# Load it with: eval "$({PROG} completion bash)", or save it as',
        f"# ~/.local/share/bash-completion/completions/{PROG}",
        f"{func}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local cmdpath="" i w',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        w="${COMP_WORDS[i]}"',
        *_follow_words(root, paths, '"$w"'),
    ]
    lines += _value_cases(
        paths,
        lambda words: f'COMPREPLY=($(compgen -W "{words}" -- "$cur"))',
        'COMPREPLY=($(compgen -f -- "$cur"))',
        "COMPREPLY=()",
    )
    lines += ['    local words=""', '    case "$cmdpath" in']
    for p, c in paths:
        words = [w for child in c.commands for w in (child.name, *child.aliases)]
        words += [f for o in c.options for f in o.flags]
        lines.append(f'        "{" ".join(("", *p))}") words="{" ".join(words)}" ;;')
    lines += ["    esac", '    if [[ "$cur" != -* ]]; then', '        case "$cmdpath" in']
    file_paths = [" ".join(("", *p)) for p, c in paths if c.files]
    if file_paths:
        pattern = "|".join(f'"{k}"' for k in file_paths)
        lines.append(f'            {pattern}) COMPREPLY=($(compgen -f -- "$cur")); return ;;')
    lines += [
        "        esac",
        "    fi",
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        f"complete -o filenames -F {func} {PROG}",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- zsh


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def zsh(root: Command) -> str:
    func = "_" + PROG.replace("-", "_")
    paths = _paths(root)
    lines = [
        f"#compdef {PROG}",
        f"# zsh completion for {PROG}; generated by `{PROG} completion zsh`.",
        f"# Save it as _{PROG} in a directory of $fpath, or: source <({PROG} completion zsh)",
        f"{func}() {{",
        "    local cur=${words[CURRENT]} prev=${words[CURRENT-1]} cmdpath='' w i",
        "    local -a cands",
        "    for ((i = 2; i < CURRENT; i++)); do",
        "        w=${words[i]}",
        *_follow_words(root, paths, "$w"),
    ]
    lines += _value_cases(paths, lambda words: f"compadd -- {words}", "_files", "_message value")
    lines += ['    case "$cmdpath" in']
    for p, c in paths:
        cands = [f"{w}:{child.help}" for child in c.commands for w in (child.name, *child.aliases)]
        cands += [f"{f}:{o.help}" for o in c.options for f in o.flags]
        quoted = " ".join(_zsh_quote(x) for x in cands)  # names hold no ":"; the first splits
        files = "; [[ $cur != -* ]] && _files" if c.files else ""
        lines.append(f'        "{" ".join(("", *p))}") cands=({quoted}){files} ;;')
    lines += [
        "    esac",
        "    _describe -t commands 'command or option' cands",
        "}",
        f'if [[ $zsh_eval_context[-1] == loadautofunc ]]; then {func} "$@"; '
        f"else compdef {func} {PROG}; fi",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- fish


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish(root: Command) -> str:
    func = "__" + PROG.replace("-", "_")
    paths = _paths(root)
    known = " ".join(_fish_quote(" ".join(("root", *p))) for p, _c in paths if p)
    lines = [
        f"# fish completion for {PROG}; generated by `{PROG} completion fish`.",
        f"# Save it as ~/.config/fish/completions/{PROG}.fish",
        f"function {func}_path",
        "    set -l words (commandline -opc)",
        "    set -e words[1]",
        "    set -l cmdpath root",
        "    set -l skip 0",
        "    for w in $words",
        "        if test $skip = 1",
        "            set skip 0",
        "            continue",
        "        end",
        "        switch $w",
        f"            case {' '.join(_value_flags(root))}",
        "                set skip 1",
        "            case '-*'",
        "            case '*'",
        f'                if contains -- "$cmdpath $w" {known}',
        '                    set cmdpath "$cmdpath $w"',
        "                end",
        "        end",
        "    end",
        "    echo $cmdpath",
        "end",
        f"function {func}_at",
        f'    test ({func}_path) = "$argv"',
        "end",
        f"complete -c {PROG} -f",
    ]
    for p, c in paths:
        cond = _fish_quote(f"{func}_at {' '.join(('root', *p))}")
        for child in c.commands:
            for w in (child.name, *child.aliases):
                lines.append(f"complete -c {PROG} -n {cond} -a {w} -d {_fish_quote(child.help)}")
        for o in c.options:
            parts = [f"complete -c {PROG} -n {cond}"]
            for f in o.flags:
                parts.append(f"-l {f[2:]}" if f.startswith("--") else f"-s {f[1:]}")
            if o.choices:
                parts.append(f"-x -a {_fish_quote(' '.join(o.choices))}")
            elif o.files:
                parts.append("-r -F")
            elif o.takes_value:
                parts.append("-x")
            if o.help:
                parts.append(f"-d {_fish_quote(o.help)}")
            lines.append(" ".join(parts))
        if c.files:
            lines.append(f"complete -c {PROG} -n {cond} -F")
    return "\n".join(lines) + "\n"


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    root = walk(parser)
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](root)
