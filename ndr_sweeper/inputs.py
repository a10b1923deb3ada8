"""Read messages to explain: files, standard input, Maildir folders and mbox files."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Item:
    """One message to classify, or one input that could not be read."""

    file: str  # the path as given ("-" for standard input)
    raw: bytes | None
    index: int | None = None  # position inside an mbox file
    error: str | None = None


def _is_mbox(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(5)
    except OSError:
        return False
    return head == b"From "


def _read_mbox(path: Path, given: str) -> Iterator[Item]:
    """Split an mbox file on 'From ' lines (mboxrd/mboxo: unescape '>From ')."""
    data = path.read_bytes()
    chunks: list[bytes] = []
    current: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From ") and (not current or current[-1].strip() == b""):
            if current:
                chunks.append(b"".join(current))
            current = []
            continue
        if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
            line = line[1:]
        current.append(line)
    if current:
        chunks.append(b"".join(current))
    for i, chunk in enumerate(chunks):
        yield Item(given, chunk, index=i)


def _maildir_files(path: Path) -> list[Path]:
    subdirs = [path / "cur", path / "new"]
    if all(d.is_dir() for d in subdirs):
        return sorted(p for d in subdirs for p in d.iterdir() if p.is_file())
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def read_inputs(paths: list[str]) -> Iterator[Item]:
    """Yield every message named by the paths; unreadable inputs come back with an error."""
    for given in paths:
        if given == "-":
            yield Item("-", sys.stdin.buffer.read())
            continue
        path = Path(given)
        try:
            if path.is_dir():
                for p in _maildir_files(path):
                    try:
                        yield Item(str(p), p.read_bytes())
                    except OSError as exc:
                        yield Item(str(p), None, error=exc.strerror or str(exc))
            elif _is_mbox(path):
                yield from _read_mbox(path, given)
            else:
                yield Item(given, path.read_bytes())
        except OSError as exc:
            yield Item(given, None, error=exc.strerror or str(exc))
