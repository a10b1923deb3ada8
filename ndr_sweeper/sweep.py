"""One account's sweep: the I/O shell that wires classify, the Sent index, plan and apply.

``sweep_account`` reads top to bottom as its phases, each a function of its own:

  1. ``connect_and_discover``: log in, STATUS the swept folders (all a sweep with nothing new
     needs), LIST, find Sent (every Sent folder), the archives, and Junk or Trash;
     (then ``actions.apply.recover_pending`` settles what an interrupted run left half done);
  2. ``scan``: per swept folder only what is new since its cursor: a few header fields of each
     message, the whole message only for those that can be reports, classified;
  3. ``decide_all``: only when there is an NDR to check, bring the Sent index up to date
     (incrementally) and learn how far back it reaches; decide each message (pure);
  4. ``actions.apply.prepare`` checks each acting plan against the server and the journal
     (the dry run stops after it, so its preview is the real plan), ``act`` carries them out;
  5. ``commit_cursors``: each folder's cursor moves past everything that was decided.

``run_sweep`` is the one way in for every command: rules, lock, credentials, then this.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from ndr_sweeper.actions.plan import Action, Decision, Plan, Policy, RuleHook, decide
from ndr_sweeper.errors import Interrupted, MailboxError, NdrSweeperError
from ndr_sweeper.progress import NullReporter, Reporter
from ndr_sweeper.sentids import SENT_FIELDS, ids_from_header

if TYPE_CHECKING:
    from ndr_sweeper.actions.apply import Prepared
    from ndr_sweeper.actions.plan import SentExtent
    from ndr_sweeper.classify import Verdict
    from ndr_sweeper.config import Account, Config
    from ndr_sweeper.mailbox.base import FolderInfo, FolderStatus, HeaderItem, Mailbox
    from ndr_sweeper.offload import Classifying
    from ndr_sweeper.state import StateDB

log = logging.getLogger(__name__)

# Bodies of report candidates are fetched up to this size: the original's headers sit near the
# top of every report format, and a 50 MB attachment must not be pulled in to find them.
MAX_REPORT_BYTES = 1024 * 1024


@dataclass
class AccountResult:
    """What one account's sweep did; rendered as the summary table and as JSON."""

    account: str
    run_id: str | None = None
    dry_run: bool = False
    scanned: int = 0
    ndrs: int = 0
    own: int = 0
    backscatter: int = 0
    acted: int = 0
    undetermined: int = 0
    too_young: int = 0
    too_old: int = 0  # undetermined: older than the Sent folders reach
    would_act: int = 0  # dry run: what a real sweep would act on, after every check
    errors: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    decisions: list[Plan] = field(default_factory=list)
    seconds: float = 0.0
    sent_folders: list[str] = field(default_factory=list)  # where the Sent check looked

    @property
    def ok(self) -> bool:
        return self.error is None and self.errors == 0

    def counts(self) -> dict[str, int]:
        return {
            "scanned": self.scanned,
            "ndrs": self.ndrs,
            "own": self.own,
            "backscatter": self.backscatter,
            "acted": self.acted,
            "undetermined": self.undetermined,
            "too_young": self.too_young,
            "too_old": self.too_old,
            "would_act": self.would_act,
            "errors": self.errors,
        }

    def to_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "error": self.error,
            **self.counts(),
            "seconds": round(self.seconds, 3),
            "sent_folders": self.sent_folders,
            "notes": self.notes,
            "decisions": [
                {
                    "folder": p.folder,
                    "uid": p.uid,
                    "bounce_message_id": p.bounce_message_id,
                    "original_message_id": p.original_message_id,
                    "kind": p.kind,
                    "decision": str(p.decision),
                    "action": str(p.action),
                    "dest": p.dest,
                    "reason": p.reason,
                    "rule": p.rule,
                    "sender": p.sender,
                    "subject": p.subject,
                    "arrived": p.arrived,
                }
                for p in self.decisions
            ],
        }


@dataclass
class _Found:
    folder: str
    uid: int
    verdict: Verdict
    internaldate: datetime | None  # None: the server's INTERNALDATE was garbage
    quoted_ids: tuple[str, ...] = ()  # every <id> in an NDR: the Sent check's safety net


# ---------------------------------------------------------------- discovery

GMAIL_SPAM_NOTE = (
    "Gmail deletes what is in {junk} after 30 days: until then `ndr-sweeper undo` can put it back"
)


def _gmail_spam(mb: Mailbox, junk: str) -> bool:
    """Is the Junk folder Gmail's Spam (emptied by Gmail after 30 days)?"""
    return mb.has("X-GM-EXT-1") or junk.lower().startswith(("[gmail]/", "[google mail]/"))


def resolve_folders(mb: Mailbox, account: Account) -> tuple[list[str], str | None, str | None]:
    """Sent folders, and the destination folders the account's action needs.  Refuses a
    destination that is swept or the \\All folder; warns once per folder it cannot use."""
    from ndr_sweeper.mailbox import discovery

    folders = mb.list_folders()
    prefix = mb.personal_prefix()
    names = _usable_names(folders, account)
    for f in account.folders:
        if f not in names:
            discovery.refuse_unusable(f, folders, "`folders`")
            raise MailboxError(
                f"account {account.name!r}: folder {f!r} does not exist on the server; "
                "check `folders` in the config"
            )
    sent = choose_sent(folders, account, prefix)
    discovery.check_swept(account.folders, folders)
    junk = trash = None
    if account.action == "move":
        junk = choose_destination("junk", folders, account, prefix)
    elif account.action == "delete":
        trash = choose_destination("trash", folders, account, prefix)
    for f in folders:
        if f.unusable is not None:
            log.warning("%s: ignoring folder %r: %s", account.name, f.name, f.unusable)
    return sent, junk, trash


def _usable_names(folders: Sequence[FolderInfo], account: Account) -> set[str]:
    """The folder names the config may give: those listed and usable, and INBOX in any case."""
    names = {f.name for f in folders if f.unusable is None}
    if any(n.upper() == "INBOX" for n in names):
        names |= {n for n in (*account.folders, *account.sent_folders) if n.upper() == "INBOX"}
    return names


def choose_sent(folders: Sequence[FolderInfo], account: Account, prefix: str) -> list[str]:
    """The Sent folders: ``sent_folders``, else every folder found as Sent (MailboxError
    saying what to set when there is none, or a configured one does not exist)."""
    from ndr_sweeper.mailbox import discovery
    from ndr_sweeper.mailbox.discovery import find_all, find_folder

    if account.sent_folders:
        names = _usable_names(folders, account)
        missing = [s for s in account.sent_folders if s not in names]
        if missing:
            discovery.refuse_unusable(missing[0], folders, "`sent_folders`")
            raise MailboxError(
                f"account {account.name!r}: Sent folder {missing[0]!r} does not exist on the "
                "server; check `sent_folders` in the config"
            )
        return list(account.sent_folders)
    # Every Sent folder, not only the best: a bounce of mail that another client saved in
    # "Sent Items" beside "Sent" must still be found (or it would be junked).
    return find_all("sent", folders, prefix=prefix) or [
        find_folder("sent", folders, None, prefix=prefix)  # raises, saying what to set
    ]


def choose_destination(
    role: Literal["junk", "trash"], folders: Sequence[FolderInfo], account: Account, prefix: str
) -> str:
    """Junk or Trash as the sweep uses it: never a swept folder or \\All (MailboxError
    saying what to set)."""
    from ndr_sweeper.mailbox import discovery
    from ndr_sweeper.mailbox.discovery import find_folder

    override = account.junk_folder if role == "junk" else account.trash_folder
    dest = find_folder(role, folders, override, prefix=prefix, exclude=account.folders)
    fix = f"set {role}_folder to another folder"
    discovery.check_destination(f"{role}_folder is", dest, account.folders, folders, fix)
    return dest


def resolve_archives(mb: Mailbox, account: Account) -> list[str]:
    """The archive folders the account reads like Sent (``archive_folders``): the names given,
    or with ``archive_folders = true`` the folders the server flags \\Archive."""
    if not account.archive_folders:
        return []
    folders = [f for f in mb.list_folders() if f.unusable is None and f.selectable]
    if "\\Archive" in account.archive_folders:
        found = [f.name for f in folders if f.has_flag("\\Archive")]
        if not found:
            log.warning(
                "%s: archive_folders = true, but the server flags no folder \\Archive: name "
                'them (archive_folders = ["Archives"])',
                account.name,
            )
        return found
    names = {f.name for f in folders}
    missing = [a for a in account.archive_folders if a not in names]
    if missing:
        raise MailboxError(
            f"account {account.name!r}: archive folder {missing[0]!r} does not exist on the "
            "server; check `archive_folders` in the config"
        )
    return list(account.archive_folders)


# ---------------------------------------------------------------- Sent index


def update_sent_index(
    mb: Mailbox,
    state: StateDB,
    account: Account,
    sent_folders: Iterable[str],
    reporter: Reporter,
    archives: Iterable[str] = (),
) -> SentExtent:
    """Bring the local index of Sent Message-IDs up to date, reading only what is new, and say
    how far back the Sent folders reach (their oldest message).

    Archive folders are read the same way, but only messages sent from the user's addresses
    (``my_addresses``, else the user name when it is an address) count: an archive holds
    received mail too. When messages left a folder since it was indexed (STATUS MESSAGES is
    lower than indexed plus new), its oldest message is read again: it may be gone.
    """
    from ndr_sweeper.actions.plan import SentExtent

    mine = account.my_addresses or ((account.username,) if "@" in account.username else ())
    oldest: datetime | None = None
    sent_messages = 0
    archived_mine = False
    sent = list(dict.fromkeys(sent_folders))
    todo = [(f, False) for f in sent] + [(f, True) for f in archives if f not in sent]
    for folder, archive in todo:
        st = mb.status(folder)
        cursor = state.sent_cursor(account.name, folder)
        if cursor is not None and cursor[0] != st.uidvalidity:
            log.info(
                "%s: UIDVALIDITY of %s changed: rebuilding its Sent index", account.name, folder
            )
            state.drop_sent_folder(account.name, folder)
            cursor = None
        last = cursor[1] if cursor else 0
        _known_oldest, known_messages = state.sent_extent(account.name, folder)
        new: list[int] = []
        if st.uidnext - 1 > last:
            sel = mb.select(folder, readonly=True)
            new = mb.search_uids(last + 1, below=sel.uidnext)
        if new:
            reporter.stage(account.name, f"indexing {folder}", len(new))
            fields = (*SENT_FIELDS, "Date", *(("From",) if archive else ()))
            rows: list[tuple[int, list[str]]] = []
            first: datetime | None = None
            for item in mb.fetch_headers(new, fields):
                reporter.advance()
                if archive and not _sent_by(item.header, mine):
                    continue
                rows.append((item.uid, ids_from_header(item.header)))
                when = _sent_date(item)
                if when is not None and (first is None or when < first):
                    first = when
            state.add_sent_ids(
                account.name,
                folder,
                st.uidvalidity,
                rows,
                last_uid=max(new),
                oldest=first,
                messages=st.messages,
            )
        elif cursor is None or st.uidnext - 1 > last or known_messages != st.messages:
            state.add_sent_ids(
                account.name,
                folder,
                st.uidvalidity,
                [],
                last_uid=max(last, st.uidnext - 1) if cursor is None else last,
                messages=st.messages,
            )
        if cursor is not None and (
            known_messages is None or st.messages < known_messages + len(new)
        ):
            # Messages left this folder since it was indexed (or the index predates extents):
            # its oldest message may be among them.
            state.set_sent_extent(
                account.name,
                folder,
                _oldest_in(mb, folder, mine if archive else None),
                st.messages,
            )
        first_known, _ = state.sent_extent(account.name, folder)
        if first_known is not None and (oldest is None or first_known < oldest):
            oldest = first_known
        if archive:
            archived_mine = archived_mine or first_known is not None
        else:
            sent_messages += st.messages
    # Sent folders that hold nothing tell nothing about how far back they reach: every bounce
    # is judged as before (the sweep says so, for a client that does not save sent mail).
    return SentExtent(oldest, empty=sent_messages == 0 and not archived_mine)


def _first_field(header: bytes, name: str) -> str | None:
    """The first *name* field of a header block, unfolded (the classifier's own parser: folds
    with tabs, "From :", ...)."""
    from ndr_sweeper.classify.message import Headers, parse_header_block

    return Headers(parse_header_block(header.decode("utf-8", "replace"))).get(name)


def _sent_by(header: bytes, mine: tuple[str, ...]) -> bool:
    """Was this archived message sent from one of `mine` (its From header)?"""
    from ndr_sweeper.actions.plan import is_mine

    if not mine:
        return False
    sender = _first_field(header, "from")
    return sender is not None and is_mine(sender, mine) is True


def _sent_date(item: HeaderItem) -> datetime | None:
    """When a Sent message was sent: its Date header (a copy imported or moved between
    servers keeps it, its INTERNALDATE may not), else its INTERNALDATE."""
    from ndr_sweeper.maildate import mail_date

    date = _first_field(item.header, "date")
    return (mail_date(date) if date is not None else None) or item.internaldate


def _oldest_in(mb: Mailbox, folder: str, mine: tuple[str, ...] | None) -> datetime | None:
    """When the oldest message in a folder was sent (of those sent from `mine`, if given)."""
    sel = mb.select(folder, readonly=True)
    uids = mb.search_uids(1, below=sel.uidnext)
    oldest: datetime | None = None
    fields = ["Date", "From"] if mine is not None else ["Date"]
    for item in mb.fetch_headers(uids, fields):
        if mine is not None and not _sent_by(item.header, mine):
            continue
        when = _sent_date(item)
        if when is not None and (oldest is None or when < oldest):
            oldest = when
    return oldest


# ---------------------------------------------------------------- 1. connect and discover


@dataclass
class Folders:
    """Where a sweep reads, and where it moves to."""

    sent: list[str]
    archives: list[str]
    junk: str | None
    trash: str | None
    early: dict[str, FolderStatus]  # STATUS of the swept folders, asked before anything else


def _early_status(mb: Mailbox, folders: Iterable[str]) -> dict[str, FolderStatus]:
    """STATUS of the swept folders before anything else: on a fresh connection Dovecot answers
    it for a 100k-message Maildir INBOX in 0.3 ms, after a LIST in ~100 ms (it syncs the
    folder again), and it is all a sweep with nothing new needs.  A folder whose STATUS fails
    is left to resolve_folders / scan_folder, which report it."""
    out: dict[str, FolderStatus] = {}
    for folder in folders:
        try:
            out[folder] = mb.status(folder)
        except MailboxError:
            pass
    return out


def connect_and_discover(
    account: Account, mailbox_factory: Callable[[Account], Mailbox], reporter: Reporter
) -> tuple[Mailbox, Folders]:
    """Log in, and find Sent, the archives, and Junk or Trash (refusing what cannot be)."""
    reporter.stage(account.name, "connecting")
    mb = mailbox_factory(account)
    try:
        early = _early_status(mb, account.folders)
        sent, junk, trash = resolve_folders(mb, account)
        archives = resolve_archives(mb, account)
    except BaseException:
        with contextlib.suppress(Exception):
            mb.logout()
        raise
    return mb, Folders(sent, archives, junk, trash, early)


# ---------------------------------------------------------------- 2. scan


@dataclass
class Scanned:
    """What the scan read: the verdicts of possible reports, and per folder its UIDVALIDITY
    and the new UIDs (for the cursors), and what its SELECT said."""

    found: list[_Found] = field(default_factory=list)
    cursors: dict[str, tuple[int, list[int]]] = field(default_factory=dict)
    selected: dict[str, FolderStatus] = field(default_factory=dict)
    modseqs: dict[tuple[str, int], int] = field(default_factory=dict)  # CONDSTORE, when read
    # The possible reports read and not yet classified (a helper process may be at them):
    # ``verdicts`` collects them into ``found``.
    classifying: Classifying | None = None

    def verdicts(self, result: AccountResult) -> list[_Found]:
        """Every possible report with its verdict (waiting for the helper's, if need be)."""
        if self.classifying is not None:
            for key, verdict, quoted in self.classifying.results():
                folder, uid, date = key  # type: ignore[misc]
                self.found.append(_Found(folder, uid, verdict, date, quoted))
            self.classifying = None
        result.ndrs = sum(f.verdict.is_ndr for f in self.found)
        return self.found

    def close(self) -> None:
        if self.classifying is not None:
            self.classifying.close()


def scan_folder(
    mb: Mailbox,
    state: StateDB,
    account: str,
    folder: str,
    full: bool,
    reporter: Reporter,
    result: AccountResult,
    scanned: Scanned,
    st: FolderStatus | None = None,
    dry_run: bool = True,
) -> None:
    """Read what is new in one folder into *scanned*: its UIDVALIDITY and new UIDs (the
    cursor), what its SELECT said (acting then needs no second SELECT), and the whole of each
    possible report, handed to ``scanned.classifying``.  *st*: the folder's STATUS when the
    caller already has it."""
    st = st or mb.status(folder)
    scanned.cursors[folder] = (st.uidvalidity, [])
    cursor = None if full else state.get_cursor(account, folder)
    if cursor is not None and cursor[0] != st.uidvalidity:
        log.info("%s: UIDVALIDITY of %s changed: scanning it again from the start", account, folder)
        cursor = None
    last = cursor[1] if cursor else 0
    if st.uidnext - 1 <= last:
        return
    # Read-write unless this is a dry run: the acting step then needs no second SELECT.
    # BODY.PEEK never sets \\Seen, so reading changes nothing either way.
    sel = mb.select(folder, readonly=dry_run)
    scanned.selected[folder] = sel
    if sel.uidvalidity != st.uidvalidity:
        raise MailboxError(f"UIDVALIDITY of {folder!r} changed while it was opened: sweep again")
    uids = mb.search_uids(last + 1, below=sel.uidnext)
    if not uids:
        return
    scanned.cursors[folder] = (st.uidvalidity, uids)
    # Loaded only when there is something new: a no-op sweep never pays for it.
    from ndr_sweeper import offload
    from ndr_sweeper.classify import HEADER_FIELDS, may_be_report

    classifying = scanned.classifying = scanned.classifying or offload.Classifying(helper=False)
    chunk, whole = len(uids), True  # whole: one chunk, its reading shown as a stage
    if offload.wanted(len(uids)):
        # A helper classifies on the other core; it starts up while the first headers are
        # read, and gets the possible reports of each chunk of them as soon as they are read.
        classifying.start_helper(take_back=not offload.forced())
        chunk, whole = offload.SCAN_CHUNK, False
    reporter.stage(account, f"scanning {folder}", len(uids))
    for start in range(0, len(uids), chunk):
        candidates: dict[int, datetime | None] = {}
        for item in mb.fetch_headers(uids[start : start + chunk], HEADER_FIELDS):
            reporter.advance()
            if may_be_report(item.header):
                candidates[item.uid] = item.internaldate
                if item.modseq is not None:
                    scanned.modseqs[(folder, item.uid)] = item.modseq
        if not candidates:
            continue
        if whole:
            reporter.stage(
                account, f"reading {len(candidates)} possible reports in {folder}", len(candidates)
            )
        for uid, raw in mb.fetch_messages(sorted(candidates), max_bytes=MAX_REPORT_BYTES):
            if whole:
                reporter.advance()
            classifying.add((folder, uid, candidates[uid]), raw)
    result.scanned += len(uids)


def scan(
    mb: Mailbox,
    state: StateDB,
    account: Account,
    where: Folders,
    result: AccountResult,
    *,
    full: bool,
    dry_run: bool,
    reporter: Reporter,
) -> Scanned:
    """Read what is new in every swept folder (only what is new: a cursor per folder).  The
    verdicts may still be in the making (a helper process): ``Scanned.verdicts`` has them."""
    scanned = Scanned()
    try:
        for folder in account.folders:
            scan_folder(
                mb,
                state,
                account.name,
                folder,
                full,
                reporter,
                result,
                scanned,
                where.early.get(folder),
                dry_run,
            )
        if scanned.classifying is not None:
            scanned.classifying.flush()
    except BaseException:
        scanned.close()
        raise
    return scanned


# ---------------------------------------------------------------- 3. decide


def _check_rule_destinations(mb: Mailbox, account: Account, plans: Iterable[Plan]) -> None:
    """Refuse, before anything is acted on, a rule that moves (or deletes) messages into a
    swept folder or the \\All folder."""
    from ndr_sweeper.mailbox import discovery

    dests = {
        (p.rule, p.action, p.dest)
        for p in plans
        if p.rule and p.dest and p.action in (Action.MOVE, Action.DELETE)
    }
    if not dests:
        return
    folders = mb.list_folders()
    for rule, action, dest in sorted(dests, key=str):
        assert dest is not None
        fix = "change the rule's move" if action is Action.MOVE else "set trash_folder"
        what = f"rule {rule!r} moves messages to"
        discovery.check_destination(what, dest, account.folders, folders, fix)


def _undated_notes(found: Iterable[_Found]) -> list[str]:
    """One note per folder holding bounces whose INTERNALDATE was garbage (they wait)."""
    count: dict[str, int] = defaultdict(int)
    for f in found:
        if f.internaldate is None and f.verdict.is_ndr:
            count[f.folder] += 1
    return [
        f"{n} bounce(s) in {folder!r} came with a garbage INTERNALDATE (arrival time unknown): "
        "they wait, and are read again next sweep"
        for folder, n in count.items()
    ]


def decide_all(
    mb: Mailbox,
    state: StateDB,
    account: Account,
    where: Folders,
    scanned: Scanned,
    result: AccountResult,
    *,
    rule_hook: RuleHook | None,
    now: datetime,
    reporter: Reporter,
) -> list[Plan]:
    """Check each NDR's original against the Sent index (brought up to date first, only when
    there is an NDR to check) and decide every message (actions.plan.decide, pure)."""
    from ndr_sweeper.mailbox.discovery import find_folder

    extent = None
    if scanned.classifying is not None and scanned.classifying.helping:
        # The helper classifies while the Sent index is read: a first sweep of a large
        # mailbox, where some of them are NDRs (and if none is, the index is read once early).
        extent = update_sent_index(mb, state, account, where.sent, reporter, where.archives)
        reporter.stage(account.name, "classifying")
    found = scanned.verdicts(result)
    replies = rule_hook is not None and any(f.verdict.reply_to_ids for f in found)
    if extent is None and (result.ndrs or replies):
        extent = update_sent_index(mb, state, account, where.sent, reporter, where.archives)
    policy = Policy(
        action=account.action,
        junk_folder=where.junk,
        trash_folder=where.trash,
        min_age=account.min_age,
        my_addresses=account.my_addresses,
    )
    trash = where.trash

    # Every lookup in the Sent index at once, one list of IDs per message (a first sweep checks
    # thousands of bounces); an empty list finds nothing and costs no query.
    sent = state.find_sent_many(
        account.name, [f.verdict.all_original_ids() if f.verdict.is_ndr else () for f in found]
    )
    # The classifier may have picked the wrong ID: any ID the bounce quotes that is in Sent
    # makes it (possibly) the user's own bounce, so it stays.
    quoted = state.find_sent_many(
        account.name,
        [
            f.quoted_ids if f.verdict.is_ndr and s is None else ()
            for f, s in zip(found, sent, strict=True)
        ],
    )
    asking = [replies and not f.verdict.is_ndr and bool(f.verdict.reply_to_ids) for f in found]
    answered = state.find_sent_many(
        account.name,
        [f.verdict.reply_to_ids if a else () for f, a in zip(found, asking, strict=True)],
    )
    plans: list[Plan] = []
    for f, sent_match, quoted_match, asked, answer in zip(
        found, sent, quoted, asking, answered, strict=True
    ):
        sent_match = sent_match or quoted_match
        reply_in_sent = (answer is not None) if asked else None
        age = None if f.internaldate is None else (now - f.internaldate).total_seconds()
        plan = decide(
            f.folder,
            f.uid,
            f.verdict,
            sent_match,
            age,
            policy,
            rule_hook,
            reply_in_sent,
            arrived=f.internaldate,
            extent=extent,
        )
        if quoted_match is not None and plan.decision is Decision.OWN and not plan.rule:
            plan = dataclasses.replace(
                plan, reason=f"<{quoted_match}>, quoted in the bounce, is in Sent: kept"
            )
        if plan.action is Action.DELETE and plan.dest is None:
            # A rule said delete: that means Trash, found the same way as for action = "delete".
            trash = trash or find_folder(
                "trash",
                mb.list_folders(),
                account.trash_folder,
                prefix=mb.personal_prefix(),
                exclude=account.folders,
            )
            plan = dataclasses.replace(plan, dest=trash)
        plans.append(plan)
    _check_rule_destinations(mb, account, plans)
    result.notes.extend(_undated_notes(found))
    if extent is not None and extent.empty and result.ndrs:
        result.notes.append(
            "your Sent folders hold no message: every bounce is judged by that. If your mail "
            "client does not save sent mail on the server, say so with sent_folders (or keep "
            'everything with action = "none") before ndr-sweeper moves your real bounces'
        )
    too_old = sum(p.too_old for p in plans)
    if too_old and extent is not None:
        since = f" ({extent.oldest:%Y-%m-%d})" if extent.oldest else ""
        result.notes.append(
            f"{too_old} bounce(s) are of mail sent before the oldest message of your Sent "
            f"folders{since}: they cannot be checked and are kept. If you archive sent mail "
            "in other folders, set archive_folders (README, Configuration)"
        )
    return plans


# ---------------------------------------------------------------- 4. check, count and act


def _count(result: AccountResult, plans: Sequence[Plan]) -> None:
    held: Counter[str] = Counter(
        'action = "none": reported only' if p.action is Action.NONE else p.reason
        for p in plans
        if p.decision is Decision.BACKSCATTER and not p.acts and not p.rule
    )
    for why, n in held.items():
        result.notes.append(f"{n} backscatter bounce(s) not acted on: {why}")
    for p in plans:
        if p.decision is Decision.OWN:
            result.own += 1
        elif p.decision is Decision.BACKSCATTER:
            result.backscatter += 1
        elif p.decision is Decision.UNDETERMINED:
            result.undetermined += 1
            result.too_old += p.too_old
        elif p.decision is Decision.TOO_YOUNG:
            result.too_young += 1
    result.would_act = sum(p.acts for p in plans)
    result.decisions = [p for p in plans if p.decision is not Decision.NOT_NDR or p.rule]


def act(
    mb: Mailbox,
    state: StateDB,
    account: Account,
    where: Folders,
    scanned: Scanned,
    prepared: Prepared,
    result: AccountResult,
    reporter: Reporter,
) -> dict[str, list[int]]:
    """Carry out, journalled and checked, every plan that acts; returns per folder the UIDs
    to look at again (refused, or waiting for an earlier action to finish)."""
    from ndr_sweeper.actions.apply import apply_plans

    retry: dict[str, list[int]] = defaultdict(list)
    # An earlier action on these is not finished (recovery could not remove the original of a
    # copy): acting again would copy them twice; they wait and count as errors.
    for folder, waiting in prepared.waiting.items():
        retry[folder].extend(waiting)
        result.errors += len(waiting)
    for folder, later in prepared.later.items():  # changed by another client meanwhile
        retry[folder].extend(later)
    acting = [p for p in prepared.plans if p.acts]
    if not acting:
        return retry
    assert result.run_id is not None
    reporter.stage(account.name, "acting", len(acting))
    outcome = apply_plans(
        mb,
        state,
        result.run_id,
        account.name,
        acting,
        reporter,
        account.expunge_fallback,
        {f: st for f, st in scanned.selected.items() if f in scanned.cursors},
        prepared.identities,
        prepared.opened,
        prepared.modseqs,
    )
    result.acted = outcome.done
    result.errors += outcome.failed
    result.notes.extend(n for n in outcome.notes if n not in result.notes)
    if outcome.done and where.junk and _gmail_spam(mb, where.junk):
        result.notes.append(GMAIL_SPAM_NOTE.format(junk=where.junk))
    for folder, failed in outcome.retry.items():
        retry[folder].extend(failed)
    return retry


# ---------------------------------------------------------------- 5. commit cursors


def commit_cursors(
    state: StateDB,
    account: Account,
    scanned: Scanned,
    plans: Sequence[Plan],
    retry: Mapping[str, Sequence[int]],
) -> None:
    """Move each folder's cursor past what was decided; what waits (too young, arrival time
    unknown, refused, an earlier action unfinished) is read again next sweep."""
    for folder, (uidvalidity, uids) in scanned.cursors.items():
        if not uids:
            continue
        waiting = [
            p.uid for p in plans if p.folder == folder and p.decision is Decision.TOO_YOUNG
        ] + list(retry.get(folder, []))
        last = (min(waiting) - 1) if waiting else max(uids)
        state.set_cursor(account.name, folder, uidvalidity, last)


# ---------------------------------------------------------------- the sweep


def sweep_account(
    account: Account,
    state: StateDB,
    mailbox_factory: Callable[[Account], Mailbox],
    *,
    dry_run: bool = False,
    full: bool = False,
    reporter: Reporter | None = None,
    rule_hook: RuleHook | None = None,
    now: Callable[[], datetime] | None = None,
    invocation: str | None = None,
) -> AccountResult:
    """Sweep one account, phase by phase. Errors are caught into the result; the caller holds
    the lock. *invocation* groups the runs of one command over several accounts."""
    from ndr_sweeper.actions.apply import prepare, recover_pending

    reporter = reporter or NullReporter()
    started = time.monotonic()
    result = AccountResult(account.name, dry_run=dry_run)
    state.interrupt_stale_runs(account.name)  # the lock is ours: none of them is running
    result.run_id = state.start_run(
        account.name, dry_run=dry_run, command="sweep", invocation=invocation
    )
    mb: Mailbox | None = None
    scanned: Scanned | None = None
    status: str | None = None
    try:
        mb, where = connect_and_discover(account, mailbox_factory, reporter)
        result.sent_folders = [*where.sent, *where.archives]
        if not dry_run:
            result.notes.extend(
                recover_pending(
                    mb, state, account.name, account.expunge_fallback, run_id=result.run_id
                )
            )
        scanned = scan(
            mb, state, account, where, result, full=full, dry_run=dry_run, reporter=reporter
        )
        plans = decide_all(
            mb,
            state,
            account,
            where,
            scanned,
            result,
            rule_hook=rule_hook,
            now=(now or (lambda: datetime.now(UTC)))(),
            reporter=reporter,
        )
        # What each acting plan's message is; those put back by an undo, acted on already or
        # waiting for an earlier action to finish are kept (the dry run shows the same).
        prepared = prepare(
            mb,
            state,
            account.name,
            plans,
            write=not dry_run,
            known=scanned.selected,
            scanned_modseqs=scanned.modseqs,
        )
        result.notes.extend(prepared.notes)
        _count(result, prepared.plans)
        if not dry_run:
            retry = act(mb, state, account, where, scanned, prepared, result, reporter)
            commit_cursors(state, account, scanned, prepared.plans, retry)
    except Interrupted as exc:
        result.error = str(exc)
        status = "interrupted"
    except KeyboardInterrupt:
        result.error = "interrupted (Ctrl-C); the next sweep continues from here"
        status = "interrupted"
        raise
    except NdrSweeperError as exc:
        result.error = str(exc)  # already one line that says what to do: no traceback
        log.debug("%s: sweep failed: %s", account.name, type(exc).__name__)
    except Exception as exc:  # a bug of ours: one line, the other accounts still run
        result.error = (
            f"unexpected {type(exc).__name__}: {exc}; the journal is intact and the next sweep "
            "continues; run with --log-level debug for the details, and please report it"
        )
        log.debug("%s: unexpected error", account.name, exc_info=True)
    finally:
        if scanned is not None:
            scanned.close()  # a helper process still classifying is no longer wanted
        if mb is not None:
            try:
                mb.logout()
            except Exception:  # logging out of a dead connection is no news
                log.debug("%s: logout failed", account.name, exc_info=True)
        result.seconds = time.monotonic() - started
        state.finish_run(
            result.run_id,
            status or ("failed" if result.error else ("partial" if result.errors else "ok")),
            result.counts(),
            result.error,
        )
    return result


# ---------------------------------------------------------------- the one way in


def run_sweep(
    config: Config,
    account: Account,
    state: StateDB,
    *,
    dry_run: bool = False,
    full: bool = False,
    reporter: Reporter | None = None,
    invocation: str | None = None,
    mailbox_factory: Callable[[Account], Mailbox] | None = None,
) -> AccountResult:
    """Sweep a configured account: the one way in, whoever asks (the terminal, cron, the
    service, a watcher), so they all do exactly the same thing.

    Loads the account's rules, takes its lock, logs in through `mailbox_factory` (by default
    ``connect.open_mailbox``: credentials, then the connection) and runs :func:`sweep_account`.
    Raises LockedError when another sweep holds the account (the caller decides whether that
    is news); every other failure is the result's one-line error, recorded as a failed run.
    """
    from ndr_sweeper.state import account_lock

    if mailbox_factory is None:
        from ndr_sweeper.connect import open_mailbox as mailbox_factory
    with account_lock(config.state_dir, account.name):
        hook: RuleHook | None = None
        if account.rules:  # rules.py (tomllib, difflib) only for accounts that have rules
            from ndr_sweeper.rules import load_rules

            try:
                hook = load_rules(account.rules).hook()
            except NdrSweeperError as exc:
                state.interrupt_stale_runs(account.name)
                result = AccountResult(account.name, dry_run=dry_run, error=str(exc))
                result.run_id = state.start_run(
                    account.name, dry_run=dry_run, command="sweep", invocation=invocation
                )
                state.finish_run(result.run_id, "failed", result.counts(), result.error)
                return result
        return sweep_account(
            account,
            state,
            mailbox_factory,
            dry_run=dry_run,
            full=full,
            reporter=reporter,
            rule_hook=hook,
            invocation=invocation,
        )
