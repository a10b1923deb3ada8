from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ndr_sweeper import state as state_mod
from ndr_sweeper.errors import LockedError, StateError
from ndr_sweeper.msgid import normalise_message_id
from ndr_sweeper.state import (
    SCHEMA_VERSION,
    JournalEntry,
    StateDB,
    account_lock,
    open_state,
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    with open_state(tmp_path / "state") as sdb:
        yield sdb


def sent_count(db: StateDB, account: str) -> int:
    return db._read(
        "SELECT COUNT(DISTINCT message_id) FROM sent_ids WHERE account = ?", (account,)
    )[0][0]


def entry(uid: int, account: str = "work", **kw: object) -> JournalEntry:
    fields: dict[str, object] = {
        "account": account,
        "folder": "INBOX",
        "uidvalidity": 7,
        "uid": uid,
        "bounce_message_id": f"bounce{uid}@mx.example",
        "original_message_id": f"orig{uid}@forged.example",
        "kind": "failed",
        "decision": "act",
        "reason": "original not in Sent",
        "action": "move",
        "dest_folder": "Junk",
    }
    fields.update(kw)
    return JournalEntry(**fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- files


def test_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        state_dir = tmp_path / "a" / "b"
        with open_state(state_dir) as sdb:
            sdb.set_cursor("work", "INBOX", 1, 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "state.db").stat().st_mode) == 0o600
    for extra in ("state.db-wal", "state.db-shm"):
        p = state_dir / extra
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0


def test_loose_existing_file_is_tightened(tmp_path: Path) -> None:
    with open_state(tmp_path):
        pass
    os.chmod(tmp_path / "state.db", 0o644)
    with open_state(tmp_path):
        pass
    assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o600


def test_wal_and_schema_version(tmp_path: Path) -> None:
    with open_state(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    with open_state(tmp_path) as sdb:  # reopening keeps it
        assert sdb.check() == []


def test_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A state file written by schema 1 keeps its Sent index, cursors and runs, and gains the
    index that case-insensitive Sent lookups use."""
    tmp_path.chmod(0o700)
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.executescript(state_mod._SCHEMA_V1 + "PRAGMA user_version = 1;")
    conn.execute("INSERT INTO sent_ids VALUES ('work', 'Kept@Example.com', 'Sent', 7)")
    conn.execute(
        "INSERT INTO runs (id, account, started, dry_run, command, status) "
        "VALUES ('20260101-000000-aaaa', 'work', '2026-01-01T00:00:00+00:00', 0, 'sweep', 'ok')"
    )
    conn.execute(
        "INSERT INTO journal (run_id, account, folder, uidvalidity, uid, kind, decision, "
        "reason, action, dest_folder, state, dest_uidvalidity, dest_uid, updated) VALUES "
        "('20260101-000000-aaaa', 'work', 'INBOX', 1, 5, 'failed', 'backscatter', 'r', 'move',"
        " 'Junk', 'done', 9, 44, '2026-01-01T00:00:00+00:00')"
    )
    conn.commit()
    conn.close()
    (tmp_path / "state.db").chmod(0o600)
    with open_state(tmp_path) as sdb:
        assert sdb.find_sent("work", ["kept@example.com"]) == "Kept@Example.com"
        assert sdb.check() == []
        (row,) = sdb.run_entries("20260101-000000-aaaa")
        assert (row.state, row.dest_uid, row.fingerprint, row.original_left) == (
            "done",
            44,
            None,
            False,
        )
        assert sdb.run("20260101-000000-aaaa").invocation is None
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"sent_ids_nocase", "journal_by_fingerprint", "runs_by_invocation"} <= names
    conn.close()


def test_version_3_database_gains_the_report_columns(tmp_path: Path) -> None:
    """Schema 4 adds where a bounce came from (its From's domain, the forged recipient's
    domain) to the journal; entries written before keep everything else and read as None."""
    tmp_path.chmod(0o700)
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.executescript(
        state_mod._SCHEMA_V1 + state_mod._SCHEMA_V2 + state_mod._SCHEMA_V3
        + "PRAGMA user_version = 3;"
    )  # fmt: skip
    conn.execute(
        "INSERT INTO runs (id, account, started, dry_run, command, status, invocation) "
        "VALUES ('20260101-000000-aaaa', 'work', '2026-01-01T00:00:00+00:00', 0, 'sweep', "
        "'ok', '20260101-000000-aaaa')"
    )
    conn.execute(
        "INSERT INTO journal (run_id, account, folder, uidvalidity, uid, kind, decision, "
        "reason, action, dest_folder, state, updated, fingerprint) VALUES "
        "('20260101-000000-aaaa', 'work', 'INBOX', 1, 5, 'failed', 'backscatter', 'r', 'move',"
        " 'Junk', 'done', '2026-01-01T00:00:00+00:00', 'fp')"
    )
    conn.commit()
    conn.close()
    (tmp_path / "state.db").chmod(0o600)
    with open_state(tmp_path) as sdb:
        (row,) = sdb.run_entries("20260101-000000-aaaa")
        assert (row.fingerprint, row.bounce_domain, row.recipient_domain) == ("fp", None, None)
        since = datetime(2025, 12, 1, tzinfo=UTC)
        (old,) = sdb.report_entries(since)
        assert (old.account, old.state, old.bounce_domain) == ("work", "done", None)
        run = sdb.start_run("work", dry_run=False, command="sweep")
        sdb.journal_add(
            run,
            [
                entry(
                    9, decision="backscatter", bounce_domain="mx.example", recipient_domain="ex.net"
                )
            ],
        )
        new = sdb.report_entries(since, account="work")[-1]
        assert (new.bounce_domain, new.recipient_domain) == ("mx.example", "ex.net")
        assert sdb.report_entries(since, account="home") == []
        assert [r.id for r in sdb.sweep_runs_since(since)] == ["20260101-000000-aaaa", run]
        assert sdb.check() == []
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    conn.close()


def test_corrupt_file(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    (tmp_path / "state.db").write_bytes(b"this is not a database at all\x00\xff" * 200)
    with pytest.raises(StateError) as info:
        open_state(tmp_path)
    assert str(info.value) == (
        f"state database {tmp_path / 'state.db'} is damaged: move it aside and run again; "
        "the Sent index is rebuilt, the journal of earlier runs is lost"
    )


def test_newer_schema_refused(tmp_path: Path) -> None:
    with open_state(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StateError, match="newer ndr-sweeper"):
        open_state(tmp_path)


def test_state_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(StateError, match="not a directory"):
        open_state(tmp_path / "f")


def test_full_disk_is_state_error(db: StateDB) -> None:
    run = db.start_run("work", dry_run=False, command="sweep")
    db._conn.execute("PRAGMA max_page_count = 1")  # simulate a full disk
    big = [entry(i, reason="x" * 2000) for i in range(200)]
    with pytest.raises(StateError, match="disk is full"):
        db.journal_add(run, big)
    db._conn.execute("PRAGMA max_page_count = 1073741823")
    assert db.run_entries(run) == []  # the whole batch was rolled back


def test_read_only_is_state_error(db: StateDB) -> None:
    db._conn.execute("PRAGMA query_only = ON")
    with pytest.raises(StateError, match=r"cannot write to state database .*nothing was acted on"):
        db.start_run("work", dry_run=False, command="sweep")


# --------------------------------------------------------------------------- cursors


def test_cursors(db: StateDB) -> None:
    assert db.get_cursor("work", "INBOX") is None
    db.set_cursor("work", "INBOX", 100, 5)
    db.set_cursor("work", "INBOX", 100, 9)
    db.set_cursor("home", "INBOX", 3, 1)
    assert db.get_cursor("work", "INBOX") == (100, 9)
    assert db.get_cursor("home", "INBOX") == (3, 1)


# --------------------------------------------------------------------------- Sent index


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("<a@b>", "a@b"),
        ("  <Ab.C@D>\r\n", "Ab.C@D"),
        ("a@b", "a@b"),
        ("<a\r\n @b>", "a@b"),
        ("<>", None),
    ],
)
def test_normalise_message_id(raw: str, norm: str | None) -> None:
    assert normalise_message_id(raw) == norm


def test_sent_index(db: StateDB) -> None:
    assert db.sent_cursor("work", "Sent") is None
    n = db.add_sent_ids(
        "work",
        "Sent",
        42,
        [(1, ["<One@example.com>"]), (2, ["two@example.com", "<x-ms-orig@outlook>"]), (3, [])],
        last_uid=3,
    )
    assert n == 3
    assert db.sent_cursor("work", "Sent") == (42, 3)
    assert sent_count(db, "work") == 3
    assert db.find_sent("work", ["<One@example.com>"]) == "One@example.com"
    # another case is the same message (a relay changed it): found, as Sent spells it
    assert db.find_sent("work", ["ONE@EXAMPLE.COM"]) == "One@example.com"
    assert db.find_sent("work", ["nope", "one@example.com"]) == "One@example.com"
    # an exact match wins over an earlier one that matches only ignoring case
    assert db.find_sent("work", ["TWO@example.com", "x-ms-orig@outlook"]) == "x-ms-orig@outlook"
    assert db.find_sent("work", ["one@example.co"]) is None
    # the first of the given ids that is indexed, in the order given
    assert (
        db.find_sent("work", ["nope", "x-ms-orig@outlook", "two@example.com"])
        == "x-ms-orig@outlook"
    )
    assert db.find_sent("work", []) is None
    # other accounts do not see it
    assert db.find_sent("home", ["two@example.com"]) is None
    # indexing the same again is harmless
    db.add_sent_ids("work", "Sent", 42, [(2, ["two@example.com"])], last_uid=4)
    assert sent_count(db, "work") == 3 and db.sent_cursor("work", "Sent") == (42, 4)


def test_find_sent_many_answers_as_find_sent_does(db: StateDB) -> None:
    db.add_sent_ids(
        "work",
        "Sent",
        42,
        [(1, ["<One@example.com>"]), (2, ["two@example.com", "<x-ms-orig@outlook>"])]
        + [(10 + i, [f"m{i}@example.org"]) for i in range(700)],
        last_uid=800,
    )
    lists = [
        ["<One@example.com>"],
        ["ONE@EXAMPLE.COM"],
        ["TWO@example.com", "x-ms-orig@outlook"],  # exact beats a case match...
        ["TWO@example.com"],  # ...which is found when it is all there is
        ["nope", "x-ms-orig@outlook", "two@example.com"],
        [],
        ["one@example.co", "<>", "none"],
        *([f"m{i}@example.org", f"gone{i}@example.org"] for i in range(0, 1400, 2)),
        *([f"M{i}@EXAMPLE.ORG"] for i in range(1, 1400, 2)),
    ]
    queries: list[str] = []
    db._conn.set_trace_callback(queries.append)
    try:
        many = db.find_sent_many("work", lists)
    finally:
        db._conn.set_trace_callback(None)
    assert many == [db.find_sent("work", ids) for ids in lists]
    assert many[:7] == [
        "One@example.com",
        "One@example.com",
        "x-ms-orig@outlook",
        "two@example.com",
        "x-ms-orig@outlook",
        None,
        None,
    ]
    assert many[7 + 349] == "m698@example.org" and many[7 + 350] is None  # m700 is not indexed
    assert many[-1] is None and many[-351] == "m699@example.org"  # M699@EXAMPLE.ORG: its case
    # 2,106 IDs: a handful of queries of 500, not one or two for each of the 1,407 lists
    assert len([q for q in queries if q.lstrip().upper().startswith("SELECT")]) <= 10


def test_sent_uidvalidity_drop(db: StateDB) -> None:
    db.add_sent_ids("work", "Sent", 1, [(1, ["a@x"]), (2, ["b@x"])], last_uid=2)
    db.add_sent_ids("work", "Sent Items", 5, [(1, ["c@x"])], last_uid=1)
    db.drop_sent_folder("work", "Sent")
    assert db.sent_cursor("work", "Sent") is None
    assert db.find_sent("work", ["a@x", "b@x"]) is None
    assert db.find_sent("work", ["c@x"]) == "c@x"
    assert db.sent_cursor("work", "Sent Items") == (5, 1)
    # A changed UIDVALIDITY given to add_sent_ids drops the old entries too.
    db.add_sent_ids("work", "Sent Items", 6, [(1, ["d@x"])], last_uid=1)
    assert db.find_sent("work", ["c@x"]) is None
    assert db.find_sent("work", ["d@x"]) == "d@x"
    assert db.sent_cursor("work", "Sent Items") == (6, 1)


def test_find_sent_many_ids(db: StateDB) -> None:
    db.add_sent_ids("work", "Sent", 1, [(i, [f"m{i}@x"]) for i in range(2000)], last_uid=2000)
    assert db.find_sent("work", [f"z{i}@x" for i in range(1500)] + ["m1999@x"]) == "m1999@x"
    assert sent_count(db, "work") == 2000


# --------------------------------------------------------------------------- journal


def test_journal_round_trip(db: StateDB) -> None:
    run = db.start_run("work", dry_run=False, command="sweep work")
    assert len(run) == len("20261127-172600-ab12")
    ids = db.journal_add(run, [entry(i) for i in range(1, 101)])
    assert len(ids) == 100 and ids == sorted(ids) and len(set(ids)) == 100
    rows = db.run_entries(run)
    assert [r.id for r in rows] == ids
    assert rows[0].uid == 1 and rows[0].state == "planned" and rows[0].dest_uid is None
    assert rows[0].original_message_id == "orig1@forged.example"

    db.journal_update(ids[:50], "copied", dest_uidvalidity=900, dest_uids={ids[0]: 5000})
    db.journal_update(ids[:50], "done")
    db.journal_update(ids[50:], "failed", error="NO [TRYCREATE] Junk")
    rows = {r.id: r for r in db.run_entries(run)}
    assert rows[ids[0]].state == "done"
    assert rows[ids[0]].dest_uidvalidity == 900 and rows[ids[0]].dest_uid == 5000
    assert rows[ids[1]].dest_uid is None
    assert rows[ids[99]].state == "failed" and rows[ids[99]].error == "NO [TRYCREATE] Junk"
    db.journal_update([ids[0]], "undone")
    assert db.run_entries(run)[0].state == "undone"

    db.finish_run(run, "ok", {"moved": 50, "failed": 50}, None)
    (r,) = db.runs("work")
    assert r.id == run and r.status == "ok" and not r.dry_run
    assert r.counts == {"moved": 50, "failed": 50} and r.error is None
    assert r.finished is not None and r.finished >= r.started
    assert r.command == "sweep work"


def test_journal_bad_input(db: StateDB) -> None:
    run = db.start_run("work", dry_run=False, command="sweep")
    assert db.journal_add(run, []) == []
    with pytest.raises(ValueError, match="unknown run"):
        db.journal_add("nope", [entry(1)])
    with pytest.raises(ValueError, match="state"):
        db.journal_add(run, [entry(1, state="bogus")])
    (i,) = db.journal_add(run, [entry(1)])
    with pytest.raises(ValueError, match="state"):
        db.journal_update([i], "gone")
    with pytest.raises(ValueError, match="unknown"):
        db.journal_update([i, 12345], "done")
    assert db.run_entries(run)[0].state == "planned"  # rolled back


def test_pending_entries(db: StateDB) -> None:
    crashed = db.start_run("work", dry_run=False, command="sweep")
    a, b, c, d = db.journal_add(crashed, [entry(1), entry(2), entry(3), entry(4)])
    db.journal_update([b], "copied", dest_uidvalidity=9, dest_uids={b: 77})
    db.journal_update([c], "done")
    db.journal_update([d], "failed", error="x")
    dry = db.start_run("work", dry_run=True, command="sweep --dry-run")
    db.journal_add(dry, [entry(5)])
    other = db.start_run("home", dry_run=False, command="sweep")
    db.journal_add(other, [entry(6, account="home")])
    pending = db.pending_entries("work")
    assert [(p.id, p.state) for p in pending] == [(a, "planned"), (b, "copied")]
    assert pending[1].dest_uid == 77 and pending[1].run_id == crashed


def test_runs_listing_and_last_run(db: StateDB) -> None:
    assert db.runs() == [] and db.last_runs() == {}
    r1 = db.start_run("work", dry_run=False, command="sweep")
    r2 = db.start_run("home", dry_run=False, command="sweep")
    r3 = db.start_run("work", dry_run=True, command="sweep -n")
    assert db.runs()[0].status == "running"
    assert [r.id for r in db.runs()] == [r3, r2, r1]  # newest first, also within a second
    assert [r.id for r in db.runs(limit=1)] == [r3]
    assert {r.id for r in db.runs("work")} == {r1, r3}
    assert {a: r.id for a, r in db.last_runs().items()} == {"work": r1, "home": r2}
    assert db.run(r3) is not None and db.run(r3).dry_run  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        db.finish_run("nope", "ok", {}, None)


def test_account_status(db: StateDB) -> None:
    now = datetime(2026, 11, 27, 17, 26, tzinfo=UTC)
    db.set_account_status("work", now, {"moved": 3}, None, now + timedelta(minutes=15))
    db.set_account_status("home", None, {}, "login failed", None, run_id="r1")
    db.set_account_status("work", now, {"moved": 4}, None, None)
    home, work = db.account_status()
    assert work.account == "work" and work.counts == {"moved": 4} and work.last_run == now
    assert work.next_run is None
    assert home.error == "login failed" and home.last_run is None and home.run_id == "r1"
    assert [s.account for s in db.account_status("home")] == ["home"]


def test_threads_share_one_db(db: StateDB) -> None:
    run = db.start_run("work", dry_run=False, command="sweep")

    def worker(base: int) -> None:
        for i in range(20):
            db.journal_add(run, [entry(base + i)])

    threads = [threading.Thread(target=worker, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(db.run_entries(run)) == 80


# --------------------------------------------------------------------------- lock


HOLDER = textwrap.dedent(
    """
    import sys
    from ndr_sweeper.state import account_lock
    with account_lock(sys.argv[1], "work"):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def test_lock_across_processes(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "locked"
        lock_file = tmp_path / "locks" / "work.lock"
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "locks").stat().st_mode) == 0o700
        with pytest.raises(LockedError) as info, account_lock(tmp_path, "work"):
            pass  # pragma: no cover
        assert str(info.value) == (
            f"another ndr-sweeper is sweeping account 'work' (pid {proc.pid}): "
            "wait for it to finish"
        )
        with pytest.raises(LockedError), account_lock(tmp_path, "work", wait=0.3):
            pass  # pragma: no cover
        # Another account is not blocked.
        with account_lock(tmp_path, "home"):
            pass
        # Waiting long enough gets the lock once the holder lets go.
        threading.Timer(0.3, proc.stdin.close).start()
        with account_lock(tmp_path, "work", wait=10) as path:
            assert path.read_text().strip() == str(os.getpid())
    finally:
        proc.kill()
        proc.wait()


def test_lock_is_exclusive_within_a_process(tmp_path: Path) -> None:
    held = pytest.raises(LockedError, match=f"pid {os.getpid()}")
    with account_lock(tmp_path, "work"), held, account_lock(tmp_path, "work"):
        pass  # pragma: no cover
    with account_lock(tmp_path, "work"):  # released
        pass


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_lock_rejects_path_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError), account_lock(tmp_path, name):
        pass  # pragma: no cover


# --------------------------------------------------------------------------- quiet runs


def test_quiet_runs_are_folded_into_a_count(db: StateDB) -> None:
    """A service sweeping every minute adds no rows: of the runs that found nothing, only the
    last of each account is kept; runs that found or changed something and errors all stay."""
    acted = db.start_run("work", dry_run=False, command="sweep")
    db.journal_add(acted, [entry(1)])
    db.finish_run(acted, "ok", {"scanned": 3, "acted": 1})
    failed = db.start_run("work", dry_run=False, command="sweep")
    db.finish_run(failed, "failed", {}, "server went away")
    quiet = []
    for _ in range(50):
        run = db.start_run("work", dry_run=False, command="sweep")
        db.finish_run(run, "ok", {"scanned": 0})
        quiet.append(run)
    other = db.start_run("home", dry_run=False, command="sweep")
    db.finish_run(other, "ok", {"scanned": 5})  # read ordinary mail only: quiet too
    kept = {r.id for r in db.runs(limit=1000)}
    assert kept == {acted, failed, quiet[-1], other}
    (summary,) = db.quiet_runs("work")
    assert summary.runs == 49
    assert {r.id for r in db.runs(limit=1000, quiet=False)} == {acted, failed}
    assert db.last_runs()["work"].id == quiet[-1] and db.last_runs()["home"].id == other


def test_a_year_of_quiet_runs_stays_small_and_fast(db: StateDB) -> None:
    import time as _time

    acted = db.start_run("work", dry_run=False, command="sweep")
    db.journal_add(acted, [entry(1, state="done")])
    db.finish_run(acted, "ok", {"acted": 1})
    for _ in range(35_000 // 50):  # a fiftieth of a year of 15-minute no-op sweeps, 50x faster
        run = db.start_run("work", dry_run=False, command="sweep")
        db.finish_run(run, "ok", {})
    t0 = _time.perf_counter()
    runs = db.last_undoable_invocation()
    took = _time.perf_counter() - t0
    assert [r.id for r in runs] == [acted]
    assert len(db.runs(limit=100_000)) == 2
    assert took < 0.5


def test_server_text_is_stored_escaped_and_bounded(db: StateDB) -> None:
    """Errors carry server answers: stored with their controls escaped (history and status
    print them later), at most ERROR_MAX characters. Folder names, the journal's keys, are
    stored exactly."""
    from ndr_sweeper.state import ERROR_MAX

    hostile = "NO \x1b]0;pwned\x07 \x1b]52;c;eA==\x07\x1b[2J\r\n\x9b \u202e"
    escaped = "NO \\x1b]0;pwned\\x07 \\x1b]52;c;eA==\\x07\\x1b[2J\\r\\n\\x9b \\u202e"
    run = db.start_run("work", dry_run=False, command="sweep")
    (i,) = db.journal_add(run, [entry(1, folder="Odd\x9bFolder")])
    db.journal_update([i], "failed", error=hostile)
    (row,) = db.run_entries(run)
    assert row.error == escaped and row.folder == "Odd\x9bFolder"
    db.finish_run(run, "failed", {}, hostile + "x" * 10_000)
    (r,) = db.runs("work")
    assert r.error is not None and r.error.startswith(escaped)
    assert len(r.error) == ERROR_MAX and r.error.endswith("...")
    db.set_account_status("work", None, {}, hostile, None)
    (s,) = db.account_status()
    assert s.error == escaped


def test_a_sent_folders_extent(db: StateDB) -> None:
    """The oldest message a Sent folder held when indexed: it only grows back as older mail
    is indexed, is reset with the folder's UIDVALIDITY, and is overwritten after deletions."""
    from datetime import timedelta

    t = datetime(2024, 5, 1, tzinfo=UTC)
    assert db.sent_extent("work", "Sent") == (None, None)
    db.add_sent_ids("work", "Sent", 1, [(1, ["a@x"])], last_uid=1, oldest=t, messages=1)
    db.add_sent_ids("work", "Sent", 1, [(2, ["b@x"])], 2, oldest=t + timedelta(days=9), messages=2)
    assert db.sent_extent("work", "Sent") == (t, 2)
    db.add_sent_ids("work", "Sent", 1, [(3, ["c@x"])], 3, oldest=t - timedelta(days=1), messages=3)
    assert db.sent_extent("work", "Sent") == (t - timedelta(days=1), 3)
    db.add_sent_ids("work", "Sent", 1, [], 3, messages=3)  # nothing new: the oldest stays
    assert db.sent_extent("work", "Sent")[0] == t - timedelta(days=1)
    db.set_sent_extent("work", "Sent", t + timedelta(days=30), 1)  # old mail was purged
    assert db.sent_extent("work", "Sent") == (t + timedelta(days=30), 1)
    db.add_sent_ids("work", "Sent", 2, [(1, ["d@x"])], 1, oldest=t + timedelta(days=60), messages=1)
    assert db.sent_extent("work", "Sent") == (t + timedelta(days=60), 1)  # renumbered: anew
