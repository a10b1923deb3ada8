"""``ndr-sweeper demo``: a sweep before any configuration.

The package ships a small mailbox of our own messages (``examples/Maildir``: INBOX, Sent and
Junk, each message a ``.eml`` file under ``cur/`` (read) or ``new/`` (unread)). :func:`prepare`
copies it into a folder of the user's (``$XDG_DATA_HOME/ndr-sweeper/demo`` by default) as a
real Maildir laid out the way mbsync lays one out (``INBOX/``, ``Sent/``, ``Junk/``; file names
with ``,U=<n>`` and the ``:2,`` flags), each file dated by its Date header, and writes a config
of its own next to it (``state_dir`` inside the folder, so the demo's journal never mixes with
the user's). The shipped copy is never written to; a folder that is not one of ours is never
removed.
"""

from __future__ import annotations

import email.utils
import os
import re
import shutil
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from .errors import ConfigError

MARKER: Final = ".ndr-sweeper-demo"
FOLDERS: Final = ("INBOX", "Sent", "Junk")
CONFIG: Final = """\
# The configuration of `ndr-sweeper demo`: one account on the sample Maildir next to this file.
# Its journal and state stay in this folder, apart from yours.
state_dir = "state"

[[accounts]]
name = "demo"
maildir = "Maildir"     # instead of host: a local Maildir, as mbsync or offlineimap keep one
min_age = "0s"          # the sample's mail is old enough; a real account waits 15 minutes
"""
_DATE: Final = re.compile(rb"^Date:[ \t]*([^\r\n]*)", re.MULTILINE | re.IGNORECASE)


def sample() -> Traversable:
    """The sample mailbox as shipped in the package."""
    return resources.files("ndr_sweeper") / "examples" / "Maildir"


def sample_messages() -> dict[str, dict[str, list[Traversable]]]:
    """folder -> "cur"/"new" -> the shipped ``.eml`` files, by name."""
    out: dict[str, dict[str, list[Traversable]]] = {}
    root = sample()
    for folder in FOLDERS:
        out[folder] = {}
        for sub in ("cur", "new"):
            d = root / folder / sub
            files = [f for f in d.iterdir() if f.name.endswith(".eml")] if d.is_dir() else []
            out[folder][sub] = sorted(files, key=lambda f: f.name)
    return out


def _date_of(raw: bytes) -> float | None:
    head = raw.split(b"\n\n", 1)[0]
    m = _DATE.search(head)
    if m is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(m.group(1).decode("ascii", "replace")).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def prepare(target: Path) -> Path:
    """A fresh copy of the sample as a Maildir in ``target/Maildir`` and its config in
    ``target/config.toml`` (returned). A ``target`` left by an earlier demo is replaced;
    anything else that is there is a ConfigError, and is left alone."""
    target = target.expanduser()
    if target.exists() or target.is_symlink():
        if not (target / MARKER).is_file() or target.is_symlink():
            raise ConfigError(
                f"{target} exists and is not a folder `ndr-sweeper demo` made: name an empty "
                "or new folder with --dir"
            )
        shutil.rmtree(target)
    try:
        target.mkdir(parents=True, mode=0o700)
        (target / MARKER).write_text("made by `ndr-sweeper demo`; it replaces this folder\n")
        maildir = target / "Maildir"
        for folder, subs in sample_messages().items():
            for sub in ("cur", "new", "tmp"):
                (maildir / folder / sub).mkdir(parents=True, mode=0o700)
            uid = 0
            for sub in ("cur", "new"):
                for item in subs[sub]:
                    uid += 1
                    raw = item.read_bytes()
                    stem = item.name.removesuffix(".eml")
                    base = f"1763000000.M{uid}P1.sample-{stem},U={uid}"
                    name = f"{base}:2,S" if sub == "cur" else base
                    path = maildir / folder / sub / name
                    path.write_bytes(raw)
                    when = _date_of(raw)
                    if when is not None:
                        os.utime(path, (when, when))
        config = target / "config.toml"
        config.write_text(CONFIG, encoding="utf-8")
        config.chmod(0o600)
    except OSError as exc:
        raise ConfigError(f"cannot make the demo in {target}: {exc.strerror or exc}") from None
    return config
