"""Faster searching with long alternations of phrases.

CPython's ``re`` tries every branch of an alternation at every position of the
text.  :func:`fast` puts a lookahead of the possible first characters in front
(``(?=[abc])(?:...)``), so most positions are rejected by one character-class
test.  The first-character set is computed from the parsed pattern; when it
cannot be (a branch may start with any character) the pattern is used as is.

:class:`Phrases` (what :func:`fast` returns) also knows the pattern's *anchors*:
literal strings one of which every match contains (for
``user unknown|no such (?:user|mailbox)`` they are ``"user unknown"`` and
``"no such "``).  Most texts contain none of them, and ``in`` on a
string is about a hundred times faster than a regex search, so the search is
only run when an anchor occurs.  Exact: a match is never missed.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
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


_MIN_ANCHOR = 3  # shorter literals occur in nearly every text: no use as a pre-check


def _seq_anchors(items: Any) -> list[str] | None:
    """Literals one of which every match of a parsed sequence contains; None: unknown."""
    best: list[str] | None = None

    def consider(cand: list[str] | None) -> None:
        nonlocal best
        if not cand or min(len(c) for c in cand) < _MIN_ANCHOR:
            return
        if best is None or (min(len(c) for c in cand), -len(cand)) > (
            min(len(c) for c in best),
            -len(best),
        ):
            best = cand

    run: list[str] = []
    for op, av in items:
        name = str(op)
        if name == "LITERAL":
            run.append(chr(av))
            continue
        consider(["".join(run)] if run else None)
        run = []
        if name == "SUBPATTERN":
            if not av[1] & _const.SRE_FLAG_IGNORECASE:  # (?i:...) matches other cases
                consider(_seq_anchors(av[-1]))
        elif name == "BRANCH":
            consider(_branch_anchors(av[1]))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") and av[0] >= 1:
            consider(_seq_anchors(av[2]))
        # anything else (classes, lookarounds, optional parts) only ends the run
    consider(["".join(run)] if run else None)
    return best


def _branch_anchors(branches: Any) -> list[str] | None:
    out: list[str] = []
    for branch in branches:
        sub = _seq_anchors(branch)
        if sub is None:
            return None
        out.extend(c for c in sub if c not in out)
    return out


def anchors(pattern: str, flags: int = 0) -> tuple[str, ...] | None:
    """Literal strings one of which every match of ``pattern`` contains.

    None when they cannot be worked out (IGNORECASE, a branch without a literal of
    at least three characters, ...): then there is no pre-check.
    """
    if _parser is None or flags & (re.IGNORECASE | re.VERBOSE):
        return None
    try:
        parsed = _parser.parse(pattern, flags)
        if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):  # a global (?i) / (?x)
            return None
        found = _seq_anchors(parsed)
    except Exception:
        return None
    if not found:
        return None
    # a literal that contains another one is redundant: the shorter one is tested
    found = [a for a in found if not any(b != a and b in a for b in found)]
    return tuple(found)


class Phrases:
    """A compiled pattern whose :meth:`search` first tests the literal anchors."""

    __slots__ = ("anchors", "pattern", "regex")

    def __init__(self, regex: re.Pattern[str], anchors: tuple[str, ...] | None) -> None:
        self.regex = regex
        self.pattern = regex.pattern
        self.anchors = anchors

    def search(self, text: str) -> re.Match[str] | None:
        if self.anchors is not None:
            for a in self.anchors:
                if a in text:
                    break
            else:
                return None
        return self.regex.search(text)


def fast(pattern: str, flags: int = 0) -> Phrases:
    """Compile ``pattern`` with a first-character lookahead and literal anchors
    (each when one can be computed)."""
    found = anchors(pattern, flags)
    chars = first_chars(pattern, flags)
    if chars is None:
        return Phrases(re.compile(pattern, flags), found)
    return Phrases(re.compile(f"(?=[{_klass(chars)}])(?:{pattern})", flags), found)


_NESTED = ("SUBPATTERN", "MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT", "ASSERT", "ASSERT_NOT")


def _chars(items: Any, out: set[str]) -> set[str]:
    """Every character a parsed pattern names (literals, class members, ranges)."""
    for op, av in items:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL"):
            out.add(chr(av))
        elif name == "RANGE":
            out.update(chr(c) for c in range(av[0], min(av[1], av[0] + 0x400) + 1))
        elif name == "IN":
            _chars(av, out)
        elif name == "BRANCH":
            for b in av[1]:
                _chars(b, out)
        elif name in _NESTED:
            _chars(av[-1], out)
        elif name == "ATOMIC_GROUP":
            _chars(av, out)
    return out


# Characters where IGNORECASE matching and str.lower() disagree for Latin patterns:
# U+0130 lowers to two characters; dotless i, long s, micro and mu are case-equivalent
# to i, s, mu for the re module (re._casefix) but lower() leaves them as they are.
FOLD_EXCEPTIONS = re.compile("[\u0130\u0131\u017f\u00b5\u03bc]")


class Caseless:
    """A case-insensitive search that is fast on text without odd case folding.

    The pattern is written in lower case.  The text is lower-cased and searched
    with :func:`fast` (anchors, no IGNORECASE: long IGNORECASE alternations are
    slow); only when that finds a match is the IGNORECASE pattern run on the text
    itself, so the returned match is the same as ``re.search(pattern, text, re.I)``.
    That pre-check is exact for ASCII text, and for other text when the pattern is
    Latin and the text has none of the few characters that ``lower()`` folds
    differently from ``re`` (:data:`FOLD_EXCEPTIONS`); otherwise the IGNORECASE
    pattern is run directly.
    """

    __slots__ = ("latin", "lower", "pattern", "regex")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        chars = _chars(_parser.parse(pattern, flags), set()) if _parser is not None else None
        if chars is not None and any(c.lower() != c for c in chars):
            raise ValueError(f"Caseless pattern must be lower-case: {pattern!r}")
        self.pattern = pattern
        self.regex = re.compile(pattern, flags | re.IGNORECASE)
        self.lower = fast(pattern, flags)
        self.latin = chars is not None and all(ord(c) < 0x250 for c in chars)

    def search(self, text: str) -> re.Match[str] | None:
        if (
            text.isascii() or (self.latin and FOLD_EXCEPTIONS.search(text) is None)
        ) and self.lower.search(text.lower()) is None:
            return None
        return self.regex.search(text)


def trie_pattern(words: Iterable[str]) -> str:
    """A regex that finds whether any of ``words`` (literals) occurs, factored by common
    prefixes: ``deliver|delivery|delay`` -> ``del(?:ay|iver)`` (a word that another one starts
    with is enough).  On short texts it is about three times faster than
    ``any(w in text for w in words)`` over ~100 words, and than a plain alternation."""
    root: dict[str, Any] = {}
    for word in words:
        if not word:
            raise ValueError("an empty word matches everywhere")
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # a word ends here

    def build(node: dict[str, Any]) -> str:
        if "" in node:
            return ""  # a word ends here: what longer words add is not needed
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items())]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return build(root)
