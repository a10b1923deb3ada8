"""The whole sweep over real mail: the dev corpus loaded into a Dovecot INBOX.

Every NDR in the corpus whose label names an original Message-ID is either an own bounce (we put
that original into Sent, some of them only under a provider's original-ID header) or backscatter;
everything else must stay. Skipped when ../shared/corpus is not there.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import bounces
import lab
from test_sweep_imap import run_cli, write_config, xdg_dirs

pytestmark = [pytest.mark.imap, pytest.mark.corpus]

CORPUS = Path(
    os.environ.get("NDR_SWEEPER_CORPUS")
    or Path(__file__).resolve().parents[2] / "shared" / "corpus" / "dev"
)


def _labels() -> list[dict]:
    path = CORPUS / "labels.jsonl"
    if not path.is_file():
        pytest.skip(f"no corpus at {CORPUS}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _own_message_id(raw: bytes) -> str | None:
    head = raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    m = re.search(rb"^Message-ID:\s*<([^>\s]+)>", head, re.I | re.M)
    return m.group(1).decode("ascii", "replace") if m else None


@pytest.mark.parametrize(
    ("server_name", "helper"),
    [("dovecot", "auto"), ("dovecot_nomove", "auto"), ("dovecot", "on")],
)
def test_corpus_inbox_is_swept_exactly(
    request, server_name, helper, new_imap_user, tmp_path
) -> None:
    """(``helper = "on"``: the possible reports are classified by a helper process too,
    ndr_sweeper.offload, as on a first sweep of a large mailbox.)"""
    labels = _labels()
    env = new_imap_user(request.getfixturevalue(server_name))

    inbox: list[lab.LabMessage] = []
    sent: list[bytes] = []
    expect_junk: set[int] = set()  # positions in `inbox`
    fate: dict[str, bool] = {}  # original ID -> is it backscatter (not in Sent)?
    for i, row in enumerate(labels):
        raw = (CORPUS / row["path"]).read_bytes()
        if row.get("variant_of"):
            continue  # the CRLF/CR copies bounce the same originals: one copy is enough here
        orig = row["original_message_id"]
        pos = len(inbox)
        inbox.append(lab.LabMessage(raw))
        if not row["is_ndr"] or not orig:
            continue
        if orig in fate:  # another bounce of the same original
            if fate[orig]:
                expect_junk.add(pos)
            continue
        fate[orig] = i % 3 == 2
        if i % 3 == 0:
            sent.append(bounces.original(orig))  # the user really sent it
        elif i % 3 == 1:
            # Sent copy rewritten by the provider; the client's ID kept in its own header.
            sent.append(
                bounces.original(
                    f"rewritten.{i}@outlook.example",
                    extra_headers=f"X-Microsoft-Original-Message-ID: <{orig}>\r\n",
                )
            )
        else:
            expect_junk.add(pos)
    deleted = lab.LabMessage(bounces.ordinary("kept for later"), flags=[r"\Deleted"])
    inbox.append(deleted)
    # The corpus bounces are of mail sent from 2001 on: a Sent folder that reaches back that
    # far (older bounces could not be checked against it, and would be kept).
    sent.append(
        bounces.original(bounces.new_id("first")).replace(
            b"Date: Fri, 20 Nov 2026 09:30:00 +0000", b"Date: Mon, 01 Jan 1990 00:00:00 +0000"
        )
    )

    client = env.connect()
    lab.append_messages(client, "Sent", sent)
    lab.append_messages(client, "INBOX", inbox)
    before = lab.read_folder(client, "INBOX")
    client.logout()
    assert len(before) == len(inbox)

    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env)
    result = run_cli(
        xdg,
        "sweep",
        "--config",
        str(cfg),
        "--json",
        "--log-level",
        "debug",
        env_extra={"NDR_SWEEPER_HELPER": helper},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["accounts"][0]
    if helper == "on":
        # (it is sent every possible report, and nothing is taken back from it)
        m = re.search(
            r"classified (\d+) possible reports, (\d+) of them by the helper", result.stderr
        )
        assert m is not None and m.group(1) == m.group(2) != "0", m
        assert "Traceback" not in result.stderr and "WARNING" not in result.stderr

    client = env.connect()
    after_inbox = lab.read_folder(client, "INBOX")
    junk = lab.read_folder(client, "Junk")
    client.logout()

    by_uid = {e.uid: i for i, e in enumerate(before)}  # APPEND order = UID order
    # Without MOVE and UIDPLUS a moved original stays, flagged \Deleted and $NdrBackscatter,
    # for the user's client to expunge: it counts as moved.
    ours = {"\\Deleted", "$NdrBackscatter"}
    left = {by_uid[e.uid] for e in after_inbox if not ours <= e.flags}
    moved = set(range(len(inbox))) - left
    wrongly_moved = moved - expect_junk
    missed = expect_junk - moved
    assert not wrongly_moved, f"moved but not backscatter: {sorted(wrongly_moved)[:10]}"
    assert len(junk) == len(moved), "every moved message is in Junk exactly once"
    assert len(missed) <= len(expect_junk) * 0.01, (
        f"{len(missed)} of {len(expect_junk)} backscatter messages left in INBOX"
    )
    assert any(r"\Deleted" in e.flags and not ours <= e.flags for e in after_inbox), (
        "the user's \\Deleted message stays"
    )
    assert report["acted"] == len(moved)

    again = run_cli(xdg, "sweep", "--config", str(cfg), "--json")
    assert json.loads(again.stdout)["accounts"][0]["acted"] == 0
    undo = run_cli(xdg, "undo", "--last", "--config", str(cfg))
    assert undo.returncode == 0, undo.stderr
    client = env.connect()
    restored = lab.read_folder(client, "INBOX")
    # (without UIDPLUS our copies in Junk are flagged \Deleted, not expunged)
    assert [e for e in lab.read_folder(client, "Junk") if r"\Deleted" not in e.flags] == []
    assert not any("$NdrBackscatter" in e.flags for e in restored)
    client.logout()
    assert sorted(e.message_id or "" for e in restored) == sorted(
        e.message_id or "" for e in before
    )
