"""The sweep against a real Dovecot: what users rely on, proven on the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import bounces
import lab

pytestmark = pytest.mark.imap

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Box:
    """A filled lab mailbox and what should happen to each message."""

    env: lab.LabEnv
    config: Path
    xdg: dict[str, str]
    backscatter: set[str]  # bounce Message-IDs that must end in Junk
    keep: set[str]  # Message-IDs that must stay in INBOX
    user_deleted: str  # a message the user flagged \Deleted and did not expunge

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.xdg, *args, "--config", str(self.config))

    def folders(self) -> dict[str, list[lab.FolderEntry]]:
        client = self.env.connect()
        try:
            return {f: lab.read_folder(client, f) for f in ("INBOX", "Junk", "Sent", "Trash")}
        finally:
            client.logout()

    def ids(self, folder: str) -> list[str | None]:
        return [e.message_id for e in self.folders()[folder]]


def run_cli(xdg: dict[str, str], *args: str, env_extra: dict[str, str] | None = None):
    env = {**os.environ, **xdg, "NO_COLOR": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "ndr_sweeper", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def write_config(path: Path, env: lab.LabEnv, **keys: object) -> Path:
    values: dict[str, object] = {
        "name": "lab",
        "host": env.host,
        "port": env.port,
        "security": "plain",
        "username": env.user,
        "password_command": f"printf %s {env.password}",
        "min_age": "0s",
    }
    values.update(keys)
    lines = ["[[accounts]]"]
    for k, v in values.items():
        lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def xdg_dirs(base: Path) -> dict[str, str]:
    (base / "config").mkdir(parents=True, exist_ok=True)
    (base / "state").mkdir(parents=True, exist_ok=True)
    return {"XDG_CONFIG_HOME": str(base / "config"), "XDG_STATE_HOME": str(base / "state")}


def fill(env: lab.LabEnv) -> tuple[set[str], set[str], str]:
    """Sent: three messages (one known only by its provider's original-ID header).
    INBOX: own bounces, backscatter, an NDR without original, look-alikes, ordinary mail."""
    sent_a, sent_b, sent_c = bounces.new_id(), bounces.new_id(), bounces.new_id()
    sent = [
        bounces.original(sent_a),
        bounces.original(sent_b),
        # Outlook.com rewrote the ID on submission and kept the client's in its own header.
        bounces.original(
            "AM0PR01MB.rewritten." + sent_c,
            extra_headers=f"X-Microsoft-Original-Message-ID: <{sent_c}>\r\n",
        ),
    ]
    own = [
        bounces.dsn(sent_a, bounce_id=bounces.new_id("own")),
        bounces.dsn(sent_c, headers_only=True, bounce_id=bounces.new_id("own")),
    ]
    backscatter_ids = [bounces.new_id("bs") for _ in range(6)]
    backscatter = [bounces.dsn(bounces.new_id("forged"), bounce_id=b) for b in backscatter_ids]
    others = [
        bounces.freetext_ndr_without_original(),
        bounces.autoreply(sent_b),
        bounces.autoreply(bounces.new_id("forged")),
        bounces.ordinary(),
        bounces.ordinary("Undeliverable: your parcel"),
    ]
    deleted_id = bounces.new_id("userdel")
    deleted = lab.LabMessage(bounces.original(deleted_id), flags=[r"\Deleted"])
    client = env.connect()
    try:
        lab.append_messages(client, "Sent", sent)
        inbox = [*others[:2], own[0], *backscatter[:3], *others[2:], own[1], *backscatter[3:]]
        lab.append_messages(client, "INBOX", [*inbox, deleted])
    finally:
        client.logout()
    keep = {m for m in (_msgid(x) for x in [*own, *others]) if m} | {deleted_id}
    return set(backscatter_ids), keep, deleted_id


def _msgid(raw: bytes) -> str | None:
    import re

    m = re.search(rb"^Message-ID: <([^>]+)>", raw, re.M)
    return m.group(1).decode() if m else None


@pytest.fixture(params=["move", "nomove"])
def box(request, new_imap_user, tmp_path) -> Box:
    server = request.getfixturevalue("dovecot" if request.param == "move" else "dovecot_nomove")
    env = new_imap_user(server)
    backscatter, keep, deleted = fill(env)
    xdg = xdg_dirs(tmp_path)
    config = write_config(tmp_path / "config.toml", env)
    return Box(env, config, xdg, backscatter, keep, deleted)


def moved_away(e: lab.FolderEntry) -> bool:
    """Without MOVE and UIDPLUS nothing is expunged: a moved original stays in INBOX flagged
    \\Deleted and $NdrBackscatter, and after an undo our copy stays in Junk flagged \\Deleted,
    until the user's client expunges them. (The user's own \\Deleted message has neither.)"""
    return r"\Deleted" in e.flags and (
        "$NdrBackscatter" in e.flags or not (e.message_id or "").startswith("userdel")
    )


def assert_swept(box: Box) -> None:
    folders = box.folders()
    folders["INBOX"] = [e for e in folders["INBOX"] if not moved_away(e)]
    inbox = {e.message_id for e in folders["INBOX"]}
    junk = [e.message_id for e in folders["Junk"]]
    assert sorted(junk) == sorted(box.backscatter), "Junk must hold exactly the backscatter, once"
    assert inbox == box.keep, "INBOX must keep everything else"
    deleted = [e for e in folders["INBOX"] if e.message_id == box.user_deleted]
    assert deleted and r"\Deleted" in deleted[0].flags, "the user's \\Deleted message survives"
    assert not any(
        r"\Deleted" in e.flags
        for e in folders["INBOX"]
        if e.message_id in box.keep and e.message_id != box.user_deleted
    )


def test_sweep_moves_exactly_the_backscatter(box: Box) -> None:
    result = box.run("sweep", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    acc = report["accounts"][0]
    assert acc["backscatter"] == 6 and acc["acted"] == 6
    assert acc["own"] == 2
    assert acc["undetermined"] == 1
    assert acc["error"] is None
    assert_swept(box)
    decided = {d["bounce_message_id"]: d["decision"] for d in acc["decisions"]}
    assert all(decided[b] == "backscatter" for b in box.backscatter)


def test_rerun_changes_nothing_and_undo_restores_everything(box: Box) -> None:
    before = box.folders()
    assert box.run("sweep").returncode == 0
    after_first = box.folders()
    again = box.run("sweep", "--json")
    assert again.returncode == 0, again.stderr
    acc = json.loads(again.stdout)["accounts"][0]
    assert acc["scanned"] == 0 and acc["acted"] == 0
    assert box.folders() == after_first

    undo = box.run("undo", "--last")
    assert undo.returncode == 0, undo.stderr
    assert "6 message(s) put back" in undo.stdout
    restored = box.folders()
    assert [e for e in restored["Junk"] if not moved_away(e)] == []
    assert sorted(e.message_id for e in restored["INBOX"]) == sorted(
        e.message_id for e in before["INBOX"]
    )
    # and the put-back messages are not junked again by the next sweep
    assert box.run("sweep").returncode == 0
    assert [e for e in box.folders()["Junk"] if not moved_away(e)] == []


def test_dry_run_changes_nothing_and_shows_the_plan(box: Box) -> None:
    before = box.folders()
    result = box.run("sweep", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert box.folders() == before
    # the preview names each message as the user sees it, the summary comes last
    assert result.stdout.count("-> Junk") == 6
    assert result.stdout.count("Undelivered Mail Returned to Sender") >= 6
    assert "MAILER-DAEMON@mx.example.net" in result.stdout
    assert result.stdout.index("-> Junk") < result.stdout.index("dry run, nothing changed")
    verbose = box.run("sweep", "--dry-run", "-v")
    for bounce_id in box.backscatter:
        assert bounce_id in verbose.stdout
    assert ": Sent folders checked: Sent\n" in result.stdout
    # a real run afterwards still sees everything (the dry run moved no cursor)
    assert box.run("sweep").returncode == 0
    assert_swept(box)


def test_history_lists_runs(box: Box) -> None:
    box.run("sweep")
    out = box.run("history", "--json")
    runs = json.loads(out.stdout)
    assert runs and runs[0]["counts"]["acted"] == 6


def test_wrong_password_is_one_clear_line(dovecot, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot)
    xdg = xdg_dirs(tmp_path)
    secret = "Wrong-Secret-4711"
    cfg = write_config(tmp_path / "c.toml", env, password_command=f"printf %s {secret}")
    result = run_cli(xdg, "sweep", "--config", str(cfg))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "refused" in result.stderr and "lab" in result.stderr
    assert secret not in result.stderr + result.stdout
    for p in Path(xdg["XDG_STATE_HOME"]).rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes()


def test_missing_junk_folder_is_a_clear_error_and_moves_nothing(dovecot, new_imap_user, tmp_path):
    # The lab server re-creates its special-use folders at login, so name one that is not there.
    env = new_imap_user(dovecot)
    fill(env)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env, junk_folder="Spam")
    result = run_cli(xdg, "sweep", "--config", str(cfg))
    assert result.returncode != 0
    assert "junk_folder" in result.stderr
    assert "Traceback" not in result.stderr
    client = env.connect()
    assert len(lab.read_folder(client, "INBOX")) == 14
    client.logout()


def test_bounce_of_mail_in_a_second_sent_folder_is_kept(dovecot, new_imap_user, tmp_path):
    """Apple Mail saved a message in "Sent Messages" beside the server's \\Sent folder: its
    bounce is the user's own and stays; a forged one still goes to Junk."""
    env = new_imap_user(dovecot)
    mine, forged = bounces.new_id(), bounces.new_id("forged")
    own, back = bounces.new_id("own"), bounces.new_id("bs")
    client = env.connect()
    try:
        client.create_folder("Sent Messages")
        lab.append_messages(client, "Sent Messages", [bounces.original(mine)])
        lab.append_messages(
            client, "INBOX", [bounces.dsn(mine, bounce_id=own), bounces.dsn(forged, bounce_id=back)]
        )
    finally:
        client.logout()
    xdg = xdg_dirs(tmp_path)
    result = run_cli(
        xdg, "sweep", "--json", "--config", str(write_config(tmp_path / "c.toml", env))
    )
    assert result.returncode == 0, result.stderr
    acc = json.loads(result.stdout)["accounts"][0]
    assert (acc["own"], acc["backscatter"], acc["acted"]) == (1, 1, 1)
    assert acc["sent_folders"] == ["Sent", "Sent Messages"]  # the flagged one first
    client = env.connect()
    try:
        assert [m.message_id for m in lab.read_folder(client, "INBOX")] == [own]
        assert [m.message_id for m in lab.read_folder(client, "Junk")] == [back]
    finally:
        client.logout()


def test_tls_with_the_lab_ca(dovecot, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot)
    backscatter, _, _ = fill(env)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(
        tmp_path / "c.toml",
        env,
        security="tls",
        port=env.tls_port,
        tls_ca_file=env.cafile,
        host="localhost",
    )
    result = run_cli(xdg, "sweep", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    client = env.connect()
    assert {e.message_id for e in lab.read_folder(client, "Junk")} == backscatter
    client.logout()


def test_tls_without_the_ca_is_refused(dovecot, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(
        tmp_path / "c.toml", env, security="tls", port=env.tls_port, host="localhost"
    )
    result = run_cli(xdg, "sweep", "--config", str(cfg))
    assert result.returncode != 0
    assert "tls_ca_file" in result.stderr
    assert "Traceback" not in result.stderr


def test_uidvalidity_change_rescans_the_folder(dovecot, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot)
    client = env.connect()
    client.create_folder("Bounces")
    first = [bounces.dsn(bounces.new_id("forged")) for _ in range(3)]
    lab.append_messages(client, "Bounces", first)
    client.logout()
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env, folders=["Bounces"])
    assert run_cli(xdg, "sweep", "--config", str(cfg)).returncode == 0

    # The folder is recreated: new UIDVALIDITY, UIDs start at 1 again (below the old cursor).
    client = env.connect()
    client.delete_folder("Bounces")
    client.create_folder("Bounces")
    late = bounces.dsn(bounces.new_id("forged"), bounce_id=bounces.new_id("late"))
    lab.append_messages(client, "Bounces", [late])
    client.logout()
    result = run_cli(xdg, "sweep", "--config", str(cfg), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accounts"][0]["acted"] == 1
    client = env.connect()
    assert len(lab.read_folder(client, "Junk")) == 4
    assert lab.read_folder(client, "Bounces") == []
    client.logout()


def test_a_refused_login_reads_as_the_server_wrote_it(dovecot, new_imap_user, tmp_path) -> None:
    env = new_imap_user(dovecot)
    xdg = xdg_dirs(tmp_path)
    cfg = write_config(tmp_path / "c.toml", env, password_command="printf %s wrong")
    result = run_cli(xdg, "sweep", "--config", str(cfg))
    assert "([AUTHENTICATIONFAILED] Authentication failed.)" in result.stderr, result.stderr
    assert "b'" not in result.stderr


def test_every_screen_fits_80_columns_through_a_pipe(box: Box) -> None:
    """sweep --dry-run -v, sweep, history and status as a new user runs them, with COLUMNS=80
    and output to a pipe: no line is wider, no header is broken, the numbers match."""
    env = {"COLUMNS": "80"}
    outputs = {}
    for args in (("sweep", "--dry-run", "-v"), ("sweep",), ("history",), ("status",)):
        out = run_cli(box.xdg, *args, "--config", str(box.config), env_extra=env)
        assert out.returncode == 0, out.stderr
        outputs[args[0] + ("-dry" if "--dry-run" in args else "")] = out.stdout
        for line in (out.stdout + out.stderr).splitlines():
            assert len(line.rstrip()) <= 80, f"{args}: {len(line)} columns: {line!r}"
    table = outputs["sweep-dry"].splitlines()
    header = next(i for i, ln in enumerate(table) if ln.startswith("account "))
    assert table[header].split() == [
        "account", "scanned", "NDRs", "own", "backscatter", "would", "act",
        "undetermined", "waiting", "errors",
    ]  # fmt: skip
    would = table[header + 2].split()
    done = outputs["sweep"].splitlines()
    row = done[next(i for i, ln in enumerate(done) if ln.startswith("account ")) + 2].split()
    assert would[5] == row[5] == "6"  # what the preview said is what the sweep did


def test_the_dry_run_after_an_undo_says_what_the_sweep_will_do(box: Box) -> None:
    """After `undo`, the backscatter is still backscatter, but nothing would move: the dry
    run's count is the real sweep's, and a note says why."""
    assert box.run("sweep").returncode == 0
    assert box.run("undo", "--last").returncode == 0
    dry = json.loads(box.run("sweep", "--dry-run", "--full", "--json").stdout)["accounts"][0]
    real = json.loads(box.run("sweep", "--full", "--json").stdout)["accounts"][0]
    assert dry["backscatter"] == real["backscatter"] == 6
    assert dry["would_act"] == real["acted"] == 0
    assert any("put back by an earlier undo" in n for n in dry["notes"]), dry["notes"]
