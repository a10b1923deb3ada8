"""Faster searching with long alternations of phrases.

CPython's ``re`` tries every branch of an alternation at every position of the
text.  :func:`fast` puts a lookahead of the possible first characters in front
(``(?=[abc])(?:...)``), so most positions are rejected by one character-class
test.  The first-character set is computed from the parsed pattern; when it
cannot be (a branch may start with any character) the pattern is used as is.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

try:  # the stdlib's pattern parser (private, present in every CPython 3.11+)
    _parser: Any = importlib.import_module("re._parser")
    _const: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover
    _parser = None
    _const = None

_LIMIT = 200  # more distinct first characters than this: not worth it
_CATEGORIES = {"CATEGORY_SPACE": " \t\n\r\f\v", "CATEGORY_DIGIT": "0123456789"}


def _first(items: Any) -> set[str] | None:
    """First characters of a parsed sequence; None when unknown/any."""
    out: set[str] = set()
    for op, av in items:
        name = str(op)
        if name == "AT":
            continue  # zero-width (^, \b): look at what follows
        if name == "LITERAL":
            out.add(chr(av))
            return out
        if name == "IN":
            for iop, iav in av:
                iname = str(iop)
                if iname == "LITERAL":
                    out.add(chr(iav))
                elif iname == "CATEGORY" and str(iav) in _CATEGORIES:
                    out.update(_CATEGORIES[str(iav)])
                elif iname == "RANGE":
                    lo, hi = iav
                    if hi - lo > _LIMIT:
                        return None
                    out.update(chr(c) for c in range(lo, hi + 1))
                else:
                    return None
            return out
        if name == "SUBPATTERN":
            sub = _first(av[-1])
            if sub is None:
                return None
            out |= sub
            if _nullable(av[-1]):
                continue
            return out
        if name == "BRANCH":
            nullable = False
            for branch in av[1]:
                sub = _first(branch)
                if sub is None:
                    return None
                out |= sub
                nullable = nullable or _nullable(branch)
            if nullable:
                continue
            return out
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            lo, _hi, sub_items = av
            sub = _first(sub_items)
            if sub is None:
                return None
            out |= sub
            if lo == 0 or _nullable(sub_items):
                continue
            return out
        return None
    return None  # the whole sequence may match empty


def _nullable(items: Any) -> bool:
    for op, av in items:
        name = str(op)
        if name == "AT":
            continue
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            if av[0] == 0 or _nullable(av[2]):
                continue
            return False
        if name == "SUBPATTERN":
            if _nullable(av[-1]):
                continue
            return False
        if name == "BRANCH":
            if any(_nullable(b) for b in av[1]):
                continue
            return False
        return False
    return True


def first_chars(pattern: str, flags: int = 0) -> set[str] | None:
    """The characters a match of ``pattern`` can start with; None when unknown."""
    if _parser is None or flags & re.IGNORECASE:
        return None
    try:
        chars = _first(_parser.parse(pattern, flags))
    except Exception:
        return None
    return chars if chars and len(chars) <= _LIMIT else None


def _klass(chars: set[str]) -> str:
    return "".join(sorted(re.escape(c) if c not in "\n" else "\\n" for c in chars))


def fast(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """``re.compile`` with a first-character lookahead when one can be computed."""
    compiled = re.compile(pattern, flags)
    chars = first_chars(pattern, flags)
    if chars is None:
        return compiled
    return re.compile(f"(?=[{_klass(chars)}])(?:{pattern})", flags)
