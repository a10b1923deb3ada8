"""A mailbox of real mail for benchmarks/sweep.py --real: real bounces, ordinary mail of our own.

The bounces are the NDRs of the labelled corpus (``../shared/corpus/dev``, read at run time and
never copied into the project), every shape it has: DSNs, free-text bounces of every MTA family,
CRLF, LF and bare-CR copies.  The ordinary mail is generated here, deterministically from a
seed, to look like a real INBOX to a server and to the sweep's prefilter: personal mail and
replies, Outlook mail with its long X-MS-* header blocks, newsletters (multipart/alternative,
DKIM, List-* headers), notifications from services (some ``Auto-Submitted``), mail with
attachments from a few KB to a few MB, and, one in a hundred, the corpus's own non-NDRs
(auto-replies, complaints, read receipts, spam).

The Sent folder is half the size of INBOX: ordinary sent mail, plus the originals of about
``matched`` of the bounced messages whose Message-ID the corpus names (some only under
X-Microsoft-Original-Message-ID, as Outlook.com keeps it), and a first message dated 1995 so
that every corpus bounce is within the Sent folder's reach.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "dev"
EPOCH = 1_700_000_000  # INBOX dates start here (Nov 2023), one message every ~37 s

_WORDS_TEXT = (
    "the meeting moved to thursday please find attached notes for project budget review "
    "quarter plan draft invoice schedule team update we should discuss next steps before "
    "friday thanks for your help regards agenda proposal contract figures numbers customer "
    "release version server migration weekend holiday office travel booking hotel flight "
    "conference talk slides notes welcome question answer issue ticket support order "
    "delivery shipping tracking account password newsletter offer discount sale summer"
)
_WORDS = _WORDS_TEXT.split()
_NAMES_TEXT = (
    "Anna Berg|Ben Carter|Chloe Dubois|David Eriksen|Emma Fischer|Felix Garcia|Grace Huang|"
    "Hugo Ivanov|Iris Jensen|Jonas Keller|Kira Lopez|Liam Meyer|Mia Novak|Noah Olsen|"
    "Olivia Petit|Paul Quinn|Rosa Schmidt|Sam Tanaka|Tara Udeh|Victor Weber"
)
_NAMES = _NAMES_TEXT.split("|")
_DOMAINS = [f"{w}.example" for w in ("acme", "globex", "initech", "umbrella", "hooli", "vandelay",
            "stark", "wayne", "tyrell", "cyberdyne", "soylent", "wonka", "gringotts", "oscorp")]  # fmt: skip
_SHOPS = ["Summer Shop", "Daily Digest", "Travel Deals", "Tech Weekly", "Book Club", "Garden News"]
_SERVICES = [
    ("GitLab", "gitlab@mg.gitlab.example"),
    ("Jira", "jira@issues.acme.example"),
    ("CI", "ci-bot@build.globex.example"),
    ("Calendar", "calendar-notification@cal.hooli.example"),
    ("Bank", "no-reply@alerts.bank.example"),
    ("Shop", "orders@shop.example"),
    ("Forum", "noreply@forum.example"),
]
_SUBJECTS = [
    "Meeting notes", "Quarterly budget", "Draft proposal", "Lunch on Friday?", "Invoice {n}",
    "Project update", "Slides for the talk", "Holiday plans", "Contract review", "Re: question",
    "Travel booking", "Your order {n} has shipped", "Weekly report", "Release {n} notes",
]  # fmt: skip
# Subjects of ordinary mail that a header prefilter rightly cannot rule out (2% of them).
_ODD_SUBJECTS = [
    "Please confirm your subscription", "Your verification code", "Feedback on the draft",
    "Thank you for your message", "Spam filter settings", "Automatic renewal of your plan",
]  # fmt: skip
_UTF8_SUBJECTS = ["Grüße aus München", "Réunion de l'équipe", "Año nuevo", "Ünïcödé test"]


class _Text:
    """Word salad lines, drawn once, and a pool of base64 lines for attachments."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.lines = [" ".join(rng.choice(_WORDS) for _ in range(11)) for _ in range(4096)]
        raw = base64.encodebytes(rng.randbytes(6 * 1024 * 1024))  # 76 chars + LF per line
        self.b64 = raw.replace(b"\n", b"\r\n")

    def text(self, rng: random.Random, nbytes: int) -> str:
        out, n, i = [], 0, rng.randrange(len(self.lines))
        while n < nbytes:
            line = self.lines[i % len(self.lines)]
            out.append(line)
            n, i = n + len(line) + 2, i + 1
        return "\r\n".join(out)

    def html(self, rng: random.Random, nbytes: int) -> str:
        out, n, i = ["<html><body>"], 0, rng.randrange(len(self.lines))
        while n < nbytes:
            line = f'<p style="font-family:Arial;font-size:14px">{self.lines[i % 4096]}</p>'
            out.append(line)
            n, i = n + len(line) + 2, i + 1
        out.append("</body></html>")
        return "\r\n".join(out)

    def attachment(self, rng: random.Random, nbytes: int) -> bytes:
        per = 78  # 76 base64 characters and CRLF
        lines = max(1, min(nbytes, len(self.b64) - per) // per)
        start = rng.randrange(0, len(self.b64) // per - lines + 1) * per
        return self.b64[start : start + lines * per]


def _received(rng: random.Random, when: int, hops: int) -> str:
    out = []
    for h in range(hops):
        a, b = rng.randrange(1, 255), rng.randrange(1, 255)
        host = f"mx{rng.randrange(1, 40)}.{rng.choice(_DOMAINS)}"
        out.append(
            f"Received: from {host} ({host} [192.0.2.{a}])\r\n"
            f"\tby mail{b}.lab.example (Postfix) with ESMTPS id {rng.randrange(16**10):010X}\r\n"
            f"\tfor <user@lab.example>; {formatdate(when - h * 3, localtime=False)}\r\n"
        )
    return "".join(out)


def _dkim(rng: random.Random, domain: str) -> str:
    sig = base64.b64encode(rng.randbytes(256)).decode()
    bh = base64.b64encode(rng.randbytes(32)).decode()
    folded = "\r\n\t ".join(sig[i : i + 70] for i in range(0, len(sig), 70))
    return (
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain};\r\n"
        f"\t s=s{rng.randrange(2020, 2025)}; t={EPOCH}; bh={bh};\r\n"
        "\t h=from:to:subject:date:message-id:mime-version:content-type;\r\n"
        f"\t b={folded}\r\n"
    )


def _auth_results(domain: str) -> str:
    return (
        "Authentication-Results: mail.lab.example;\r\n"
        f"\tdkim=pass header.d={domain} header.s=s2024;\r\n"
        f"\tspf=pass (mail.lab.example: domain of {domain} designates 192.0.2.1 as permitted "
        f"sender) smtp.mailfrom={domain};\r\n"
        f"\tdmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from={domain}\r\n"
    )


def _ms_headers(rng: random.Random) -> str:
    """The X-MS-Exchange-* block Microsoft 365 adds to every message (shortened)."""
    names = [
        "X-MS-Exchange-Organization-SCL", "X-MS-Has-Attach", "X-MS-TNEF-Correlator",
        "X-MS-Exchange-Organization-AuthSource", "X-MS-Exchange-Organization-AuthAs",
        "X-MS-PublicTrafficType", "X-MS-TrafficTypeDiagnostic", "X-MS-Office365-Filtering-Correlation-Id",
        "X-Microsoft-Antispam", "X-Forefront-Antispam-Report", "X-MS-Exchange-AntiSpam-MessageData-0",
        "X-MS-Exchange-CrossTenant-Network-Message-Id", "X-MS-Exchange-CrossTenant-OriginalArrivalTime",
        "X-MS-Exchange-CrossTenant-FromEntityHeader", "X-MS-Exchange-CrossTenant-Id",
        "X-MS-Exchange-Transport-CrossTenantHeadersStamped", "X-OriginatorOrg",
    ]  # fmt: skip
    out = []
    for name in names:
        value = base64.b64encode(rng.randbytes(rng.randrange(8, 180))).decode()
        out.append(f"{name}: " + "\r\n\t".join(value[i : i + 72] for i in range(0, len(value), 72)))
    return "\r\n".join(out) + "\r\n"


class RealMail:
    """INBOX and Sent of real mail, generated in UID order; ``bounce_positions`` says which
    INBOX messages (0-based, in append order) are corpus bounces."""

    def __init__(
        self,
        corpus: Path,
        sent: int,
        ratio: float = 0.10,
        matched: float = 0.7,
        seed: int = 1,
        lookalikes: float = 0.01,
    ) -> None:
        labels = [
            json.loads(line)
            for line in (corpus / "labels.jsonl").read_text().splitlines()
            if line.strip()
        ]
        self.rng = random.Random(seed)
        self.ndrs = [(corpus / r["path"]).read_bytes() for r in labels if r["is_ndr"]]
        self.others = [(corpus / r["path"]).read_bytes() for r in labels if not r["is_ndr"]]
        self.originals = [r["original_message_id"] for r in labels if r["is_ndr"]]
        self.rng.shuffle(order := list(range(len(self.ndrs))))
        self.order = order
        ids = sorted({i for i in self.originals if i})
        self.own = {i for i in ids if self.rng.random() < matched}
        self.sent, self.ratio, self.lookalikes = sent, ratio, lookalikes
        self.text = _Text(seed)
        self.bounces = 0
        self.backscatter = 0  # bounces whose original is named and not in Sent
        self.bounce_positions: list[int] = []
        self._next_bounce = 0

    # ---------------------------------------------------------------- INBOX
    def inbox(self, start: int, count: int, tag: str = "in") -> Iterator[bytes]:
        every = round(1 / self.ratio) if self.ratio > 0 else 0
        for i in range(start, start + count):
            rng = random.Random(f"{tag}-{i}")
            if every and i % every == every - 1:
                k = self.order[self._next_bounce % len(self.order)]
                self._next_bounce += 1
                self.bounces += 1
                oid = self.originals[k]
                self.backscatter += bool(oid) and oid not in self.own
                self.bounce_positions.append(i)
                yield self.ndrs[k]
            elif rng.random() < self.lookalikes:
                yield rng.choice(self.others)
            else:
                yield self.ordinary(i, rng, tag)

    def ordinary(self, i: int, rng: random.Random, tag: str) -> bytes:
        when = EPOCH + i * 37
        r = rng.random()
        if r < 0.50:
            return self._personal(i, rng, when, tag, outlook=rng.random() < 0.3)
        if r < 0.80:
            return self._newsletter(i, rng, when, tag)
        if r < 0.87:
            return self._notification(i, rng, when, tag)
        return self._with_attachment(i, rng, when, tag)

    def _envelope(self, rng: random.Random, when: int, frm: str, domain: str, hops: int) -> str:
        head = f"Return-Path: <{frm}>\r\nDelivered-To: user@lab.example\r\n"
        head += _received(rng, when, hops)
        if rng.random() < 0.8:
            head += _dkim(rng, domain)
        head += _auth_results(domain)
        if rng.random() < 0.5:
            head += f"X-Spam-Status: No, score={rng.uniform(-3, 2):.1f} required=5.0\r\n"
        return head

    def _subject(self, rng: random.Random, n: int) -> str:
        if rng.random() < 0.12:
            text = rng.choice(_UTF8_SUBJECTS)
            return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="
        if rng.random() < 0.02:
            return rng.choice(_ODD_SUBJECTS)
        return rng.choice(_SUBJECTS).format(n=n)

    def _personal(self, i: int, rng: random.Random, when: int, tag: str, outlook: bool) -> bytes:
        name = rng.choice(_NAMES)
        domain = rng.choice(_DOMAINS)
        frm = name.lower().replace(" ", ".") + "@" + domain
        head = self._envelope(rng, when, frm, domain, rng.randrange(2, 9))
        if outlook:
            head += _ms_headers(rng)
        head += (
            f"From: {name} <{frm}>\r\nTo: User <user@lab.example>\r\n"
            f"Subject: {self._subject(rng, i)}\r\nDate: {formatdate(when, localtime=False)}\r\n"
            f"Message-ID: <{tag}.{i}.{rng.randrange(16**8):08x}@{domain}>\r\n"
        )
        if rng.random() < 0.4:
            ref = f"<sent.{rng.randrange(max(1, self.sent))}@lab.example>"
            head += f"In-Reply-To: {ref}\r\nReferences: {ref}\r\n"
        size = int(rng.lognormvariate(7.8, 0.8))  # ~2.4 KB median, 1 KB to ~20 KB
        head += "MIME-Version: 1.0\r\n"
        if outlook:
            b = f"_000_{rng.randrange(16**12):012x}_"
            head += f'Content-Type: multipart/alternative; boundary="{b}"\r\n\r\n'
            body = (
                f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                f"{self.text.text(rng, size)}\r\n\r\n--{b}\r\n"
                "Content-Type: text/html; charset=utf-8\r\n\r\n"
                f"{self.text.html(rng, size)}\r\n\r\n--{b}--\r\n"
            )
        else:
            head += "Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
            head += "Content-Transfer-Encoding: 8bit\r\nUser-Agent: Thunderbird\r\n\r\n"
            body = self.text.text(rng, size) + "\r\n"
        return (head + body).encode()

    def _newsletter(self, i: int, rng: random.Random, when: int, tag: str) -> bytes:
        shop = rng.choice(_SHOPS)
        domain = shop.lower().replace(" ", "") + ".example"
        frm = f"news@{domain}"
        head = self._envelope(rng, when, f"bounce-{i}@em.{domain}", domain, rng.randrange(3, 12))
        b = f"=_mime_{rng.randrange(16**12):012x}"
        size = int(rng.lognormvariate(9.6, 0.6))  # ~15 KB median
        head += (
            f"From: {shop} <{frm}>\r\nTo: user@lab.example\r\n"
            f"Subject: {shop}: {rng.choice(_WORDS)} {rng.choice(_WORDS)} this week\r\n"
            f"Date: {formatdate(when, localtime=False)}\r\n"
            f"Message-ID: <{tag}.{i}.{rng.randrange(16**12):012x}@em.{domain}>\r\n"
            f"List-Id: {shop} <news.{domain}>\r\n"
            f"List-Unsubscribe: <https://{domain}/u/{rng.randrange(16**16):016x}>, "
            f"<mailto:unsubscribe-{i}@em.{domain}>\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            "Precedence: bulk\r\nX-Mailer: Mailing Platform 5.2\r\n"
            f"Feedback-ID: {i % 97}:news:{domain}\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative; boundary="{b}"\r\n\r\n'
        )
        body = (
            f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{self.text.text(rng, size // 4)}"
            f"\r\n--{b}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            f"{self.text.html(rng, size)}\r\n--{b}--\r\n"
        )
        return (head + body).encode()

    def _notification(self, i: int, rng: random.Random, when: int, tag: str) -> bytes:
        name, frm = rng.choice(_SERVICES)
        domain = frm.split("@", 1)[1]
        head = self._envelope(rng, when, frm, domain, rng.randrange(2, 6))
        head += (
            f"From: {name} <{frm}>\r\nTo: user@lab.example\r\n"
            f"Subject: [{name}] {rng.choice(_WORDS)} {rng.choice(_WORDS)} #{i % 5000}\r\n"
            f"Date: {formatdate(when, localtime=False)}\r\n"
            f"Message-ID: <{tag}.{i}@{domain}>\r\n"
        )
        if rng.random() < 0.3:
            head += "Auto-Submitted: auto-generated\r\n"
        if rng.random() < 0.5:
            head += f"X-{name}-Reason: subscribed\r\nX-{name}-Project: {rng.choice(_WORDS)}\r\n"
        head += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        return (head + self.text.text(rng, int(rng.lognormvariate(8, 0.5))) + "\r\n").encode()

    def _with_attachment(self, i: int, rng: random.Random, when: int, tag: str) -> bytes:
        name = rng.choice(_NAMES)
        domain = rng.choice(_DOMAINS)
        frm = name.lower().replace(" ", ".") + "@" + domain
        head = self._envelope(rng, when, frm, domain, rng.randrange(2, 9))
        if rng.random() < 0.3:
            head += _ms_headers(rng)
        b = f"----=_Part_{rng.randrange(16**10):010x}"
        head += (
            f"From: {name} <{frm}>\r\nTo: User <user@lab.example>\r\n"
            f"Subject: {self._subject(rng, i)}\r\nDate: {formatdate(when, localtime=False)}\r\n"
            f"Message-ID: <{tag}.{i}.{rng.randrange(16**8):08x}@{domain}>\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n'
        )
        parts = [
            f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{self.text.text(rng, int(rng.lognormvariate(7, 0.6)))}\r\n"
        ]
        body = "".join(parts).encode()
        r = rng.random()
        if r < 0.80:
            size = int(rng.uniform(20_000, 400_000))
        elif r < 0.97:
            size = int(rng.uniform(400_000, 1_500_000))
        else:
            size = int(rng.uniform(2_000_000, 4_500_000))
        kind = rng.choice(["application/pdf", "image/jpeg", "application/zip"])
        ext = kind.rsplit("/", 1)[1]
        body += (
            f'--{b}\r\nContent-Type: {kind}; name="file{i}.{ext}"\r\n'
            f'Content-Disposition: attachment; filename="file{i}.{ext}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        body += self.text.attachment(rng, size) + f"\r\n--{b}--\r\n".encode()
        return head.encode() + body

    # ---------------------------------------------------------------- Sent
    def sent_folder(self) -> Iterator[bytes]:
        """``sent`` messages: a first one of 1995, the own originals, ordinary sent mail."""
        rng = random.Random("sent")
        own = sorted(self.own)
        yield self._sent_msg(0, rng, "<first.sent@lab.example>", "Mon, 02 Jan 1995 09:00:00 +0000")
        for k, oid in enumerate(own[: max(0, self.sent - 1)], 1):
            if k % 4 == 0:  # rewritten by the provider, the client's ID in a header of its own
                extra = f"X-Microsoft-Original-Message-ID: <{oid}>\r\n"
                yield self._sent_msg(k, rng, f"<rewritten.{k}@outlook.lab.example>", None, extra)
            else:
                yield self._sent_msg(k, rng, f"<{oid}>", None)
        for k in range(1 + len(own), self.sent):
            yield self._sent_msg(k, rng, f"<sent.{k}@lab.example>", None)

    def _sent_msg(
        self, k: int, rng: random.Random, mid: str, date: str | None, extra: str = ""
    ) -> bytes:
        when = date or formatdate(EPOCH - 86400 * 400 + k * 90, localtime=False)
        name = rng.choice(_NAMES)
        to = name.lower().replace(" ", ".") + "@" + rng.choice(_DOMAINS)
        head = (
            f"Message-ID: {mid}\r\n{extra}Date: {when}\r\nFrom: User <user@lab.example>\r\n"
            f"To: {name} <{to}>\r\nSubject: {self._subject(rng, k)}\r\n"
            "User-Agent: Thunderbird\r\nMIME-Version: 1.0\r\n"
        )
        if rng.random() < 0.15:
            b = f"------------{rng.randrange(16**12):012x}"
            head += f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n'
            size = int(rng.uniform(20_000, 600_000))
            body = (
                f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                f"{self.text.text(rng, 1500)}\r\n--{b}\r\nContent-Type: application/pdf\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n"
            ).encode()
            return head.encode() + body + self.text.attachment(rng, size) + f"--{b}--\r\n".encode()
        head += "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        return (head + self.text.text(rng, int(rng.lognormvariate(7.6, 0.7))) + "\r\n").encode()
