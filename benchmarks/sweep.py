"""Sweep speed on large mailboxes, against a throw-away lab Dovecot on loopback.

Usage: python benchmarks/sweep.py [--sizes 10000,50000,100000] [--new 100] [--reps 1]
                                  [--runs 1] [--bounce-ratio 0.1] [--matched 0.7] [--size 3000]
                                  [--real [CORPUS]] [--profile DIR] [--compare TREE]
                                  [--parts]

For every size N: a fresh lab user gets N INBOX messages (a tenth of them bounces, 70% of those
naming a Sent message) and N/2 Sent messages, appended with MULTIAPPEND.  Synthetic (default):
DSN bounces with a message/rfc822 original and ordinary mail, all about ``--size`` bytes.
``--real``: the NDRs of the labelled corpus (``../shared/corpus/dev``, or CORPUS; read at run
time, skipped with a message when it is missing) among ordinary mail of every size and shape
(``benchmarks/realmail.py``: 1 KB to 4.5 MB, attachments, DKIM, List-*, HTML; 1 GB at 20,000).

Then ``--runs`` times, each on a fresh copy of that mailbox (the user's mail directory copied
to a new user) and in this order:

  baseline  the bare transfer a first sweep needs, once with imapclient and once with imaplib:
            header fields of every INBOX message (the sweep's HEADER.FIELDS), the whole
            message of every bounce, the Message-IDs of every Sent message (median of --reps);
  moves     imaplib moving as many bounces as the sweep then moved, INBOX to Junk, on another
            copy: the server's own share of acting, which the transfer leaves out;
  sweep     the real ``ndr-sweeper sweep --json`` as a subprocess (min_age = "0s", its own
            XDG dirs), wall-clock time of the whole process, its CPU time (user + system,
            its helper's included: on a machine of two cores, what the sweep leaves the
            server and everything else), its peak RSS (its VmHWM) and
            the largest peak RSS among its child processes (RUSAGE_CHILDREN): its helper's
            (``ndr_sweeper.offload``) when it starts one, else the password command's, which
            counts the pages it shared with the sweep until it ran printf (~28 MB);
  re-run    the same command again with nothing new;
  +new      ``--new`` more messages (a tenth bounces) appended, then the command once more.

``--compare TREE``: in each run, right after this tree's first sweep, another source tree's
(a git worktree of an older commit, say) on another copy: the same machine at the same moment,
which matters on shared machines whose speed drifts by half from one minute to the next; the
summary gives both trees' CPU time too, which drifts less.

Every process measured reads its ``ndr_sweeper`` compiled, as installed (``bytecode``): from a
checkout with PYTHONDONTWRITEBYTECODE set, each would compile its sources again.

It prints a row per run, a summary per size (median, and the range over the runs) and the time
of ``ndr-sweeper --version``; under each sweep, the seconds it spent in each stage of its
progress display (start: imports, config and state; connecting: log in and find the folders;
scanning: header fields of every new message and the prefilter, and with a helper process
(``ndr_sweeper.offload``, 5,000 new messages or more) the possible reports fetched and handed to
it; reading: without a helper, the possible reports fetched and classified; indexing: the Sent
index (then, without a helper, the decisions); classifying: with a helper, its last verdicts and
the decisions; acting: the moves).  ``--profile DIR``: one more first sweep per size, on another
copy, under cProfile (DIR/sweep-N.prof; not in the table).  ``--parts``: the pieces of that
work each timed alone in the benchmark's own process, beside imaplib (median of 3): the header
fields read, the prefilter, the reports read and classified, the Sent fields read and parsed.  It measures, it does not assert:
the sweep's counts are printed next to what the generator put in, for a glance.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from realmail import DEFAULT_CORPUS, RealMail  # noqa: E402

from ndr_sweeper.classify import HEADER_FIELDS  # noqa: E402
from ndr_sweeper.sentids import SENT_FIELDS  # noqa: E402

import lab  # noqa: E402  (tests/lab.py: the project's Dovecot fixture)

WORDS = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
]
EPOCH = 1_700_000_000


# ------------------------------------------------------------------ corpus


_LINES = [
    " ".join(random.Random(k).choice(WORDS) for _ in range(12)) for k in range(4096)
]  # word salad, drawn once: generating 150k messages word by word would take a minute


def _text(rng: random.Random, nbytes: int) -> str:
    out, n, i = [], 0, rng.randrange(len(_LINES))
    while n < nbytes:
        line = _LINES[i % len(_LINES)]
        out.append(line)
        n, i = n + len(line) + 2, i + 1
    return "\r\n".join(out)


def _date(i: int) -> str:
    from email.utils import formatdate

    return formatdate(EPOCH + i * 37, localtime=False)


def sent_msg(i: int, rng: random.Random, size: int) -> bytes:
    hdr = (
        f"Message-ID: <sent-{i}@lab.example>\r\nDate: {_date(i)}\r\n"
        "From: Lab Sender <sender@lab.example>\r\n"
        f"To: rcpt{i % 5000}@remote{i % 97}.example\r\nSubject: Newsletter {i}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    return (hdr + _text(rng, max(100, size - len(hdr))) + "\r\n").encode()


def normal_msg(i: int, rng: random.Random, size: int, tag: str) -> bytes:
    hdr = (
        f"Message-ID: <{tag}-{i}@remote{i % 97}.example>\r\nDate: {_date(i)}\r\n"
        f"From: Person {i % 1000} <person{i % 1000}@remote{i % 97}.example>\r\n"
        f"To: sender@lab.example\r\nSubject: Re: question {i}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    return (hdr + _text(rng, max(100, size - len(hdr))) + "\r\n").encode()


def bounce_msg(i: int, rng: random.Random, size: int, orig_id: str, tag: str) -> bytes:
    b, rcpt = f"bnd{i}", f"rcpt{i}@remote.example"
    orig = (
        f"Message-ID: {orig_id}\r\nDate: {_date(i)}\r\nFrom: Lab Sender <sender@lab.example>\r\n"
        f"To: {rcpt}\r\nSubject: Newsletter\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        + _text(rng, 600)
        + "\r\n"
    )
    head = (
        f"Message-ID: <{tag}-bounce-{i}@mx.lab.example>\r\nDate: {_date(i)}\r\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.lab.example>\r\n"
        "To: sender@lab.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{b}"\r\n\r\n'
        "This is a MIME-encapsulated message.\r\n\r\n"
    )
    human = (
        f"--{b}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        f"be delivered to {rcpt}.\r\n\r\n"
    )
    dsn = (
        f"--{b}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.lab.example\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
    )
    pad = max(0, size - len(head) - len(human) - len(dsn) - len(orig) - 80)
    if pad > 50:
        human = human[:-2] + _text(rng, pad) + "\r\n\r\n"
    tail = f"--{b}\r\nContent-Type: message/rfc822\r\n\r\n{orig}\r\n--{b}--\r\n"
    return (head + human + dsn + tail).encode()


class Corpus:
    """Generates INBOX messages in UID order and remembers which are bounces."""

    def __init__(self, sent: int, ratio: float, matched: float, size: int, seed: int = 1):
        self.rng = random.Random(seed)
        self.sent, self.matched, self.size = sent, matched, size
        self.every = round(1 / ratio) if ratio > 0 else 0
        self.bounces = 0
        self.backscatter = 0

    def inbox(self, start: int, count: int, tag: str = "in") -> Iterator[bytes]:
        for i in range(start, start + count):
            if self.every and i % self.every == self.every - 1:
                own = self.sent > 0 and self.rng.random() < self.matched
                oid = (
                    f"<sent-{self.rng.randrange(self.sent)}@lab.example>"
                    if own
                    else f"<unknown-{tag}-{i}@lab.example>"
                )
                self.bounces += 1
                self.backscatter += not own
                yield bounce_msg(i, self.rng, self.size, oid, tag)
            else:
                yield normal_msg(i, self.rng, self.size, tag)

    def sent_folder(self) -> Iterator[bytes]:
        for i in range(self.sent):
            yield sent_msg(i, self.rng, self.size)


def fill(
    env: lab.LabEnv,
    folder: str,
    msgs: Iterator[bytes],
    chunk: int = 500,
    chunk_bytes: int = 32 * 1024 * 1024,
) -> int:
    """MULTIAPPEND with LITERAL+ (as populate.py does), at most ``chunk`` messages and about
    ``chunk_bytes`` per command, never holding more than one chunk (no continuation round trip
    per message)."""
    c = imaplib.IMAP4(env.host, env.port)
    c.login(env.user, env.password)
    n = 0

    def send(batch: list[bytes]) -> None:
        tag = c._new_tag()
        parts = [tag + b" APPEND " + folder.encode()]
        for m in batch:
            parts.append(b" {%d+}\r\n" % len(m))
            parts.append(m)
        parts.append(b"\r\n")
        c.send(b"".join(parts))
        while True:
            line = c.readline()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"APPEND failed: {line!r}")
                return

    batch: list[bytes] = []
    size = 0
    for m in msgs:
        batch.append(m)
        size += len(m)
        if len(batch) == chunk or size >= chunk_bytes:
            send(batch)
            n, batch, size = n + len(batch), [], 0
    if batch:
        send(batch)
        n += len(batch)
    c.logout()
    return n


# ------------------------------------------------------------------ baseline

HDR = "BODY.PEEK[HEADER.FIELDS (" + " ".join(f.upper() for f in HEADER_FIELDS) + ")]"
SENT_HDR = "BODY.PEEK[HEADER.FIELDS (" + " ".join(f.upper() for f in SENT_FIELDS) + ")]"
ITEMS = f"(UID FLAGS INTERNALDATE RFC822.SIZE {HDR})"


def _sets(uids: list[int], per: int = 1000) -> Iterator[str]:
    from ndr_sweeper.mailbox.uidset import batches

    for b in batches(uids, max_count=per):
        yield b.set


def baseline_imapclient(env: lab.LabEnv, bounce_uids: list[int]) -> float:
    """imapclient's fetch() takes no range strings: its command path and its parser."""
    from imapclient.response_parser import parse_fetch_response

    def fetch(set_: str, items: str) -> int:
        _typ, data = c._imap.uid("FETCH", set_, items)
        return len(parse_fetch_response(data, normalise_times=False, uid_is_key=True))

    t = time.perf_counter()
    c = env.connect()
    c.select_folder("INBOX", readonly=True)
    fetch("1:*", ITEMS)
    for s in _sets(bounce_uids):
        fetch(s, "(UID BODY.PEEK[])")
    c.select_folder("Sent", readonly=True)
    fetch("1:*", f"(UID {SENT_HDR})")
    c.logout()
    return time.perf_counter() - t


def baseline_imaplib(env: lab.LabEnv, bounce_uids: list[int]) -> float:
    t = time.perf_counter()
    c = imaplib.IMAP4(env.host, env.port)
    c.login(env.user, env.password)
    c.select("INBOX", readonly=True)
    c.uid("FETCH", "1:*", ITEMS)
    for s in _sets(bounce_uids):
        c.uid("FETCH", s, "(UID BODY.PEEK[])")
    c.select("Sent", readonly=True)
    c.uid("FETCH", "1:*", f"(UID {SENT_HDR})")
    c.logout()
    return time.perf_counter() - t


def baseline_moves(env: lab.LabEnv, uids: list[int]) -> float:
    """imaplib moving *uids* from INBOX to Junk (a folder opened read-write, then UID MOVE,
    5,000 at a time as the sweep does): the server's share of a sweep's acting, which the
    transfer above leaves out."""
    c = imaplib.IMAP4(env.host, env.port)
    c.login(env.user, env.password)
    t = time.perf_counter()
    c.select("INBOX")
    for set_ in _sets(uids, per=5000):
        c.uid("MOVE", set_, "Junk")
    seconds = time.perf_counter() - t
    c.logout()
    return seconds


def _acted(data: dict[str, object]) -> int:
    return int(_account(data).get("acted") or 0)


# ------------------------------------------------------------------ the CLI


def write_config(path: Path, env: lab.LabEnv, state: Path) -> None:
    values = {
        "name": "bench",
        "host": env.host,
        "port": env.port,
        "security": "plain",
        "username": env.user,
        "password_command": f"printf %s {env.password}",
        "min_age": "0s",
    }
    lines = [f"state_dir = {json.dumps(str(state))}", "", "[[accounts]]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


# Runs the CLI and reports the process's own peak RSS (VmHWM) on stderr. The rusage of a child
# is no good here: Linux counts the parent's memory at fork time (this benchmark holds the
# generated mailbox and the baseline's responses) into the child's ru_maxrss.
_PEAK_WRAPPER = (
    "import os, sys\n"
    "prof = os.environ.pop('NDR_BENCH_PROFILE', '')\n"
    "if prof:\n"
    "    import cProfile\n"
    "    p = cProfile.Profile()\n"
    "    p.enable()\n"
    "stages = os.environ.pop('NDR_BENCH_STAGES', '')\n"
    "if stages:\n"
    "    import time\n"
    "    from ndr_sweeper import render\n"
    "    marks = [('start', time.perf_counter())]\n"
    "    real_stage = render.Progress.stage\n"
    "    def stage(self, account, name, total=None):\n"
    "        marks.append((name.split(' ')[0], time.perf_counter()))\n"
    "        return real_stage(self, account, name, total)\n"
    "    render.Progress.stage = stage\n"
    "from ndr_sweeper.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "if stages:\n"
    "    marks.append(('end', time.perf_counter()))\n"
    "    sys.stderr.write('\\nNDR_BENCH_STAGES ' + ' '.join(\n"
    "        f'{a}={b - t:.3f}' for (a, t), (b_, b) in zip(marks, marks[1:])) + '\\n')\n"
    "if prof:\n"
    "    p.disable()\n"
    "    p.dump_stats(prof)\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
    "sys.stderr.write('\\nNDR_BENCH_PEAK_KB ' + hwm[0].split()[1] + '\\n')\n"
    "import resource\n"
    "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "sys.stderr.write(f'\\nNDR_BENCH_HELPER_KB {kids}\\n')\n"
    "sys.exit(code)\n"
)


class Ran(NamedTuple):
    """One ndr-sweeper process: wall seconds, CPU seconds (user + system, its own and its
    children's: the helper's), peak RSS in KB and the largest of its children's, stdout,
    exit code."""

    seconds: float
    cpu: float
    rss: int
    child_rss: int
    out: str
    code: int


def run_cli(
    args: list[str], xdg: dict[str, str], profile: Path | None = None, tree: Path = REPO
) -> Ran:
    """Run one ndr-sweeper process; with *profile*, under cProfile (imports included), the
    statistics written there.  *tree*: the source tree whose ``ndr_sweeper`` runs."""
    env = {**os.environ, **xdg, "NO_COLOR": "1", "NDR_BENCH_STAGES": "1"}
    if profile is not None:
        env["NDR_BENCH_PROFILE"] = str(profile)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(
            [sys.executable, "-c", _PEAK_WRAPPER, *args], stdout=out, stderr=err, env=env, cwd=tree
        )
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        errors = err.read().decode()
        peak = re.search(r"NDR_BENCH_PEAK_KB (\d+)", errors)
        helper = re.search(r"NDR_BENCH_HELPER_KB (\d+)", errors)
        stages = re.search(r"NDR_BENCH_STAGES (.*)", errors)
        if stages and profile is None:
            print(f"    seconds per stage: {stages.group(1)}", flush=True)
        if p.returncode not in (0, 1):
            sys.stderr.write(errors)
    return Ran(
        seconds,
        usage.ru_utime + usage.ru_stime,
        int(peak.group(1)) if peak else 0,
        int(helper.group(1)) if helper else 0,
        text,
        p.returncode,
    )


def sweep(
    cfg: Path, xdg: dict[str, str], profile: Path | None = None, tree: Path = REPO
) -> tuple[Ran, dict[str, object]]:
    ran = run_cli(["sweep", "--json", "--config", str(cfg)], xdg, profile, tree)
    try:
        data = json.loads(ran.out)
    except ValueError:
        data = {"raw": ran.out[-500:]}
    return ran, data


def _account(data: dict[str, object]) -> dict[str, Any]:
    """The sweep's (first) account in its --json output; the output itself if it has none."""
    accounts = data.get("accounts")
    if isinstance(accounts, list) and accounts and isinstance(accounts[0], dict):
        return accounts[0]
    return data


def _counts(data: dict[str, object]) -> str:
    acc = _account(data)
    keys = ("scanned", "ndrs", "own", "backscatter", "acted", "errors")
    return " ".join(f"{k}={acc.get(k)}" for k in keys if k in acc) or str(data)[:300]


# ------------------------------------------------------------------ main


def clone(srv: lab.DovecotLab, src: lab.LabEnv, user: str) -> lab.LabEnv:
    """A new lab user whose mail directory is a copy of *src*'s (Dovecot's indexes too):
    the same mailbox again, for one more first sweep, without generating and appending it."""
    env = srv.add_user(user, "bench")
    home = srv.dir / "mail"
    subprocess.run(["cp", "-a", f"{home / src.user}/.", str(home / user)], check=True)
    return env


def build(srv: lab.DovecotLab, n: int, a: argparse.Namespace) -> tuple[lab.LabEnv, object]:
    """The mailbox of size *n*, as a template user (never swept itself)."""
    env = srv.add_user(f"bench{n}", "bench")
    corpus: Corpus | RealMail
    if a.real is not None:
        corpus = RealMail(a.real, n // 2, a.bounce_ratio, a.matched)
    else:
        corpus = Corpus(n // 2, a.bounce_ratio, a.matched, a.size)
    t = time.perf_counter()
    fill(env, "Sent", corpus.sent_folder())
    fill(env, "INBOX", corpus.inbox(0, n))
    opened(env, "INBOX", "Sent")
    print(f"[{n}] filled {n} INBOX + {n // 2} Sent in {time.perf_counter() - t:.1f} s", flush=True)
    return env, corpus


def opened(env: lab.LabEnv, *folders: str) -> None:
    """SELECT each folder read-write once, as the user's mail client has: Dovecot then moves
    the appended messages from the Maildir's new/ to cur/ (20,000 renames take it ~0.4 s),
    which a sweep of a mailbox in use never pays for."""
    c = imaplib.IMAP4(env.host, env.port)
    c.login(env.user, env.password)
    for folder in folders:
        c.select(folder)
    c.logout()


def bounce_uids(corpus: object, n: int) -> list[int]:
    if isinstance(corpus, RealMail):
        return [i + 1 for i in corpus.bounce_positions if i < n]
    assert isinstance(corpus, Corpus)
    every = corpus.every
    return [i + 1 for i in range(n) if every and i % every == every - 1]


def sweep_dirs(env: lab.LabEnv, base: Path) -> tuple[Path, dict[str, str]]:
    """A config for *env* and XDG directories of its own under *base*: (config, XDG env)."""
    (base / "config").mkdir(parents=True)
    xdg = {"XDG_CONFIG_HOME": str(base / "config"), "XDG_STATE_HOME": str(base / "xstate")}
    cfg = base / "config.toml"
    write_config(cfg, env, base / "state")
    return cfg, xdg


def one_run(
    srv: lab.DovecotLab,
    template: lab.LabEnv,
    corpus: Corpus | RealMail,
    n: int,
    run: int,
    a: argparse.Namespace,
    work: Path,
) -> dict[str, float]:
    env = clone(srv, template, f"bench{n}r{run}")
    bounces = bounce_uids(corpus, n)
    row: dict[str, float] = {"size": n, "run": run}
    baseline_imaplib(env, bounces)  # warm-up: what the copy's first reads cost the server
    row["imapclient"] = statistics.median(baseline_imapclient(env, bounces) for _ in range(a.reps))
    row["imaplib"] = statistics.median(baseline_imaplib(env, bounces) for _ in range(a.reps))

    cfg, xdg = sweep_dirs(env, work / f"u{n}r{run}")
    ran, data = sweep(cfg, xdg)
    row.update(sweep=ran.seconds, cpu=ran.cpu, rss=ran.rss, helper_rss=ran.child_rss)
    print(
        f"[{n} #{run}] first sweep {row['sweep']:.2f} s, CPU {row['cpu']:.2f} s (imaplib {row['imaplib']:.2f} s, "
        f"imapclient {row['imapclient']:.2f} s): {_counts(data)} (generated: {corpus.bounces} "
        f"bounces so far, {corpus.backscatter} backscatter)",
        flush=True,
    )
    # The moves alone: imaplib moving as many bounces as the sweep moved, on another copy.
    moved = clone(srv, template, f"bench{n}r{run}m")
    baseline_imaplib(moved, bounces)
    row["moves"] = baseline_moves(moved, bounces[: _acted(data)])
    print(f"[{n} #{run}] imaplib moving {_acted(data)} of them: {row['moves']:.2f} s", flush=True)
    if a.compare is not None:  # the other tree's first sweep of the same mailbox, right after
        other = clone(srv, template, f"bench{n}r{run}c")
        baseline_imaplib(other, bounces)
        ocfg, oxdg = sweep_dirs(other, work / f"u{n}r{run}c")
        oran, odata = sweep(ocfg, oxdg, tree=a.compare)
        row.update(compare=oran.seconds, compare_cpu=oran.cpu)
        print(
            f"[{n} #{run}] {a.compare}: first sweep {row['compare']:.2f} s, CPU "
            f"{row['compare_cpu']:.2f} s "
            f"({row['compare'] / row['imaplib']:.2f} x imaplib; this tree "
            f"{row['sweep'] / row['compare']:.2f} x its time): {_counts(odata)}",
            flush=True,
        )
    row["rerun"] = sweep(cfg, xdg)[0].seconds
    fill(env, "INBOX", corpus.inbox(n, a.new, tag=f"new{run}"))
    ran, data = sweep(cfg, xdg)
    row["new"] = ran.seconds
    print(f"[{n} #{run}] re-run {row['rerun']:.2f} s, +{a.new} {row['new']:.2f} s: {_counts(data)}")
    return row


def profile_run(
    srv: lab.DovecotLab, template: lab.LabEnv, n: int, a: argparse.Namespace, work: Path
) -> None:
    import pstats

    env = clone(srv, template, f"bench{n}prof")
    baseline_imaplib(env, [])
    cfg, xdg = sweep_dirs(env, work / f"u{n}prof")
    a.profile.mkdir(parents=True, exist_ok=True)
    out = a.profile / f"sweep-{n}.prof"
    ran, _ = sweep(cfg, xdg, profile=out)
    print(f"[{n}] profiled first sweep: {ran.seconds:.2f} s -> {out}")
    pstats.Stats(str(out)).sort_stats("cumulative").print_stats(25)


def bytecode(trees: list[Path]) -> None:
    """Compile each tree's ``ndr_sweeper`` into its ``__pycache__`` (ignored by git), and let
    every process measured read it: an installed ndr-sweeper has its bytecode (pip compiles
    it), as its dependencies and the standard library here do, so a measured sweep must not
    compile our sources on every run, as it does from a checkout where PYTHONDONTWRITEBYTECODE
    is set (about 0.1 s a process on these machines)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for tree in trees:
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(tree / "ndr_sweeper")], check=True
        )


def parts_run(template: lab.LabEnv, n: int, rounds: int = 3) -> None:
    """The pieces of a first sweep's work, each timed alone in this process on the template
    mailbox (medians of *rounds*): what the stages are made of, beside what imaplib needs."""
    from ndr_sweeper.classify import classify, may_be_report
    from ndr_sweeper.mailbox.imap import connect
    from ndr_sweeper.sentids import first_field, ids_from_header

    env = template
    got: dict[str, list[float]] = {}
    counts: list[int] = []

    def timed(name: str, fn: Callable[[], list[Any]]) -> list[Any]:
        t = time.perf_counter()
        out = fn()
        got.setdefault(name, []).append(time.perf_counter() - t)
        return out

    def one_round() -> None:
        c = imaplib.IMAP4(env.host, env.port)
        c.login(env.user, env.password)
        c.select("INBOX", readonly=True)
        timed("imaplib: INBOX header fields", lambda: [c.uid("FETCH", "1:*", ITEMS)])
        c.select("Sent", readonly=True)
        sent_items = f"(UID FLAGS INTERNALDATE RFC822.SIZE {SENT_HDR})"
        timed("imaplib: Sent header fields", lambda: [c.uid("FETCH", "1:*", sent_items)])
        c.logout()
        mb = connect(env.host, env.port, security="plain", username=env.user, password=env.password)
        mb.select("INBOX", readonly=True)
        uids = mb.search_uids(1)
        items = timed(
            "ours: INBOX header fields", lambda: list(mb.fetch_headers(uids, HEADER_FIELDS))
        )
        cands = timed("prefilter", lambda: [i.uid for i in items if may_be_report(i.header)])
        bodies = timed("ours: possible reports", lambda: list(mb.fetch_messages(cands)))
        timed("classifying them (helper's work)", lambda: [classify(b) for _, b in bodies])
        mb.select("Sent", readonly=True)
        suids = mb.search_uids(1)
        fields = (*SENT_FIELDS, "Date")
        sent = timed("ours: Sent header fields", lambda: list(mb.fetch_headers(suids, fields)))
        timed(
            "Sent IDs and Dates",
            lambda: [(ids_from_header(i.header), first_field(i.header, "date")) for i in sent],
        )
        mb.logout()
        counts[:] = [len(cands), len(uids), len(suids)]

    for _ in range(rounds):
        one_round()
    print(f"\n[{n}] the pieces alone, median (range) of {rounds} (seconds):")
    for name, values in got.items():
        print(f"    {name:36s} {_spread(values, '.3f')}")
    print(f"    ({counts[0]:,} possible reports of {counts[1]:,}; {counts[2]:,} Sent messages)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,50000,100000", help="INBOX sizes, comma-separated")
    ap.add_argument("--new", type=int, default=100, help="messages added before the last sweep")
    ap.add_argument("--reps", type=int, default=1, help="baseline repetitions (median)")
    ap.add_argument("--runs", type=int, default=1, help="first sweeps per size, each on a copy")
    ap.add_argument("--bounce-ratio", type=float, default=0.10)
    ap.add_argument("--matched", type=float, default=0.7, help="bounces naming a Sent message")
    ap.add_argument("--size", type=int, default=3000, help="bytes per synthetic message")
    ap.add_argument(
        "--real",
        nargs="?",
        type=Path,
        const=DEFAULT_CORPUS,
        default=None,
        metavar="CORPUS",
        help="real bounces from a labelled corpus (default ../shared/corpus/dev)",
    )
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR")
    ap.add_argument(
        "--parts", action="store_true", help="also time the pieces of a sweep's work alone"
    )
    ap.add_argument("--format", default="maildir", choices=["maildir", "sdbox"], help="mail store")
    ap.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="TREE",
        help="also time another source tree's first sweep on a copy, in each run (a git worktree)",
    )
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    if (why := lab.missing_reason()) is not None:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    if a.real is not None and not (a.real / "labels.jsonl").is_file():
        print(f"skipped: no labelled corpus at {a.real} (labels.jsonl)", file=sys.stderr)
        return 0

    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="ndr-bench-") as tmp,
        lab.DovecotLab(mail_format=a.format) as srv,
    ):
        bytecode([REPO] + ([a.compare] if a.compare is not None else []))
        versions = [run_cli(["--version"], {}).seconds for _ in range(5)]
        for n in sizes:
            template, corpus = build(srv, n, a)
            assert isinstance(corpus, Corpus | RealMail)
            baseline_imaplib(template, bounce_uids(corpus, n))  # Dovecot builds its cache
            for run in range(1, a.runs + 1):
                rows.append(one_run(srv, template, corpus, n, run, a, Path(tmp)))
            if a.profile is not None:
                profile_run(srv, template, n, a, Path(tmp))
            if a.parts:
                parts_run(template, n)
        kind = "real mail" if a.real is not None else f"synthetic, {a.size} bytes a message"
        report(rows, a.new, versions, kind, load=os.getloadavg())
    return 0


def _spread(values: list[float], fmt: str = ".2f") -> str:
    mid = statistics.median(values)
    if len(values) == 1:
        return f"{mid:{fmt}}"
    return f"{mid:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def report(
    rows: list[dict[str, float]],
    new: int,
    versions: list[float],
    kind: str,
    load: tuple[float, float, float],
) -> None:
    print(f"\n{kind}; load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    head = (
        "| INBOX / Sent | baseline imapclient s | baseline imaplib s | imaplib moves s "
        "| first sweep s | its CPU s | sweep / imapclient | sweep / imaplib "
        f"| sweep / (imaplib + moves) | re-run s | +{new} new s | peak RSS MB "
        "| children's peak RSS MB |"
    )
    rule = "|---" * head.count(" | ") + "|---|"
    print("runs:\n" + head)
    print(rule)
    for r in rows:
        print(
            f"| {int(r['size']):,} / {int(r['size']) // 2:,} #{int(r['run'])} "
            f"| {r['imapclient']:.2f} | {r['imaplib']:.2f} | {r['moves']:.2f} "
            f"| {r['sweep']:.2f} | {r['cpu']:.2f} "
            f"| {r['sweep'] / r['imapclient']:.2f} | {r['sweep'] / r['imaplib']:.2f} "
            f"| {r['sweep'] / (r['imaplib'] + r['moves']):.2f} "
            f"| {r['rerun']:.2f} | {r['new']:.2f} | {r['rss'] / 1024:.0f} "
            f"| {r['helper_rss'] / 1024:.0f} |"
        )
    print("\nmedian (range) over the runs:\n" + head)
    print(rule)
    for n in dict.fromkeys(int(r["size"]) for r in rows):
        rs = [r for r in rows if int(r["size"]) == n]

        def col(key: str, rs: list[dict[str, float]] = rs) -> list[float]:
            return [r[key] for r in rs]

        print(
            f"| {n:,} / {n // 2:,} | {_spread(col('imapclient'))} | {_spread(col('imaplib'))} "
            f"| {_spread(col('moves'))} | {_spread(col('sweep'))} | {_spread(col('cpu'))} "
            f"| {_spread([r['sweep'] / r['imapclient'] for r in rs])} "
            f"| {_spread([r['sweep'] / r['imaplib'] for r in rs])} "
            f"| {_spread([r['sweep'] / (r['imaplib'] + r['moves']) for r in rs])} "
            f"| {_spread(col('rerun'))} | {_spread(col('new'))} "
            f"| {_spread([r['rss'] / 1024 for r in rs], '.0f')} "
            f"| {_spread([r['helper_rss'] / 1024 for r in rs], '.0f')} |"
        )
    for n in dict.fromkeys(int(r["size"]) for r in rows if "compare" in r):
        rs = [r for r in rows if int(r["size"]) == n and "compare" in r]
        print(
            f"\n--compare, {n:,}: its first sweep {_spread([r['compare'] for r in rs])} s, "
            f"{_spread([r['compare'] / r['imaplib'] for r in rs])} x imaplib; this tree's takes "
            f"{_spread([r['sweep'] / r['compare'] for r in rs])} x its time; CPU "
            f"{_spread([r['cpu'] for r in rs])} s against "
            f"{_spread([r['compare_cpu'] for r in rs])} s"
        )
    print(
        f"\n`ndr-sweeper --version`: {min(versions):.3f} s best, "
        f"{statistics.median(versions):.3f} s median of 5",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
