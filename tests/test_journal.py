"""The journal against servers that fail or lie: every write is checked on the server.

Each test drives the real CLI in-process (`sweep`, `undo`) against the in-memory server, scripted
to fail or lie at one IMAP command (``MemoryMailbox.misbehave``), and checks what the user would
check: nothing lost, nothing duplicated, nothing moved that should not be, nothing put back that
comes back, and a non-zero exit with one line whenever a run could not do its job. The same
cases run against a real Dovecot behind a lying proxy in tests/test_journal_imap.py.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from faultkit import Mail, make_mail, tag_of, tagged

from ndr_sweeper import cli, connect
from ndr_sweeper.errors import ConnectError, MailboxError
from ndr_sweeper.mailbox.memory import DEFAULT_CAPABILITIES, MemoryMailbox
from ndr_sweeper.state import open_state

import bounces
from maildirs import MaildirServer, Tree

SHAPES = {
    "move": DEFAULT_CAPABILITIES,
    "copy-uidplus": DEFAULT_CAPABILITIES - {"MOVE"},
    "copy-plain": DEFAULT_CAPABILITIES - {"MOVE", "UIDPLUS"},
}
NO = MailboxError("refused by the server: NO [OVERQUOTA] Quota exceeded")
CUT = ConnectError("connection lost (cut by the test)")


class World:
    """One or more in-memory servers (or local Maildir trees: `backend` "maildir++" or
    "mbsync"), a config for them, and the CLI pointed at both."""

    def __init__(
        self,
        tmp: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys,
        backend: str = "memory",
        **account: Any,
    ):
        self.tmp, self.capsys, self.backend = tmp, capsys, backend
        self.servers: dict[str, Any] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.mail: dict[str, Mail] = {}
        self.state_dir = tmp / "state"
        self.config = tmp / "config.toml"
        self.add("acc", **account)
        self._real_open = connect.open_mailbox
        monkeypatch.setattr("ndr_sweeper.connect.open_mailbox", self._open)

    def add(
        self,
        name: str,
        shape: str = "move",
        mail: Mail | None = None,
        store_batch: int = 5000,
        **keys: Any,
    ) -> Any:
        mail = mail or make_mail()
        mb: Any
        if self.backend == "memory":
            mb = MemoryMailbox(SHAPES[shape], store_batch=store_batch)
        else:  # a Maildir has one shape: MOVE and UIDPLUS
            root = self.tmp / f"Mail-{name}"
            shutil.rmtree(root, ignore_errors=True)  # added again: a mailbox of its own
            mb = MaildirServer(Tree(root, self.backend).make())
        for raw in mail.sent:
            mb.add_message("Sent", raw)
        for raw, flags in mail.inbox:
            mb.add_message("INBOX", raw, flags)
        self.servers[name], self.mail[name], self.accounts[name] = mb, mail, keys
        self._write_config()
        return mb

    @property
    def mb(self) -> Any:
        return self.servers["acc"]

    def _write_config(self) -> None:
        lines = [f"state_dir = {json.dumps(str(self.state_dir))}"]
        for name, keys in self.accounts.items():
            server: dict[str, str] = {
                "host": "imap.example.org",
                "username": "me",
                "password_command": "echo pw",
            }
            if isinstance(self.servers[name], MaildirServer):
                server = {"maildir": str(self.servers[name].tree.root)}
            values = {
                "name": name,
                **server,
                "min_age": "0s",
                **keys,
            }
            lines.append("[[accounts]]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items())
        self.config.write_text("\n".join(lines) + "\n")
        self.config.chmod(0o600)

    def _open(self, account: Any) -> Any:
        mb = self.servers[account.name]
        if isinstance(mb, MaildirServer):  # the real thing: connect.open_mailbox
            return self._real_open(account)
        mb.logged_out, mb.selected = False, None
        return mb

    def cli(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main([*args, "--config", str(self.config)])
        out, err = self.capsys.readouterr()
        return code, out, err

    def sweep(self, *extra: str) -> tuple[int, dict[str, Any], str]:
        code, out, err = self.cli("sweep", "--json", *extra)
        doc = json.loads(out)
        return code, {a["account"]: a for a in doc["accounts"]}, err

    def undo(self, *args: str) -> tuple[int, str, str]:
        return self.cli("undo", *(args or ("--last",)))

    # ------------------------------------------------------------ what is where
    def tags(self, folder: str, name: str = "acc", *, visible: bool = True) -> Counter[str]:
        """Tags of the messages in `folder`; `visible`: leave out those flagged \\Deleted (a
        client hides them, and an expunge by the user's client removes them)."""
        return Counter(
            tag_of(m.data) or "?"
            for m in self.servers[name].contents(folder).values()
            if not (visible and "\\Deleted" in m.flags and tag_of(m.data) not in self._userdel)
        )

    @property
    def _userdel(self) -> set[str]:
        return {t for m in self.mail.values() for t in m.user_deleted}

    def check(
        self,
        name: str = "acc",
        *,
        junk: set[str] | None = None,
        inbox: set[str] | None = None,
    ) -> None:
        """Every message exactly once where it belongs; the user's \\Deleted flags kept."""
        mail = self.mail[name]
        want_junk = mail.backscatter if junk is None else junk
        want_inbox = (mail.keep | mail.backscatter) - want_junk if inbox is None else inbox
        in_junk, in_inbox = self.tags("Junk", name), self.tags("INBOX", name)
        everywhere = in_junk + in_inbox
        lost = (mail.keep | mail.backscatter) - set(everywhere)
        assert not lost, f"lost: {sorted(lost)}"
        dup = {t: n for t, n in everywhere.items() if n > 1}
        assert not dup, f"duplicated: {dup} (Junk {dict(in_junk)}, INBOX {dict(in_inbox)})"
        assert set(in_junk) == want_junk, (
            f"Junk: missing {sorted(want_junk - set(in_junk))}, "
            f"should not be there {sorted(set(in_junk) - want_junk)}"
        )
        assert set(in_inbox) == want_inbox, (
            f"INBOX: missing {sorted(want_inbox - set(in_inbox))}, "
            f"should not be there {sorted(set(in_inbox) - want_inbox)}"
        )
        for m in self.servers[name].contents("INBOX").values():
            tag = tag_of(m.data)
            if tag in mail.user_deleted:
                assert "\\Deleted" in m.flags, f"the user's \\Deleted flag on {tag} was lost"

    def uid_of(self, folder: str, tag: str, name: str = "acc") -> int:
        return next(
            u for u, m in self.servers[name].contents(folder).items() if tag_of(m.data) == tag
        )


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> World:
    return World(tmp_path, monkeypatch, capsys)


@pytest.fixture(params=["memory", "maildir++", "mbsync"])
def any_world(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> World:
    """The same journal test on the memory twin and on a local Maildir (both layouts)."""
    return World(tmp_path, monkeypatch, capsys, backend=request.param)


def one_line(err: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and "Traceback" not in err, err
    for ln in lines:
        assert ln.startswith("ndr-sweeper: "), err


# ---------------------------------------------------------------- batches and partial failures


@pytest.mark.parametrize("shape", ["move", "copy-uidplus", "copy-plain"])
def test_a_later_command_of_a_batch_refused(world: World, shape: str) -> None:
    """The 8 backscatter messages go out as 3-UID commands; the second is refused (quota): what
    the first did is known, journalled and undoable; nothing is copied twice."""
    mb = world.add("acc", shape, store_batch=3)
    op = "move" if shape == "move" else "copy"
    mb.misbehave(op, "fail_before", nth=2, error=NO)
    code, acc, _err = world.sweep()
    assert code == 1 and acc["acc"]["errors"] > 0
    moved = set(world.tags("Junk"))
    assert 0 < len(moved) < len(world.mail["acc"].backscatter)
    assert acc["acc"]["acted"] == len(moved)
    # undo --last puts back exactly what went through
    code, _out, err = world.undo()
    assert code == 0, err
    world.check(junk=set())
    # the next sweep moves the rest; what was put back stays put back
    code, acc, err = world.sweep()
    assert code == 0, err
    world.check(junk=world.mail["acc"].backscatter - moved)


@pytest.mark.parametrize("shape", ["copy-uidplus", "copy-plain"])
def test_a_later_copy_refused_then_the_next_sweep_copies_nothing_twice(
    world: World, shape: str
) -> None:
    mb = world.add("acc", shape, store_batch=3)
    mb.misbehave("copy", "fail_before", nth=2, error=NO)
    assert world.sweep()[0] == 1
    code, _acc, err = world.sweep()
    assert code == 0, err
    world.check()


def test_move_carried_out_but_answered_no_is_done_and_undoable(world: World) -> None:
    world.mb.misbehave("move", "perform_then_fail", error=NO)
    code, acc, err = world.sweep()
    n = len(world.mail["acc"].backscatter)
    assert acc["acc"]["acted"] == n, acc
    assert code == 0, err
    world.check()
    code, out, err = world.undo()
    assert code == 0, err
    assert f"{n} message(s) put back" in out
    world.check(junk=set())


def test_move_answered_ok_that_moved_nothing_is_not_counted_and_retried(world: World) -> None:
    world.mb.misbehave("move", "ok_without_performing")
    code, acc, err = world.sweep()
    assert code == 1 and acc["acc"]["acted"] == 0, acc
    assert any("did not" in n for n in acc["acc"]["notes"]), acc["acc"]["notes"]
    world.check(junk=set())
    code, acc, err = world.sweep()
    assert code == 0 and acc["acc"]["acted"] == len(world.mail["acc"].backscatter), err
    world.check()


# ---------------------------------------------------------------- removing the original


@pytest.mark.parametrize("shape", ["copy-uidplus", "copy-plain"])
def test_copy_answered_ok_that_copied_nothing_never_removes_the_original(
    world: World, shape: str
) -> None:
    world.add("acc", shape)
    world.mb.misbehave("copy", "ok_without_performing")
    code, acc, err = world.sweep()
    assert code == 1 and acc["acc"]["acted"] == 0, acc
    world.check(junk=set())
    code, acc, err = world.sweep()
    assert code == 0, err
    world.check()


@pytest.mark.parametrize("shape", ["copy-uidplus", "copy-plain"])
def test_recovery_never_takes_an_older_message_in_junk_for_the_copy(
    world: World, shape: str
) -> None:
    """Junk already holds a message with a backscatter bounce's Message-ID (the same bounce
    delivered twice, the first copy moved there by the user). The sweep is cut before its COPY;
    recovery must not take the old message for the copy and expunge the original."""
    mail = make_mail(no_id_bounce=False)
    mb = world.add("acc", shape, mail=mail)
    victim = next(t for t in sorted(mail.backscatter))
    raw = next(r for r, _ in mail.inbox if tag_of(r) == victim)
    older = tagged(raw.replace(b"Return-Path: <>", b"Return-Path: <>\r\nX-Delivered: first"), "old")
    mb.add_message("Junk", older)
    mb.misbehave("copy", "fail_before", error=CUT)
    assert world.sweep()[0] == 1
    code, _acc, err = world.sweep()
    assert code == 0, err
    mail.keep.add("old")  # neither lost nor taken for the copy of ours
    world.check(junk=mail.backscatter | {"old"})


def test_protect_another_client_flags_deleted_just_before_our_expunge(
    tmp_path, monkeypatch, capsys
):
    """No MOVE, no UIDPLUS, expunge_fallback = "protect": right after our STORE \\Deleted,
    another client flags one of the user's messages \\Deleted; our EXPUNGE must not take it."""
    w = World(tmp_path, monkeypatch, capsys)
    w.add("acc", "copy-plain", expunge_fallback="protect")

    def meddle(result: object) -> object:
        uid = w.uid_of("INBOX", "keep1")
        w.mb.folders["INBOX"].messages[uid].flags.add("\\Deleted")
        return result

    w.mb.misbehave("add_flags", "rewrite", rewrite=meddle)
    w.mail["acc"].user_deleted.add("keep1")
    code, _acc, err = w.sweep()
    w.check()
    assert code == 0, err


@pytest.mark.parametrize("fallback", ["protect", None])
def test_a_server_whose_search_deleted_hides_a_flagged_message(
    tmp_path, monkeypatch, capsys, fallback
) -> None:
    w = World(tmp_path, monkeypatch, capsys)
    keys = {"expunge_fallback": fallback} if fallback else {}
    w.add("acc", "copy-plain", **keys)
    hidden = w.uid_of("INBOX", "userdel")
    w.mb.misbehave("search_flag", "rewrite", rewrite=lambda uids: [u for u in uids if u != hidden])
    code, _acc, err = w.sweep()
    assert code == 0, err
    w.check()


# ---------------------------------------------------------------- undo


@pytest.mark.parametrize("shape", ["move", "copy-uidplus", "copy-plain"])
def test_undo_cut_after_its_move_then_nothing_comes_back(world: World, shape: str) -> None:
    mb = world.add("acc", shape)
    assert world.sweep()[0] == 0
    world.check()
    # the undo's first write: MOVE back; COPY back; without UIDPLUS the originals are still in
    # INBOX (flagged), so undo flags our copy in Junk \Deleted and lifts the originals' flags
    op = {"move": "move", "copy-uidplus": "copy", "copy-plain": "add_flags"}[shape]
    mb.misbehave(op, "perform_then_fail", error=CUT)
    code, _out, err = world.undo()
    assert code != 0
    one_line(err)
    # the next sweep must not send the restored messages back to Junk
    code, acc, err = world.sweep()
    assert code == 0, err
    assert acc["acc"]["acted"] == 0, acc
    world.check(junk=set())
    # and undoing again changes nothing, duplicates nothing
    world.undo()
    world.check(junk=set())


@pytest.mark.parametrize("shape", ["copy-uidplus", "copy-plain"])
def test_undo_of_a_run_left_copied(world: World, shape: str) -> None:
    """The COPY went through, removing the originals was refused: undo takes the copies out of
    Junk, the originals stay, and no later sweep finishes the move the user undid."""
    mb = world.add("acc", shape)
    op = "expunge_uids" if shape == "copy-uidplus" else "add_flags"
    # refused to the sweep, and again to the recovery the undo starts with
    for i in (1, 2):
        mb.misbehave(op, "fail_before", nth=i, error=MailboxError("NO [READ-ONLY] not allowed"))
    code, _acc, _err = world.sweep()
    assert code == 1
    code, _out, err = world.undo()
    assert code == 0, err
    world.check(junk=set())
    code, _acc, err = world.sweep()
    assert code == 0, err
    world.check(junk=set())
    for m in mb.contents("INBOX").values():
        if tag_of(m.data) not in world.mail["acc"].user_deleted:
            assert not {"\\Deleted", "$NdrBackscatter"} & m.flags, (tag_of(m.data), m.flags)


def test_undo_of_a_keyword_mode_run_leaves_each_message_once(tmp_path, monkeypatch, capsys):
    w = World(tmp_path, monkeypatch, capsys)
    w.add("acc", "copy-plain", expunge_fallback="keyword")
    assert w.sweep()[0] == 0
    code, _out, err = w.undo()
    assert code == 0, err
    w.check(junk=set())
    for m in w.mb.contents("INBOX").values():
        assert "$NdrBackscatter" not in m.flags


def test_undo_never_moves_what_a_wrong_copyuid_points_at(world: World) -> None:
    mb = world.mb
    spam = mb.add_message("Junk", tagged(bounces.ordinary("Cheap pills"), "spam"))

    def lie(mapping: object) -> object:
        assert isinstance(mapping, dict)
        return {src: spam for src in mapping}  # every copy "is" the spam message

    mb.misbehave("move", "rewrite", rewrite=lie)
    assert world.sweep()[0] == 0
    code, _out, err = world.undo()
    assert code == 0, err
    assert world.tags("Junk") == Counter({"spam": 1})
    world.mail["acc"].keep.add("spam")
    world.check(junk={"spam"})


def test_bounce_without_message_id_and_no_copyuid(tmp_path, monkeypatch, capsys) -> None:
    """MOVE without UIDPLUS: no COPYUID. Undo finds the bounce that has no Message-ID, the next
    sweep leaves it alone, and so does a sweep after the state database was deleted."""
    w = World(tmp_path, monkeypatch, capsys)
    w.add("acc", "move")
    w.mb.capabilities = w.mb.capabilities - {"UIDPLUS"}
    assert w.sweep()[0] == 0
    w.check()
    code, _out, err = w.undo()
    assert code == 0, err
    w.check(junk=set())
    assert w.sweep()[1]["acc"]["acted"] == 0
    w.check(junk=set())
    shutil.rmtree(w.state_dir)
    code, acc, err = w.sweep()
    assert code == 0 and acc["acc"]["acted"] == 0, acc
    w.check(junk=set())


def test_undo_of_flag_mode_removes_only_what_it_added(tmp_path, monkeypatch, capsys) -> None:
    w = World(tmp_path, monkeypatch, capsys)
    w.add("acc", "move", action="flag")
    # the user's own filter had already called one of them Junk
    own_junk = sorted(w.mail["acc"].backscatter)[0]
    w.mb.folders["INBOX"].messages[w.uid_of("INBOX", own_junk)].flags.add("Junk")
    assert w.sweep()[0] == 0
    flagged = {
        tag_of(m.data) for m in w.mb.contents("INBOX").values() if "$NdrBackscatter" in m.flags
    }
    assert flagged == w.mail["acc"].backscatter
    code, _out, err = w.undo()
    assert code == 0, err
    for m in w.mb.contents("INBOX").values():
        tag = tag_of(m.data)
        assert "$NdrBackscatter" not in m.flags
        if tag == own_junk:
            assert "Junk" in m.flags, "the user's own Junk keyword was removed"
        else:
            assert "Junk" not in m.flags, (tag, m.flags)


def test_undo_of_a_rule_keyword(tmp_path, monkeypatch, capsys) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "mark"\ndecision = "backscatter"\nflag = "Review"\n')
    w = World(tmp_path, monkeypatch, capsys)
    w.add("acc", "move", rules=[str(rules)])
    assert w.sweep()[0] == 0
    assert any("Review" in m.flags for m in w.mb.contents("INBOX").values())
    code, _out, err = w.undo()
    assert code == 0, err
    for m in w.mb.contents("INBOX").values():
        assert not {"Review", "$NdrBackscatter", "Junk"} & m.flags, m.flags


def test_undo_last_after_a_year_of_quiet_runs(world: World, monkeypatch) -> None:
    import ndr_sweeper.state as state_module

    assert world.sweep()[0] == 0
    clock = iter(range(1, 10_000))
    real_now = state_module._now
    monkeypatch.setattr(state_module, "_now", lambda: real_now() + timedelta(minutes=next(clock)))
    with open_state(world.state_dir) as state:
        for _ in range(1100):  # the service's no-op sweeps pile up
            run = state.start_run("acc", dry_run=False, command="sweep")
            state.finish_run(run, "ok", {"scanned": 0})
    code, _out, err = world.undo()
    assert code == 0, err
    world.check(junk=set())


def test_undo_last_undoes_every_account_the_last_sweep_touched(any_world: World) -> None:
    world = any_world
    world.add("two", "copy-uidplus")
    code, acc, err = world.sweep()
    assert code == 0 and acc["acc"]["acted"] and acc["two"]["acted"], err
    code, out, err = world.undo()
    assert code == 0, err
    assert "acc" in out and "two" in out
    world.check("acc", junk=set())
    world.check("two", junk=set())


@pytest.mark.parametrize("backend", ["memory", "maildir++", "mbsync"])
def test_undo_last_moves_on_to_the_run_before_once_one_is_undone(
    tmp_path, monkeypatch, capsys, backend
) -> None:
    """On a server without UIDPLUS the undone run was picked again and again."""
    w = World(tmp_path, monkeypatch, capsys, backend=backend)
    first = make_mail(n_backscatter=3, n_keep=1)
    w.add("acc", "copy-plain", mail=first, expunge_fallback="protect")
    assert w.sweep()[0] == 0
    late = tagged(bounces.dsn(bounces.new_id("forged")), "late")
    w.mb.add_message("INBOX", late)
    first.backscatter.add("late")
    assert w.sweep()[1]["acc"]["acted"] == 1
    assert w.undo()[0] == 0
    w.check(junk=first.backscatter - {"late"})
    code, _out, err = w.undo()
    assert code == 0, err
    w.check(junk=set())


def test_keyword_mode_never_copies_the_same_original_twice(tmp_path, monkeypatch, capsys):
    w = World(tmp_path, monkeypatch, capsys)
    w.add("acc", "copy-plain", expunge_fallback="keyword")
    assert w.sweep()[0] == 0
    junk = w.tags("Junk")
    code, acc, err = w.sweep("--full")
    assert code == 0 and acc["acc"]["acted"] == 0, err
    assert w.tags("Junk") == junk


# ---------------------------------------------------------------- also


def test_recovery_looks_junk_up_in_a_few_commands(world: World) -> None:
    """95 messages left half done with 500 in Junk: recovery must not search Junk once per
    message (6 to 22 s on Courier and Cyrus)."""
    mail = make_mail(n_backscatter=95, n_keep=2, no_id_bounce=False)
    mb = world.add("acc", "copy-uidplus", mail=mail)
    for i in range(500):
        mb.add_message("Junk", tagged(bounces.ordinary(f"spam {i}"), f"spam{i}"))
    mb.misbehave("copy", "perform_then_fail", error=CUT)
    assert world.sweep()[0] == 1
    mb.calls.clear()
    code, _acc, err = world.sweep()
    assert code == 0, err
    searches = [c for c in mb.calls if c[0].startswith("search")]
    assert len(searches) <= 5, Counter(c[0] for c in searches)
    mail.keep |= {f"spam{i}" for i in range(500)}
    world.check(junk=mail.backscatter | {f"spam{i}" for i in range(500)})


def test_one_message_id_normaliser(any_world: World) -> None:
    """A Sent message whose Message-ID carries a comment inside the brackets: its bounce is the
    user's own and must stay (the Sent index dropped that ID, the classifier kept it)."""
    world = any_world
    mail = Mail()
    mail.sent.append(
        bounces.original("placeholder@x").replace(
            b"<placeholder@x>", b"<lunch.42@example.org (sent from my phone)>"
        )
    )
    own = tagged(bounces.dsn("lunch.42@example.org"), "own")
    mail.inbox.append((own, ()))
    mail.keep.add("own")
    world.add("acc", "move", mail=mail)
    code, acc, err = world.sweep()
    assert code == 0, err
    assert acc["acc"]["own"] == 1 and acc["acc"]["acted"] == 0, acc
    world.check()


def test_ctrl_c_is_recorded_as_interrupted(world: World) -> None:
    world.mb.fail_next("fetch_messages", KeyboardInterrupt())
    code, _out, err = world.cli("sweep")
    assert code == 130
    (line,) = err.splitlines()
    assert line.startswith("ndr-sweeper: error: interrupted (Ctrl-C) while sweeping acc: ")
    code, out, _err = world.cli("history", "--json", "--all")
    runs = json.loads(out)
    assert runs[0]["status"] == "interrupted", runs[0]


def test_a_killed_run_is_recorded_as_interrupted(any_world: World) -> None:
    world = any_world
    with open_state(world.state_dir) as state:
        killed = state.start_run("acc", dry_run=False, command="sweep")
    assert world.sweep()[0] == 0
    with open_state(world.state_dir) as state:
        assert state.run(killed).status == "interrupted"


# ---------------------------------------------------------------- another client, meanwhile (CONDSTORE)


@pytest.mark.parametrize("condstore", [True, False])
def test_a_report_another_client_changes_after_the_scan_is_left_alone_until_next_sweep(
    tmp_path, monkeypatch, capsys, condstore: bool
) -> None:
    """The user's mail client flags one backscatter message while the sweep reads bodies. With
    CONDSTORE the sweep sees its MODSEQ move and leaves it for the next sweep (no error);
    without, there is nothing to see and it is moved like the others."""
    w = World(tmp_path, monkeypatch, capsys)
    mb = w.add("acc", "move")
    if not condstore:
        mb.capabilities = mb.capabilities - {"CONDSTORE"}
    target = sorted(w.mail["acc"].backscatter)[0]
    mb.meddle(
        "fetch_messages",
        lambda: mb.change_flags("INBOX", w.uid_of("INBOX", target), add=["\\Flagged"]),
    )
    code, acc, err = w.sweep()
    assert code == 0 and acc["acc"]["errors"] == 0, (err, acc)
    if condstore:
        w.check(junk=w.mail["acc"].backscatter - {target})
        assert any("changed by another client" in n for n in acc["acc"]["notes"]), acc
        code, acc, err = w.sweep()
        assert code == 0 and acc["acc"]["acted"] == 1, (err, acc)
    w.check()
    moved = next(m for m in mb.contents("Junk").values() if tag_of(m.data) == target)
    assert "\\Flagged" in moved.flags


def test_flag_mode_skips_a_message_changed_between_reading_and_flagging(
    tmp_path, monkeypatch, capsys
) -> None:
    """action = "flag": another client changes one message just before our STORE; the
    conditional STORE (UNCHANGEDSINCE) leaves it as it is, and the next sweep flags it."""
    w = World(tmp_path, monkeypatch, capsys)
    mb = w.add("acc", "move", action="flag")
    target = sorted(w.mail["acc"].backscatter)[1]
    mb.meddle(
        "add_flags", lambda: mb.change_flags("INBOX", w.uid_of("INBOX", target), add=["\\Seen"])
    )
    code, acc, err = w.sweep()
    assert code == 0 and acc["acc"]["errors"] == 0, (err, acc)

    def flagged() -> set[str | None]:
        return {
            tag_of(m.data) for m in mb.contents("INBOX").values() if "$NdrBackscatter" in m.flags
        }

    assert flagged() == w.mail["acc"].backscatter - {target}
    assert acc["acc"]["acted"] == len(w.mail["acc"].backscatter) - 1
    assert any("changed by another client" in n for n in acc["acc"]["notes"]), acc
    code, acc, err = w.sweep()
    assert code == 0 and acc["acc"]["acted"] == 1, (err, acc)
    assert flagged() == w.mail["acc"].backscatter
    code, _out, err = w.undo()  # the last sweep: the one message it flagged
    assert code == 0, err
    kept = mb.contents("INBOX")[w.uid_of("INBOX", target)].flags
    assert "\\Seen" in kept and "$NdrBackscatter" not in kept, kept
