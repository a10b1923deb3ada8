"""The sweep on the folder layouts hosted mail uses, on a real Dovecot set up like each
provider (tests/lab.py LAYOUTS), with a Sent folder that starts later than the inbox: a sweep,
a re-run and an undo, counting own bounces junked (must be 0), bounces too old to check
(reported, kept), backscatter junked, and messages in Gmail's All Mail touched (must be 0)."""

from __future__ import annotations

import json
import re

import pytest

import bounces
import lab
from test_sweep_imap import run_cli, write_config, xdg_dirs

pytestmark = pytest.mark.imap

# layout -> (Sent folder, Junk folder) as the server names them
FOLDERS = {
    "default": ("Sent", "Junk"),
    "courier": ("INBOX.Sent", "INBOX.Junk"),
    "gmail": ("[Gmail]/Sent Mail", "[Gmail]/Spam"),
    "microsoft": ("Sent Items", "Junk Email"),
    "no-special-use": ("Gesendet", "Spam"),
    # habits of other servers, on the default layout: capabilities hidden by the lab, or
    # answers rewritten by the test proxy (tests/imapproxy.py)
    "no-condstore": ("Sent", "Junk"),
    "titlecase-inbox": ("Sent", "Junk"),  # lists INBOX as "Inbox"
    "no-keywords": ("Sent", "Junk"),
}
_INBOX_LISTED = re.compile(r'^(\* LIST \([^)]*\) (?:"[^"]*"|NIL) )"?INBOX"?$', re.I)
_ANY_KEYWORD = re.compile(r"(\[PERMANENTFLAGS \([^)]*?) ?\\\*\)")


def _server_habit(request, server, layout: str):  # type: ignore[no-untyped-def]
    """The port the sweep talks to: the server's own, or a proxy that makes Dovecot list its
    inbox as "Inbox", or keep no keywords (PERMANENTFLAGS without \\*)."""
    if layout not in ("titlecase-inbox", "no-keywords"):
        return None
    proxy = request.getfixturevalue("imap_proxy")(server)
    seen: list[str] = []

    def rewrite(line: str) -> str:
        pattern, into = (
            (_INBOX_LISTED, r"\1Inbox") if layout == "titlecase-inbox" else (_ANY_KEYWORD, r"\1)")
        )
        new = pattern.sub(into, line)
        if new != line:
            seen.append(new)
        return new

    commands = "LIST" if layout == "titlecase-inbox" else ("SELECT", "EXAMINE")
    proxy.rewrite(commands, rewrite, times=None)
    request.addfinalizer(lambda: seen or pytest.fail(f"{layout}: the proxy rewrote nothing"))
    return proxy.port


def _ids(client, folder: str) -> list[str | None]:  # type: ignore[no-untyped-def]
    return sorted((e.message_id or "") for e in lab.read_folder(client, folder))


@pytest.mark.parametrize("layout", list(FOLDERS))
def test_sweep_rerun_undo_on_each_layout(
    request, dovecot_factory, new_imap_user, tmp_path, layout
) -> None:
    hide = ("CONDSTORE",) if layout == "no-condstore" else ()
    server = dovecot_factory(layout=layout if layout in lab.LAYOUTS else "default", hide=hide)
    env = new_imap_user(server)
    sent_folder, junk_folder = FOLDERS[layout]
    mine = [bounces.new_id("mine") for _ in range(2)]
    forged = [bounces.new_id("bs") for _ in range(3)]
    own = [bounces.dsn(m, bounce_id=bounces.new_id("own")) for m in mine]
    backscatter = [bounces.dsn(bounces.new_id("forged"), bounce_id=b) for b in forged]
    # a real bounce from 2021, its original long gone from Sent (which starts in 2026 here)
    old_id = bounces.new_id("old")
    too_old = bounces.dsn(bounces.new_id("archived"), bounce_id=old_id).replace(
        b"Date: Fri, 20 Nov 2026 09:30:00 +0000", b"Date: Tue, 01 Jun 2021 09:30:00 +0000"
    )
    inbox = [*own, *backscatter, too_old, bounces.ordinary()]
    client = env.connect()
    try:
        lab.append_messages(client, sent_folder, [bounces.original(m) for m in mine])
        lab.append_messages(client, "INBOX", inbox)
        if layout == "gmail":  # every INBOX message is in All Mail too
            lab.append_messages(client, "[Gmail]/All Mail", inbox)
            all_mail = lab.read_folder(client, "[Gmail]/All Mail")
        before = _ids(client, "INBOX")
    finally:
        client.logout()
    xdg = xdg_dirs(tmp_path)
    port = _server_habit(request, server, layout)
    cfg = write_config(tmp_path / "c.toml", env, **({"port": port} if port else {}))
    out = run_cli(xdg, "sweep", "--json", "--config", str(cfg))
    assert out.returncode == 0, out.stderr + out.stdout
    acc = json.loads(out.stdout)["accounts"][0]
    assert (acc["own"], acc["backscatter"], acc["acted"]) == (2, 3, 3), acc
    assert (acc["undetermined"], acc["too_old"]) == (1, 1), acc  # reported, kept
    client = env.connect()
    try:
        assert _ids(client, junk_folder) == sorted(forged)
        assert old_id in _ids(client, "INBOX")
        assert not set(_ids(client, junk_folder)) & {b for b in _ids(client, "INBOX")}
        if layout == "gmail":
            assert lab.read_folder(client, "[Gmail]/All Mail") == all_mail  # untouched
    finally:
        client.logout()
    again = json.loads(run_cli(xdg, "sweep", "--json", "--config", str(cfg)).stdout)
    assert again["accounts"][0]["acted"] == 0
    undo = run_cli(xdg, "undo", "--last", "--config", str(cfg))
    assert undo.returncode == 0, undo.stderr
    client = env.connect()
    try:
        assert _ids(client, "INBOX") == before
        assert _ids(client, junk_folder) == []
        if layout == "gmail":
            assert lab.read_folder(client, "[Gmail]/All Mail") == all_mail
    finally:
        client.logout()
    gmail_note = [n for n in acc["notes"] if "Gmail deletes what is in [Gmail]/Spam" in n]
    assert len(gmail_note) == (1 if layout == "gmail" else 0), acc["notes"]
