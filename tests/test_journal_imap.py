"""The journal against a real Dovecot made to fail or lie by a proxy (tests/imapproxy.py).

The same cases as tests/test_journal.py where the real server matters, on servers with MOVE,
without MOVE (COPY + UIDPLUS), without MOVE and UIDPLUS, and with MOVE but no UIDPLUS; then a
matrix of lies at every step of sweep -> undo -> sweep that counts what users count: messages
lost, duplicated, moved that should not be, put back that come back. Every count must be 0, and
a run that could not do its job exits non-zero with one line.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from faultkit import Mail, make_mail, tag_of, tagged

import bounces
import imapproxy
import lab

pytestmark = pytest.mark.imap

SERVERS = {
    "move": "dovecot",
    "copy-uidplus": "dovecot_nomove_uidplus",
    "copy-plain": "dovecot_nomove",
    "move-nouidplus": "dovecot_nouidplus",
}
TRANSFER = {"move": "UID MOVE", "copy-uidplus": "UID COPY", "copy-plain": "UID COPY"}
_TAG_FETCH = "(UID FLAGS BODY.PEEK[HEADER.FIELDS (X-FAULT-TAG)])"


def strip_copyuid(line: str) -> str | None:
    """What a server without UIDPLUS sends: no COPYUID (the lab only hides the capability)."""
    if "[COPYUID" not in line:
        return line
    return re.sub(r"\[COPYUID [^\]]*\] ?", "", line)


class Real:
    """A lab user filled with a Mail, reached through a proxy, swept by the CLI in-process."""

    def __init__(self, request, shape: str, *, mail: Mail | None = None, **cfg: Any) -> None:
        self.request = request
        self.server = request.getfixturevalue(SERVERS[shape])
        self.proxy: imapproxy.ImapProxy = request.getfixturevalue("imap_proxy")(self.server)
        self.tmp: Path = request.getfixturevalue("tmp_path")
        self.capsys = request.getfixturevalue("capsys")
        self.state_dir = self.tmp / "state"
        self.accounts: dict[str, tuple[lab.LabEnv, Mail, dict[str, Any]]] = {}
        self.add("acc", mail=mail, **cfg)
        if shape == "move-nouidplus":
            self.proxy.rewrite(("UID MOVE", "UID COPY"), strip_copyuid, times=None)

    def add(self, name: str, *, mail: Mail | None = None, **cfg: Any) -> None:
        env = self.request.getfixturevalue("new_imap_user")(self.server)
        mail = mail or make_mail()
        client = env.connect()
        try:
            lab.append_messages(client, "Sent", mail.sent)
            lab.append_messages(
                client, "INBOX", [lab.LabMessage(raw, flags=flags) for raw, flags in mail.inbox]
            )
        finally:
            client.logout()
        self.accounts[name] = (env, mail, cfg)
        lines = [f"state_dir = {json.dumps(str(self.state_dir))}"]
        for acc, (e, _m, keys) in self.accounts.items():
            values = {
                "name": acc,
                "host": "127.0.0.1",
                "port": self.proxy.port,
                "security": "plain",
                "username": e.user,
                "password_command": f"printf %s {e.password}",
                "min_age": "0s",
                "timeout": "10s",
                **keys,
            }
            lines.append("[[accounts]]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items())
        (self.tmp / "config.toml").write_text("\n".join(lines) + "\n")
        (self.tmp / "config.toml").chmod(0o600)

    @property
    def env(self) -> lab.LabEnv:
        return self.accounts["acc"][0]

    @property
    def mail(self) -> Mail:
        return self.accounts["acc"][1]

    def cli(self, *args: str) -> tuple[int, str, str]:
        from ndr_sweeper import cli

        self.capsys.readouterr()
        code = cli.main([*args, "--config", str(self.tmp / "config.toml")])
        out, err = self.capsys.readouterr()
        return code, out, err

    def sweep(self, *extra: str) -> tuple[int, dict[str, Any], str]:
        code, out, err = self.cli("sweep", "--json", *extra)
        return code, {a["account"]: a for a in json.loads(out)["accounts"]}, err

    def undo(self, *args: str) -> tuple[int, str, str]:
        return self.cli("undo", *(args or ("--last",)))

    def folder(self, folder: str, name: str = "acc") -> list[tuple[int, str, frozenset[str]]]:
        """(uid, tag, flags) of every message in `folder`, read over a direct connection."""
        from imapclient.response_parser import parse_fetch_response

        client = self.accounts[name][0].connect()
        try:
            client.select_folder(folder, readonly=True)
            _typ, raw = client._imap.uid("FETCH", "1:*", _TAG_FETCH)
            data = {} if raw == [None] else parse_fetch_response(raw, False, True)
            out = []
            for uid, item in sorted(data.items()):
                header = next(v for k, v in item.items() if k.startswith(b"BODY[HEADER"))
                tag = tag_of(header or b"")
                flags = frozenset(
                    f.decode() if isinstance(f, bytes) else str(f) for f in item[b"FLAGS"]
                )
                out.append((uid, tag or "?", flags))
            return out
        finally:
            client.logout()

    def tags(self, folder: str, name: str = "acc") -> Counter[str]:
        """Visible messages: those flagged \\Deleted by us (left for the user's client to
        expunge, on a server without UIDPLUS) are not counted."""
        userdel = self.accounts[name][1].user_deleted
        return Counter(
            tag
            for _uid, tag, flags in self.folder(folder, name)
            if "\\Deleted" not in flags or tag in userdel
        )

    def counts(self, name: str = "acc", *, junk: set[str]) -> dict[str, Any]:
        """What a user counts: lost, duplicated, moved wrongly, missing from Junk."""
        mail = self.accounts[name][1]
        in_junk, in_inbox = self.tags("Junk", name), self.tags("INBOX", name)
        everywhere = in_junk + in_inbox
        return {
            "lost": sorted((mail.keep | mail.backscatter) - set(everywhere)),
            "duplicated": sorted(t for t, n in everywhere.items() if n > 1),
            "wrongly in Junk": sorted(set(in_junk) - junk),
            "missing from Junk": sorted(junk - set(in_junk)),
            "user's \\Deleted lost": sorted(
                t
                for _u, t, f in self.folder("INBOX", name)
                if t in mail.user_deleted and "\\Deleted" not in f
            ),
        }

    def check(self, name: str = "acc", *, junk: set[str] | None = None) -> None:
        mail = self.accounts[name][1]
        want = mail.backscatter if junk is None else junk
        counts = self.counts(name, junk=want)
        assert not any(counts.values()), counts


def one_line(code: int, err: str, acc: dict[str, Any] | None = None) -> None:
    """A run that could not do its job: non-zero, and says why in one line (on stderr, or as
    the account's error or notes in --json output)."""
    assert code != 0
    assert "Traceback" not in err, err
    if acc is not None:
        assert (acc["error"] and "\n" not in acc["error"]) or (acc["errors"] and acc["notes"])
        return
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("ndr-sweeper: ") for ln in lines), err


@pytest.fixture
def real(request):
    def make(shape: str, **cfg: Any) -> Real:
        return Real(request, shape, **cfg)

    return make


# ---------------------------------------------------------------- the cases


@pytest.mark.parametrize("shape", ["move", "copy-uidplus", "copy-plain"])
def test_a_later_command_of_a_batch_refused(real, shape, monkeypatch) -> None:
    from ndr_sweeper.actions import apply

    monkeypatch.setattr(apply, "BATCH", 3)
    r = real(shape)
    r.proxy.refuse(TRANSFER[shape], "[LIMIT] throttled", nth=2)
    code, acc, err = r.sweep()
    assert code == 1 and acc["acc"]["errors"] > 0
    moved = set(r.tags("Junk"))
    assert 0 < len(moved) < len(r.mail.backscatter) and acc["acc"]["acted"] == len(moved)
    code, _out, err = r.undo()
    assert code == 0, err
    r.check(junk=set())
    code, acc, err = r.sweep()
    assert code == 0, (err, {k: acc["acc"][k] for k in ("error", "errors", "notes")})
    r.check(junk=r.mail.backscatter - moved)


def test_move_carried_out_but_answered_no(real) -> None:
    r = real("move")
    r.proxy.answer_no("UID MOVE", "[SERVERBUG] internal error")
    code, acc, err = r.sweep()
    assert code == 0 and acc["acc"]["acted"] == len(r.mail.backscatter), err
    r.check()
    code, out, err = r.undo()
    assert code == 0, err
    assert f"{len(r.mail.backscatter)} message(s) put back" in out
    r.check(junk=set())


@pytest.mark.parametrize("shape", ["move", "copy-uidplus", "copy-plain"])
def test_answered_ok_but_not_carried_out(real, shape) -> None:
    r = real(shape)
    r.proxy.answer_ok(TRANSFER[shape], "[COPYUID 1 1:3 1:3] done")
    code, acc, err = r.sweep()
    one_line(code, err, acc["acc"])
    assert acc["acc"]["acted"] == 0
    r.check(junk=set())
    code, acc, err = r.sweep()
    assert code == 0 and acc["acc"]["acted"] == len(r.mail.backscatter), err
    r.check()


@pytest.mark.parametrize("shape", ["copy-uidplus", "copy-plain"])
def test_recovery_never_takes_an_older_message_for_the_copy(real, shape) -> None:
    mail = make_mail(no_id_bounce=False)
    r = real(shape, mail=mail)
    victim = sorted(mail.backscatter)[0]
    raw = next(m for m, _ in mail.inbox if tag_of(m) == victim)
    older = tagged(raw.replace(b"Return-Path: <>", b"Return-Path: <>\r\nX-Delivered: 1st"), "old")
    client = r.env.connect()
    lab.append_messages(client, "Junk", [older])
    client.logout()
    r.proxy.cut_before("UID COPY")
    code, acc, err = r.sweep()
    one_line(code, err, acc["acc"])
    code, _acc, err = r.sweep()
    assert code == 0, err
    mail.keep.add("old")
    r.check(junk=mail.backscatter | {"old"})


def test_default_without_uidplus_never_expunges(real) -> None:
    """Another client flags one of the user's messages \\Deleted in the middle of our work: on
    a server without MOVE and UIDPLUS the default never sends EXPUNGE, so it stays."""
    r = real("copy-plain")

    def meddle(_cmd: Any) -> None:
        client = r.env.connect()
        client.select_folder("INBOX")
        uid = next(u for u, t, _f in r.folder("INBOX") if t == "keep1")
        client.add_flags([uid], [b"\\Deleted"])
        client.logout()

    r.proxy.on("UID STORE", before=meddle)
    r.mail.user_deleted.add("keep1")
    code, _acc, err = r.sweep()
    assert code == 0, err
    r.check()
    assert not [c for c in r.proxy.transcript if c.name.upper().endswith("EXPUNGE")]


def _other_client_flags(r: Real, tag: str, flag: bytes) -> None:
    """The user's mail client sets `flag` on the message tagged `tag`, over its own connection."""
    uid = next(u for u, t, _f in r.folder("INBOX") if t == tag)
    client = r.env.connect()
    client.select_folder("INBOX")
    client.add_flags([uid], [flag])
    client.logout()


def test_condstore_a_report_changed_after_the_scan_waits_for_the_next_sweep(real) -> None:
    """Dovecot has CONDSTORE: the user's client flags a backscatter message once the sweep has
    read the bodies; the sweep sees its MODSEQ move and leaves it for the next sweep."""
    r = real("move")
    target = sorted(r.mail.backscatter)[0]
    r.proxy.on(
        "UID FETCH",
        after=lambda _cmd: _other_client_flags(r, target, b"\\Flagged"),
        where=lambda a: "BODY.PEEK[]" in a,
    )
    code, acc, err = r.sweep()
    assert code == 0 and acc["acc"]["errors"] == 0, (err, acc)
    assert not r.proxy.unfired()
    assert any("changed by another client" in n for n in acc["acc"]["notes"]), acc
    r.check(junk=r.mail.backscatter - {target})
    code, acc, err = r.sweep()
    assert code == 0 and acc["acc"]["acted"] == 1, (err, acc)
    r.check()


def test_condstore_flag_mode_store_is_conditional(real) -> None:
    """action = "flag": the user's client changes a message just before our STORE; Dovecot's
    UNCHANGEDSINCE leaves it unflagged, the sweep says so, and the next sweep flags it."""
    r = real("move", action="flag")
    target = sorted(r.mail.backscatter)[1]
    r.proxy.on(
        "UID STORE",
        before=lambda _cmd: _other_client_flags(r, target, b"\\Seen"),
        where=lambda a: "$NdrBackscatter" in a,
    )
    code, acc, err = r.sweep()
    assert code == 0 and acc["acc"]["errors"] == 0, (err, acc)
    assert any("UNCHANGEDSINCE" in ln for ln in r.proxy.lines()), r.proxy.lines()

    def flagged() -> set[str]:
        return {t for _u, t, f in r.folder("INBOX") if "$NdrBackscatter" in f}

    assert flagged() == r.mail.backscatter - {target}
    code, acc, err = r.sweep()
    assert code == 0 and acc["acc"]["acted"] == 1, (err, acc)
    assert flagged() == r.mail.backscatter


def test_protect_rereads_flags_right_before_its_expunge(real) -> None:
    r = real("copy-plain", expunge_fallback="protect")

    def meddle(_cmd: Any) -> None:  # right after our STORE \Deleted
        client = r.env.connect()
        client.select_folder("INBOX")
        uid = next(u for u, t, _f in r.folder("INBOX") if t == "keep1")
        client.add_flags([uid], [b"\\Deleted"])
        client.logout()

    r.proxy.on("UID STORE", after=meddle, where=lambda a: "+FLAGS" in a and "\\Deleted" in a)
    r.mail.user_deleted.add("keep1")
    code, _acc, err = r.sweep()
    assert code == 0, err
    r.check()


def test_protect_does_not_trust_search_deleted(real) -> None:
    """A server whose SEARCH DELETED leaves out a flagged message: the flags are read too."""
    r = real("copy-plain", expunge_fallback="protect")
    userdel = next(u for u, t, _f in r.folder("INBOX") if t == "userdel")

    def hide(line: str) -> str:
        if not line.startswith("* SEARCH"):
            return line
        return " ".join(w for w in line.split(" ") if w != str(userdel))

    r.proxy.rewrite("UID SEARCH", hide, where=lambda a: "DELETED" in a.upper(), times=None)
    code, _acc, err = r.sweep()
    assert code == 0, err
    r.check()


@pytest.mark.parametrize("shape", ["move", "copy-uidplus"])
def test_undo_cut_after_it_moved_then_nothing_comes_back(real, shape) -> None:
    r = real(shape)
    assert r.sweep()[0] == 0
    r.proxy.cut_after(TRANSFER[shape])
    code, _out, err = r.undo()
    one_line(code, err)
    code, acc, err = r.sweep()
    assert code == 0 and acc["acc"]["acted"] == 0, (acc, err)
    r.check(junk=set())
    r.undo()
    r.check(junk=set())


@pytest.mark.parametrize("shape", ["copy-uidplus", "copy-plain"])
def test_undo_of_a_run_left_copied(real, shape) -> None:
    r = real(shape)
    if shape == "copy-uidplus":
        r.proxy.refuse("UID EXPUNGE", "[NOPERM] no right to expunge", times=2)
    else:
        r.proxy.refuse("UID STORE", "[NOPERM] no", where=lambda a: "+FLAGS" in a, times=2)
    code, acc, err = r.sweep()
    one_line(code, err, acc["acc"])
    code, _out, err = r.undo()
    assert code == 0, err
    r.check(junk=set())
    code, _acc, err = r.sweep()
    assert code == 0, err
    r.check(junk=set())


def test_undo_never_moves_what_a_wrong_copyuid_points_at(real) -> None:
    r = real("move")
    client = r.env.connect()
    lab.append_messages(client, "Junk", [tagged(bounces.ordinary("Cheap pills"), "spam")])
    client.logout()
    r.proxy.rewrite(
        "UID MOVE", imapproxy.replace_copyuid(lambda v, src, dst: (v, src, "1")), times=None
    )
    assert r.sweep()[0] == 0
    code, _out, err = r.undo()
    assert code == 0, err
    r.mail.keep.add("spam")
    r.check(junk={"spam"})


def test_no_message_id_no_copyuid_then_the_state_is_deleted(real) -> None:
    r = real("move-nouidplus")
    assert r.sweep()[0] == 0
    r.check()
    code, _out, err = r.undo()
    assert code == 0, err
    r.check(junk=set())
    assert r.sweep()[1]["acc"]["acted"] == 0
    shutil.rmtree(r.state_dir)
    code, acc, err = r.sweep()
    assert code == 0 and acc["acc"]["acted"] == 0, (acc, err)
    r.check(junk=set())


def test_undo_of_keyword_mode_leaves_each_message_once(real) -> None:
    r = real("copy-plain", expunge_fallback="keyword")
    assert r.sweep()[0] == 0
    code, _out, err = r.undo()
    assert code == 0, err
    r.check(junk=set())
    assert not any("$NdrBackscatter" in f for _u, _t, f in r.folder("INBOX"))


def test_undo_of_flag_mode_keeps_the_users_own_junk_keyword(real) -> None:
    r = real("move", action="flag")
    own_junk = sorted(r.mail.backscatter)[0]
    client = r.env.connect()
    client.select_folder("INBOX")
    client.add_flags([next(u for u, t, _f in r.folder("INBOX") if t == own_junk)], [b"Junk"])
    client.logout()
    assert r.sweep()[0] == 0
    code, _out, err = r.undo()
    assert code == 0, err
    for _u, tag, flags in r.folder("INBOX"):
        assert "$NdrBackscatter" not in flags
        assert ("Junk" in flags) == (tag == own_junk), (tag, flags)


def test_undo_last_takes_every_account_of_the_sweep(real) -> None:
    r = real("move")
    r.add("two")
    code, acc, err = r.sweep()
    assert code == 0 and acc["acc"]["acted"] and acc["two"]["acted"], err
    code, out, err = r.undo()
    assert code == 0, err
    assert "on acc, two" in out
    r.check("acc", junk=set())
    r.check("two", junk=set())


# ---------------------------------------------------------------- the matrix

LIES = ["cut_before", "cut_after", "answer_no", "answer_ok", "refuse", "wrong_copyuid"]


def _lie(proxy: imapproxy.ImapProxy, lie: str, command: str) -> None:
    if lie == "wrong_copyuid":
        proxy.rewrite(command, imapproxy.replace_copyuid(lambda v, src, dst: (v, src, "1")))
    elif lie in ("answer_no", "refuse"):
        getattr(proxy, lie)(command, "[UNAVAILABLE] try later")
    else:
        getattr(proxy, lie)(command)


@pytest.mark.parametrize("lie", LIES)
@pytest.mark.parametrize("step", ["sweep", "undo"])
@pytest.mark.parametrize("shape", ["move", "copy-uidplus", "copy-plain"])
def test_lies_at_every_step(real, shape, step, lie) -> None:
    """sweep -> undo -> sweep with one lie at the MOVE/COPY of `step`; each failed run is
    followed by the same command again (a user's retry, or the next cron run). Whatever the
    lie: nothing lost, nothing duplicated, nothing wrongly moved, nothing put back comes back,
    and a run that could not do its job says so in one line and exits non-zero."""
    r = real(shape)
    bs = r.mail.backscatter
    command = TRANSFER[shape]
    if shape == "copy-plain" and step == "undo":
        command = "UID STORE"  # undo there flags our copies \Deleted: no COPY
    if step == "sweep":
        _lie(r.proxy, lie, command)
    code, acc, err = r.sweep()
    if code:  # it says why: an error of one line, or failed messages with notes
        a = acc["acc"]
        assert "Traceback" not in err
        assert (a["error"] and "\n" not in a["error"]) or (a["errors"] and a["notes"]), a
        code, acc, err = r.sweep()
    assert code == 0, err
    r.check()
    if step == "undo":
        _lie(r.proxy, lie, command)
    for _ in range(3):  # undo --last until nothing is left (a partial undo is resumed)
        code, _out, err = r.undo()
        if code == 2:
            assert "nothing to undo" in err
            break
        assert "Traceback" not in err
    r.check(junk=set())
    code, acc, err = r.sweep()
    assert code == 0 and acc["acc"]["acted"] == 0, (acc, err)
    counts = r.counts(junk=set())
    assert not any(counts.values()), counts
    assert len(bs) == len(r.mail.backscatter)
