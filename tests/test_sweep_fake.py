"""The whole CLI (sweep, re-run, undo --last) against the fake IMAP server, on servers with MOVE,
without MOVE (COPY + UIDPLUS) and without either: the baseline the hostile-server tests start
from, with no Dovecot needed.

What is asserted are the invariants: nothing is lost, nothing else moves, backscatter ends in
Junk exactly once where the server can move or expunge by UID, a re-run acts on nothing, and
undo brings every message back to INBOX.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import lab
from fakeimap import DEFAULT_CAPABILITIES, NO_MOVE, NO_MOVE_NO_UIDPLUS, FakeImapServer
from test_sweep_imap import fill, run_cli, write_config, xdg_dirs

SHAPES = {
    "move": DEFAULT_CAPABILITIES,
    "copy-uidplus": NO_MOVE,
    "copy-plain": NO_MOVE_NO_UIDPLUS,
}


def env_of(server: FakeImapServer) -> lab.LabEnv:
    return lab.LabEnv(server.host, server.port, 0, server.user, server.password, "")


def ids(server: FakeImapServer, folder: str) -> Counter[str | None]:
    return Counter(m.message_id for m in server.messages(folder))


class Case:
    def __init__(self, server: FakeImapServer, tmp: Path) -> None:
        self.server = server
        self.env = env_of(server)
        self.backscatter, self.keep, self.user_deleted = fill(self.env)
        self.xdg = xdg_dirs(tmp)
        self.config = write_config(tmp / "config.toml", self.env)

    def cli(self, *args: str):  # type: ignore[no-untyped-def]
        return run_cli(self.xdg, *args, "--config", str(self.config))

    def every_message_somewhere(self) -> None:
        """Nothing lost: each INBOX message is in INBOX or Junk (not flagged \\Deleted unless
        the user did it)."""
        where = ids(self.server, "INBOX") + ids(self.server, "Junk")
        for mid in self.keep | self.backscatter:
            assert where[mid] >= 1, f"{mid} was lost"
        for m in self.server.messages("INBOX"):
            if m.message_id != self.user_deleted and m.message_id in self.keep:
                assert "\\Deleted" not in m.flags, f"{m.message_id} kept but flagged \\Deleted"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_sweep_rerun_and_undo(fake_imap, tmp_path, shape) -> None:
    case = Case(fake_imap(capabilities=SHAPES[shape]), tmp_path)
    server = case.server
    inbox_before = ids(server, "INBOX")

    out = case.cli("sweep", "--json")
    assert out.returncode == 0, out.stderr + out.stdout
    acc = json.loads(out.stdout)["accounts"][0]
    assert acc["error"] is None and acc["backscatter"] == len(case.backscatter)
    case.every_message_somewhere()
    junk = ids(server, "Junk")
    assert set(junk) == case.backscatter, "Junk holds the backscatter and nothing else"
    inbox = ids(server, "INBOX")
    assert all(inbox[k] == 1 for k in case.keep), "everything else stays in INBOX, once"
    deleted = [m for m in server.messages("INBOX") if m.message_id == case.user_deleted]
    assert deleted and "\\Deleted" in deleted[0].flags, "the user's \\Deleted flag survives"
    if shape != "copy-plain":
        assert all(n == 1 for n in junk.values()), "backscatter in Junk exactly once"
        assert set(inbox) == case.keep, "no backscatter left in INBOX"

    snapshot = {f: ids(server, f) for f in ("INBOX", "Junk", "Sent", "Trash")}
    again = case.cli("sweep", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["accounts"][0]["acted"] == 0
    assert {f: ids(server, f) for f in snapshot} == snapshot, "a re-run changes nothing"

    undo = case.cli("undo", "--last")
    assert undo.returncode == 0, undo.stderr + undo.stdout
    back = ids(server, "INBOX")
    assert set(back) == set(inbox_before), "undo brings every message back to INBOX"
    if shape != "copy-plain":
        # Without UIDPLUS, whether Junk's copies are expunged depends on expunge_fallback.
        assert not set(ids(server, "Junk")) & case.backscatter, "undo empties Junk of them"
        assert back == inbox_before, "each exactly once"
