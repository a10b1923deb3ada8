"""Server habits a default Dovecot does not show, on the scriptable fake server (issue 12): an
inbox listed as "Inbox", PERMANENTFLAGS without \\* (no keywords kept), no CONDSTORE, a
personal namespace under "INBOX." with "." as separator. A sweep, a re-run and an undo on
each: own bounces stay, backscatter goes to Junk and comes back, nothing else moves."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import bounces
from fakeimap import DEFAULT_CAPABILITIES, NO_MOVE_NO_UIDPLUS, FakeImapServer
from test_sweep_fake import env_of
from test_sweep_imap import run_cli, write_config, xdg_dirs

LAYOUTS: dict[str, dict[str, object]] = {
    "Inbox": {"folders": {"Inbox": (), "Sent": ("\\Sent",), "Junk": ("\\Junk",)}},
    "no-keywords": {"permanent_keywords": False},
    "no-condstore": {"capabilities": DEFAULT_CAPABILITIES - {"CONDSTORE"}},
    # names below the prefix (the fake server lists them as INBOX.Sent, INBOX.Junk, ...)
    "courier": {
        "folders": {"INBOX": (), "Sent": ("\\Sent",), "Junk": ("\\Junk",)},
        "delimiter": ".",
        "prefix": "INBOX.",
    },
}


def ids(server: FakeImapServer, folder: str) -> Counter[str | None]:
    return Counter(m.message_id for m in server.messages(folder) if "\\Deleted" not in m.flags)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_sweep_rerun_undo(fake_imap, tmp_path: Path, layout: str) -> None:
    options = LAYOUTS[layout]
    server = fake_imap(**options)
    inbox = next(n for n in server.folders if n.upper() == "INBOX")
    sent, junk = (
        next(n for n, f in server.folders.items() if flag in f.attrs)
        for flag in ("\\Sent", "\\Junk")
    )
    mine = bounces.new_id("mine")
    forged = [bounces.new_id("bs") for _ in range(2)]
    own = bounces.new_id("own")
    server.add(sent, bounces.original(mine))
    server.add(inbox, bounces.dsn(mine, bounce_id=own))
    for b in forged:
        server.add(inbox, bounces.dsn(bounces.new_id("forged"), bounce_id=b))
    server.add(inbox, bounces.ordinary())
    before = ids(server, inbox)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env_of(server))
    out = run_cli(xdg, "sweep", "--json", "--config", str(cfg))
    assert out.returncode == 0, out.stderr + out.stdout
    acc = json.loads(out.stdout)["accounts"][0]
    assert (acc["own"], acc["backscatter"], acc["acted"]) == (1, 2, 2), acc
    assert ids(server, junk) == Counter(forged)
    assert own in ids(server, inbox)
    again = json.loads(run_cli(xdg, "sweep", "--json", "--config", str(cfg)).stdout)
    assert again["accounts"][0]["acted"] == 0
    undo = run_cli(xdg, "undo", "--last", "--config", str(cfg))
    assert undo.returncode == 0, undo.stderr
    assert ids(server, inbox) == before and not ids(server, junk)
    # put back stays put back (with no keywords kept, the journal alone remembers it)
    final = json.loads(run_cli(xdg, "sweep", "--json", "--full", "--config", str(cfg)).stdout)
    assert final["accounts"][0]["acted"] == 0
    assert ids(server, inbox) == before


def test_keywords_wanted_where_the_server_keeps_none_are_refused_in_one_line(
    fake_imap, tmp_path: Path
) -> None:
    """action = "flag" (and the keyword fallback) need keywords; a server whose PERMANENTFLAGS
    have no \\* keeps none: the sweep says so instead of flagging nothing and calling it done."""
    for keys, caps in (({"action": "flag"}, DEFAULT_CAPABILITIES),
                       ({"expunge_fallback": "keyword"}, NO_MOVE_NO_UIDPLUS)):  # fmt: skip
        server = fake_imap(permanent_keywords=False, capabilities=caps)
        server.add("INBOX", bounces.dsn(bounces.new_id("forged")))
        xdg = xdg_dirs(tmp_path / str(len(keys)) / next(iter(keys)))
        cfg = write_config(tmp_path / f"{next(iter(keys))}.toml", env_of(server), **keys)
        out = run_cli(xdg, "sweep", "--json", "--config", str(cfg))
        acc = json.loads(out.stdout)["accounts"][0]
        assert out.returncode == 1 and acc["acted"] == 0, acc
        assert any("does not keep the keyword" in n for n in acc["notes"]), acc["notes"]
        assert not ids(server, "Junk")
