"""Unit tests for ndr_sweeper.classify on small messages written here."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndr_sweeper.classify import HEADER_FIELDS, Kind, classify, may_be_report

ORIGINAL = """\
Return-Path: <alice@example.org>
From: Alice <alice@example.org>
To: bob@example.net
Subject: Lunch on Friday?
Date: Mon, 3 Jun 2024 10:00:00 +0000
Message-ID: <lunch-123@example.org>

Are you free?
"""

DSN = """\
Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
To: alice@example.org
Subject: Undelivered Mail Returned to Sender
Message-ID: <bounce-1@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
  boundary="BOUNDARY-1"

--BOUNDARY-1
Content-Type: text/plain

This is the mail system at host mx.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<bob@example.net>: host mx.example.net said: 550 5.1.1 User unknown

--BOUNDARY-1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; bob@example.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected

--BOUNDARY-1
Content-Type: message/rfc822

{original}
--BOUNDARY-1--
"""


def dsn(original: str = ORIGINAL) -> str:
    return DSN.replace("{original}", original)


def b(text: str, eol: str = "\n") -> bytes:
    return text.replace("\n", eol).encode()


# ---- structure ---------------------------------------------------------------------------


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_line_ending_variants_give_the_same_verdict(eol: str) -> None:
    v = classify(b(dsn(), eol))
    assert v.kind is Kind.FAILED
    assert v.is_ndr
    assert v.detector == "rfc3464"
    assert v.original.message_id == "lunch-123@example.org"
    assert v.original.subject == "Lunch on Friday?"
    assert v.message_id == "bounce-1@mx.example.org"
    assert [(r.address, r.status, r.action) for r in v.recipients] == [
        ("bob@example.net", "5.1.1", "failed")
    ]
    assert any("Action: failed" in e for e in v.evidence)


def test_leading_blank_lines_and_mbox_from_line() -> None:
    raw = b("\n  \n\n" + dsn())
    v = classify(raw)
    assert v.kind is Kind.FAILED and v.original.message_id == "lunch-123@example.org"
    assert any("blank lines" in d for d in v.defects)
    v2 = classify(b("From MAILER-DAEMON Mon Jun  3 10:00:00 2024\n" + dsn()))
    assert v2.kind is Kind.FAILED and v2.original.message_id == "lunch-123@example.org"


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_well_formed_message_has_no_defects(eol: str) -> None:
    for text in (ORIGINAL, dsn()):
        v = classify(text.replace("\n", eol).encode())
        assert v.defects == (), v.defects
    # a body that itself starts with an empty line is still well-formed
    v = classify(ORIGINAL.replace("\n\nAre", "\n\n\nAre").replace("\n", eol).encode())
    assert v.defects == ()


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_missing_blank_line_after_the_header_is_a_defect(eol: str) -> None:
    raw = ORIGINAL.replace("\n\nAre you free?", "\nAre you free?").replace("\n", eol)
    v = classify(raw.encode())
    assert v.defects == ("missing blank line after the header",)


def test_broken_boundary_falls_back_to_the_text() -> None:
    raw = dsn().replace('boundary="BOUNDARY-1"', 'boundary="WRONG"')
    v = classify(b(raw))
    assert v.kind is Kind.FAILED
    assert v.original.message_id == "lunch-123@example.org"


def test_missing_boundary_parameter() -> None:
    raw = dsn().replace(';\n  boundary="BOUNDARY-1"', "")
    v = classify(b(raw))
    assert v.kind is Kind.FAILED
    assert v.original.message_id == "lunch-123@example.org"


def test_base64_encoded_message_rfc822() -> None:
    encoded = base64.encodebytes(ORIGINAL.encode()).decode()
    raw = dsn(encoded).replace(
        "Content-Type: message/rfc822\n",
        "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n",
    )
    v = classify(b(raw))
    assert v.kind is Kind.FAILED
    assert v.original.message_id == "lunch-123@example.org"
    assert v.original.from_ == "Alice <alice@example.org>"


def test_text_rfc822_headers_part() -> None:
    raw = dsn(ORIGINAL.split("\n\n")[0] + "\n").replace(
        "Content-Type: message/rfc822", "Content-Type: text/rfc822-headers"
    )
    assert classify(b(raw)).original.message_id == "lunch-123@example.org"


def test_nested_report_gives_the_innermost_sent_message() -> None:
    inner = dsn()
    outer = f"""\
From: postmaster@gateway.example.com
To: alice@example.org
Subject: Undeliverable: Lunch on Friday?
Message-ID: <gw-9@gateway.example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="OUTER"

--OUTER
Content-Type: text/plain

Delivery has failed to these recipients or groups:
bob@example.net

--OUTER
Content-Type: message/rfc822

{inner}
--OUTER--
"""
    v = classify(b(outer))
    assert v.is_ndr
    assert v.original.message_id == "lunch-123@example.org"
    assert "bounce-1@mx.example.org" in v.original.other_message_ids


def test_quoted_headers_in_a_text_bounce() -> None:
    raw = """\
From: Mail Delivery System <Mailer-Daemon@mail.example.org>
To: alice@example.org
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: bob@example.net

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  bob@example.net
    SMTP error from remote mail server after RCPT TO:<bob@example.net>:
    550 5.1.1 No such user

------ This is a copy of the message, including all the headers. ------

Return-path: <alice@example.org>
From: Alice <alice@example.org>
Subject: Lunch on Friday?
Message-ID: <lunch-123@example.org>

Are you free?
"""
    v = classify(b(raw))
    assert v.kind is Kind.FAILED
    assert v.detector == "exim"
    assert v.original.message_id == "lunch-123@example.org"
    assert "bob@example.net" in [r.address for r in v.recipients]


def test_delay_warning() -> None:
    raw = dsn().replace("Action: failed", "Action: delayed").replace("5.1.1", "4.4.1")
    v = classify(b(raw))
    assert v.kind is Kind.DELAYED and v.is_ndr


def test_success_dsn_is_not_an_ndr() -> None:
    raw = dsn().replace("Action: failed", "Action: delivered").replace("5.1.1", "2.0.0")
    v = classify(b(raw))
    assert v.kind is Kind.DELIVERY_SUCCESS and not v.is_ndr


# ---- look-alikes -------------------------------------------------------------------------


def test_bounce_forwarded_by_a_person_is_not_an_ndr() -> None:
    raw = """\
From: Carol <carol@example.com>
To: helpdesk@example.com
Subject: Fwd: Returned mail: see transcript for details
Message-ID: <fwd-1@example.com>

Can you look at this?

Begin forwarded message:

> From: Mail Delivery Subsystem <MAILER-DAEMON@example.com>
> Subject: Returned mail: see transcript for details
>
>    ----- The following addresses had permanent fatal errors -----
> <bob@example.net>
>     (reason: 550 5.1.1 User unknown)
"""
    v = classify(b(raw))
    assert v.kind is Kind.NOT_NDR and not v.is_ndr


def test_sieve_reject_mdn_is_failed() -> None:
    raw = """\
From: Mail Delivery Subsystem <postmaster@example.net>
To: alice@example.org
Subject: Automatically rejected mail
Auto-Submitted: auto-replied (rejected)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="S"

--S
Content-Type: text/plain

Your message to <bob@example.net> was automatically rejected:
Mailbox full
--S
Content-Type: message/disposition-notification

Reporting-UA: mail; Dovecot Mail Delivery Agent
Final-Recipient: rfc822; bob@example.net
Original-Message-ID: <lunch-123@example.org>
Disposition: automatic-action/MDN-sent-automatically; deleted

--S--
"""
    v = classify(b(raw))
    assert v.kind is Kind.FAILED
    assert v.original.message_id == "lunch-123@example.org"


def test_read_receipt_is_an_mdn() -> None:
    raw = """\
From: Bob <bob@example.net>
To: alice@example.org
Subject: Read: Lunch on Friday?
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="R"

--R
Content-Type: text/plain

Your message was displayed.
--R
Content-Type: message/disposition-notification

Final-Recipient: rfc822; bob@example.net
Original-Message-ID: <lunch-123@example.org>
Disposition: manual-action/MDN-sent-manually; displayed

--R--
"""
    v = classify(b(raw))
    assert v.kind is Kind.MDN and not v.is_ndr


def test_out_of_office_reply() -> None:
    raw = """\
From: Bob <bob@example.net>
To: alice@example.org
Subject: Out of Office: Lunch on Friday?
Auto-Submitted: auto-replied
In-Reply-To: <lunch-123@example.org>

I am out of the office until Monday.
"""
    v = classify(b(raw))
    assert v.kind is Kind.AUTOREPLY
    assert v.reply_to_ids == ("lunch-123@example.org",)


def test_ordinary_mail_is_not_an_ndr_and_is_prefiltered_out() -> None:
    raw = b(ORIGINAL)
    assert classify(raw).kind is Kind.NOT_NDR
    assert may_be_report(raw) is False


def test_prefilter_passes_bounces() -> None:
    head = dsn().split("\n\n")[0]
    kept = [
        line
        for line in head.split("\n")
        if line.split(":")[0] in HEADER_FIELDS or line.startswith(" ")
    ]
    assert may_be_report(("\r\n".join(kept) + "\r\n\r\n").encode())
    assert may_be_report(b"From: MAILER-DAEMON@example.org\r\nSubject: failure notice\r\n\r\n")
    assert may_be_report(b"\xff\xfe garbage") in (True, False)


# ---- robustness --------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_never_raises_on_random_bytes(raw: bytes) -> None:
    v = classify(raw)
    assert isinstance(v.kind, Kind)
    may_be_report(raw)


_pieces = st.sampled_from(
    [
        "From: MAILER-DAEMON@x\n",
        "Subject: Undelivered Mail\n",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n',
        "Content-Type: message/rfc822\n",
        "Content-Transfer-Encoding: base64\n",
        "\n",
        "--b\n",
        "--b--\n",
        "Action: failed\n",
        "Message-ID: <x@y>\n",
        "This is the mail system at host x.\n",
        "=?utf-8?b?////?=\n",
        "\r",
        "\x00\xff",
        "   folded\n",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_pieces, max_size=60))
def test_never_raises_on_mime_like_junk(pieces: list[str]) -> None:
    v = classify("".join(pieces).encode("latin-1"))
    assert isinstance(v.kind, Kind)


def test_non_bytes_input_is_a_defect_not_an_exception() -> None:
    v = classify("not bytes")  # type: ignore[arg-type]
    assert v.kind is Kind.NOT_NDR
    assert v.defects


@pytest.mark.parametrize(
    "raw",
    [
        # 10,000 MIME parts
        (
            "From: MAILER-DAEMON@x\nSubject: Undelivered Mail\n"
            'Content-Type: multipart/mixed; boundary="b"\n\n'
            + "".join(f"--b\nContent-Type: text/plain\n\npart {i}\n" for i in range(10000))
            + "--b--\n"
        ).encode(),
        # 1,000-deep nesting
        (
            "From: MAILER-DAEMON@x\nSubject: Undelivered Mail\n"
            + "".join(
                f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(1000)
            )
            + "Content-Type: text/plain\n\nUser unknown\n"
        ).encode(),
        # 1,000-deep message/rfc822
        (
            "From: MAILER-DAEMON@x\nSubject: Undelivered Mail\n"
            + "Content-Type: message/rfc822\n\n" * 1000
            + "Message-ID: <deep@x>\n\nx\n"
        ).encode(),
        # a 1 MB header
        b"From: MAILER-DAEMON@x\nX-Long: " + b"a" * 1_000_000 + b"\nSubject: x\n\nbody\n",
        b"X-Folded: a\n" + b" b\n" * 200_000 + b"\nbody\n",
    ],
    ids=["10k-parts", "1000-deep-multipart", "1000-deep-rfc822", "1MB-header", "folded-header"],
)
def test_bounded_work_on_hostile_structure(raw: bytes) -> None:
    t0 = time.perf_counter()
    v = classify(raw)
    assert time.perf_counter() - t0 < 3.0
    assert isinstance(v.kind, Kind)


# ---- DSN per-recipient blocks --------------------------------------------------------------


@pytest.mark.parametrize(
    "block",
    [
        "Final-Recipient: rfc822; bob@example.net\nOriginal-Recipient: rfc822;bob@example.net\n",
        "Original-Recipient: rfc822;bob@example.net\nFinal-Recipient: rfc822; bob@example.net\n",
    ],
)
@pytest.mark.parametrize(
    ("action", "kind"), [("delivered", Kind.DELIVERY_SUCCESS), ("failed", Kind.FAILED)]
)
def test_dsn_recipient_block_is_one_record_in_either_field_order(
    block: str, action: str, kind: Kind
) -> None:
    status = "2.0.0" if action == "delivered" else "5.1.1"
    report = dsn().replace(
        "Final-Recipient: rfc822; bob@example.net\nAction: failed\nStatus: 5.1.1\n",
        f"{block}Action: {action}\nStatus: {status}\n",
    )
    v = classify(b(report))
    assert v.kind is kind, v.evidence
    assert [r.address for r in v.recipients] == ["bob@example.net"]
    assert v.recipients[0].action == action


def test_dsn_blocks_without_blank_lines_still_split_per_recipient() -> None:
    report = dsn().replace(
        "Final-Recipient: rfc822; bob@example.net\nAction: failed\nStatus: 5.1.1\n",
        "Original-Recipient: rfc822;bob@example.net\nFinal-Recipient: rfc822; bob@example.net\n"
        "Action: failed\nStatus: 5.1.1\n"
        "Original-Recipient: rfc822;carol@example.net\nFinal-Recipient: rfc822; carol@example.net\n"
        "Action: failed\nStatus: 5.2.2\n",
    )
    v = classify(b(report))
    assert v.kind is Kind.FAILED
    assert [(r.address, r.status) for r in v.recipients] == [
        ("bob@example.net", "5.1.1"),
        ("carol@example.net", "5.2.2"),
    ]


# ---- look-alikes by format ---------------------------------------------------------------

CHALLENGE = """\
Return-Path: <confirm@filter.example.net>
From: Dana Ruiz <confirm@filter.example.net>
To: alice@example.org
Subject: Re: Lunch on Friday? [please confirm]
Date: Mon, 3 Jun 2024 10:01:00 +0000
Message-ID: <chal-77@filter.example.net>
In-Reply-To: <lunch-123@example.org>
Auto-Submitted: auto-replied
Content-Type: text/plain; charset=us-ascii

Dana protects her inbox from junk mail. To confirm that you are a real person,
reply to this message and keep the subject unchanged.

Your message will be delivered once you have confirmed; until then it is held.
"""


def test_challenge_response_recognised_by_format_without_a_vendor() -> None:
    v = classify(b(CHALLENGE))
    assert v.kind is Kind.CHALLENGE_RESPONSE, v.evidence
    assert "lunch-123@example.org" in v.reply_to_ids


def test_list_moderation_hold_is_not_a_challenge() -> None:
    hold = """\
From: gpc-talk-bounces@lists.example.org
To: alice@example.org
Subject: Your message to GPC-talk awaits moderator approval
Date: Mon, 3 Jun 2024 10:01:00 +0000
Message-ID: <hold-1@lists.example.org>
Content-Type: text/plain; charset=us-ascii

Your mail to 'GPC-talk' with the subject Lunch on Friday? is being held
until the list moderator can review it for approval.  Either the message will
get posted to the list, or you will receive notification of the moderator's
decision.  If you would like to cancel this posting, please visit the following
URL: https://lists.example.org/confirm/gpc-talk/0123abcd
"""
    assert classify(b(hold)).kind is not Kind.CHALLENGE_RESPONSE


def test_virus_alert_is_a_virus_notice_not_an_ndr() -> None:
    notice = """\
Return-Path: <postmaster@filter.example.net>
From: Content Filter <postmaster@filter.example.net>
To: alice@example.org
Subject: VIRUS ALERT in a message from you
Date: Mon, 3 Jun 2024 10:01:00 +0000
Message-ID: <av-1@filter.example.net>
Auto-Submitted: auto-generated
Content-Type: text/plain; charset=us-ascii

A virus was found in a message sent from your address to bob@example.net.
The infected attachment was quarantined and the message was not delivered.
"""
    v = classify(b(notice))
    assert v.kind is Kind.VIRUS_NOTICE, v.evidence
    assert not v.is_ndr


def test_virus_rejection_as_a_dsn_stays_failed() -> None:
    report = dsn().replace("Recipient address rejected", "Message rejected: virus found")
    report = report.replace("550 5.1.1 User unknown", "554 5.7.1 virus found in message")
    v = classify(b(report))
    assert v.kind is Kind.FAILED


# ---- ordinary mail that talks about bounces is never an NDR ---------------------------------

POSTFIX_QUOTE = """\
This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<carol@example.com>: host mx.example.com[203.0.113.5] said: 550 5.1.1
    <carol@example.com>: Recipient address rejected: User unknown
"""

ORDINARY = {
    "person-mentions-undeliverable": """\
From: Lee <lee@example.com>
To: me@example.org
Subject: Undeliverable: your parcel
Date: Fri, 20 Nov 2026 12:00:00 +0000
Message-ID: <mail.1@example.com>
Content-Type: text/plain; charset=us-ascii

Here are the minutes. The undeliverable parcel issue is solved.
""",
    "list-post-quoting-a-postfix-bounce": f"""\
Return-Path: <users-bounces@lists.example.org>
From: Sam Okafor <sam@example.net>
To: users@lists.example.org
Subject: Undelivered Mail Returned to Sender - what does 5.1.1 mean?
Date: Fri, 20 Nov 2026 12:00:00 +0000
Message-ID: <help.42@example.net>
Sender: users-bounces@lists.example.org
List-Id: Users of the example MTA <users.lists.example.org>
List-Unsubscribe: <https://lists.example.org/unsub/users>
Precedence: list
Content-Type: text/plain; charset=us-ascii

Hi all, every mail to Carol comes back with this, from MAILER-DAEMON
(Mail Delivery System). Mail delivery failed, Undelivered Mail Returned to Sender:

{POSTFIX_QUOTE}
What am I doing wrong?  Sam
""",
    "person-pastes-a-bounce-to-the-admin": f"""\
From: Sam Okafor <sam@example.net>
To: postmaster@example.net
Subject: Mail delivery failed - can you check?
Date: Fri, 20 Nov 2026 12:00:00 +0000
Message-ID: <help.43@example.net>
Content-Type: text/plain; charset=us-ascii

Got this back again:

{POSTFIX_QUOTE}
""",
    "newsletter-delivery-failed": """\
Return-Path: <bounce-8812@mailer.shop.example>
From: Parcel Shop <notification@shop.example>
To: me@example.org
Subject: Delivery failed? Update your address
Date: Fri, 20 Nov 2026 12:00:00 +0000
Message-ID: <nl.2026.11@shop.example>
List-Unsubscribe: <https://shop.example/unsubscribe?u=8812>
Precedence: bulk
Content-Type: text/plain; charset=utf-8

Delivery failed? Undeliverable parcels cost everyone time. If a parcel could not
be delivered to you, update your address: https://shop.example/account
""",
    "spam-imitating-a-bounce": """\
Return-Path: <kx81@random-host.example>
From: Mail Delivery System <kx81@random-host.example>
To: me@example.org
Subject: Mail delivery failed: returning message to sender
Date: Fri, 20 Nov 2026 12:00:00 +0000
Message-ID: <8812.spam@random-host.example>
Content-Type: text/plain; charset=us-ascii

Mail delivery failed. 3 messages could not be delivered to your mailbox
(mailbox full, 550 5.1.1 user unknown). Release your pending messages now:
http://random-host.example/release?me@example.org
""",
    "list-digest": f"""\
From: users-request@lists.example.org
To: users@lists.example.org
Subject: users Digest, Vol 12, Issue 3
Date: Fri, 20 Nov 2026 12:00:00 +0000
Message-ID: <digest.12.3@lists.example.org>
Sender: users-bounces@lists.example.org
List-Id: Users of the example MTA <users.lists.example.org>
Precedence: list
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="DIGEST"

--DIGEST
Content-Type: text/plain

Today's Topics:
   1. Undelivered Mail Returned to Sender (Sam Okafor)
   2. Re: Mail delivery failed (Lee)

--DIGEST
Content-Type: multipart/digest; boundary="POSTS"

--POSTS

From: Sam Okafor <sam@example.net>
Subject: Undelivered Mail Returned to Sender
Message-ID: <help.42@example.net>

{POSTFIX_QUOTE}
--POSTS

From: Lee <lee@example.com>
Subject: Re: Mail delivery failed
Message-ID: <help.44@example.com>

> 550 5.1.1 User unknown
The address does not exist; "This is the mail system at host" is Postfix.
--POSTS--

--DIGEST--
""",
    "reply-from-a-person-quoting-a-bounce": f"""\
From: Lee <lee@example.com>
To: sam@example.net
Subject: Re: Undelivered Mail Returned to Sender
Date: Fri, 20 Nov 2026 12:00:00 +0000
Message-ID: <help.45@example.com>
In-Reply-To: <help.43@example.net>
Content-Type: text/plain; charset=us-ascii

Sam, Carol left; the report below says it all.

{POSTFIX_QUOTE}
""",
}


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_ordinary_mail_about_bounces_is_not_an_ndr(name: str) -> None:
    v = classify(b(ORDINARY[name]))
    assert v.kind is Kind.NOT_NDR, (v.detector, v.evidence)
    assert not v.is_ndr
    v = classify(b(ORDINARY[name], "\r\n"))
    assert v.kind is Kind.NOT_NDR, (v.detector, v.evidence)


def test_gateway_notice_from_an_ordinary_address_is_failed() -> None:
    notice = """\
From: gw.notices@corp.example.com
To: alice@example.org
Subject: RE: Lunch on Friday? : non remis (delivery failed)
Date: Mon, 3 Jun 2024 10:01:00 +0000
Message-ID: <gw-1@corp.example.com>
Content-Type: text/plain; charset=us-ascii

*************************
Your message could not be delivered to
bob@corp.example.com

*************************
"""
    v = classify(b(notice))
    assert v.kind is Kind.FAILED, v.evidence
    assert [r.address for r in v.recipients] == ["bob@corp.example.com"]


def test_phrase_anchors_are_a_necessary_condition() -> None:
    from ndr_sweeper.classify._rx import anchors, fast

    assert anchors(r"mail (?:system|server) at|postfix\s+program") == ("mail s", "postfix")
    assert anchors(r"abcd(?:efg)?") == ("abcd",)
    assert anchors(r"(?i)abcdef") is None and anchors(r"x(?i:abcdef)") is None
    assert anchors(r"ab|cdef") is None  # a branch without a usable literal: no pre-check
    p = fast(r"-+ ?unsent message follows ?-+|i'm (?:still|not) trying")
    assert p.anchors == ("unsent message follows", " trying")
    for text in ("--- unsent message follows ---", "well, i'm still trying", "nothing", ""):
        assert (p.search(text) is None) == (p.regex.search(text) is None)


def test_prefilter_fast_patterns_agree_with_the_plain_ones() -> None:
    """The prefilter's anchored copies answer exactly as the patterns they copy, on every
    From, Sender, Return-Path and Subject of our fixtures and on near misses."""
    import re

    from ndr_sweeper.classify import prefilter as pf
    from ndr_sweeper.classify.detectors._base import BOUNCE_SUBJECT, DAEMON_FROM

    texts = {"", " read: hello", "read: x", "not read: x", "mailer_daemon", "post_master@x"}
    for f in (Path(__file__).parent / "fixtures" / "messages").glob("*.eml"):
        head = f.read_bytes().decode("latin-1").lower()
        texts.update(re.findall(r"(?m)^(?:from|sender|return-path|subject)[ \t]*:([^\r\n]*)", head))
    pairs = [
        (DAEMON_FROM, pf._DAEMON_FROM_FAST),
        (BOUNCE_SUBJECT, pf._BOUNCE_SUBJECT_FAST),
        (pf._LOOKALIKE_SUBJECT, pf._LOOKALIKE_SUBJECT_FAST),
        (pf._CR_VENDOR, pf._CR_VENDOR_FAST),
    ]
    hits = 0
    for plain, quick in pairs:
        assert quick.anchors, plain.pattern[:40]  # else there is nothing to gain
        for text in texts | {t.strip() for t in texts}:
            assert bool(plain.search(text)) == bool(quick.search(text)), (plain.pattern, text)
            hits += bool(plain.search(text))
    assert hits > 50  # the texts do exercise the patterns


def test_every_mta_family_wording_has_anchors() -> None:
    import importlib

    from ndr_sweeper.classify.detectors import ORDER, _text

    for name, _ in ORDER:
        mod = importlib.import_module(f"ndr_sweeper.classify.detectors.{name.split('-')[0]}")
        fmt = getattr(mod, "FORMAT", None)
        if isinstance(fmt, _text.TextFormat):
            assert fmt.markers.anchors, name


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                *("Out of ", "the OFFICE", "office", "I am ", "AWAY", "ﬀ", "K", " ", "é", "\n"),
                *("ooo", "İ", "ı", "ſ", "offİce", "awaı", "OOO", "µ"),
            ]
        ),
        max_size=12,
    )
)
def test_caseless_search_is_the_ignorecase_search(pieces: list[str]) -> None:
    import re

    from ndr_sweeper.classify._rx import Caseless

    pattern = r"out of (?:the )?office|\booo\b|i am (?:currently )?(?:away|out)"
    c = Caseless(pattern)
    text = "".join(pieces)
    got, want = c.search(text), re.search(pattern, text, re.I)
    assert (got and got.span()) == (want and want.span())


def test_caseless_patterns_must_be_lower_case() -> None:
    from ndr_sweeper.classify._rx import Caseless

    for bad in ("MAILER", "[A-Z]x", "a(?=B)", "[^\\nQ]"):
        with pytest.raises(ValueError):
            Caseless(bad)


_REFERENCE_HEADER_BLOCK = r"(?:[!-9;-~]+[ \t]*:[^\n]*(?:\n|\Z)(?:[ \t]+\S[^\n]*(?:\n|\Z))*)*"


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["a", "b:", ":", " ", "\t", "\n", "\n\n", "X-Y: z\n", " cont\n", "  \n", "\xa0", "\x1c"]
        ),
        max_size=14,
    )
)
def test_header_bounds_matches_the_whole_block_regex(pieces: list[str]) -> None:
    """header_bounds looks only at line starts; it must end where the block regex does."""
    import re

    from ndr_sweeper.classify.message import MAX_HEADER, header_bounds

    text = "".join(pieces)
    m = re.compile(_REFERENCE_HEADER_BLOCK).match(text, 0, MAX_HEADER + 1)
    end = m.end() if m else 0
    if end >= len(text):
        want = (len(text), False)
    else:
        nl = text.find("\n", end)
        line = text[end:] if nl < 0 else text[end:nl]
        want = ((len(text) if nl < 0 else nl + 1), True) if not line.strip() else (end, False)
    assert header_bounds(text) == want


def test_complete_sets_every_verdict_field() -> None:
    import dataclasses

    from ndr_sweeper.classify.engine import VERDICT_FIELDS
    from ndr_sweeper.classify.verdict import Verdict

    assert tuple(f.name for f in dataclasses.fields(Verdict)) == VERDICT_FIELDS


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                *("Message-ID: <a@b>", "message-id:", "MessageID :x", "> Message-Id: <c>", " "),
                *("\n", "\n  <cont@x>", "\t", "|", "x", "MESSAGE-ID", "-id", "id", ":"),
                *("İ", "ſ", "Meſſage-ID: z", "Original-Message-ID: q", "messagemessage-id: r"),
            ]
        ),
        max_size=12,
    )
)
def test_quoted_message_id_lines_are_found_as_by_the_regex(pieces: list[str]) -> None:
    from ndr_sweeper.classify.extract import _QUOTED_ID, _quoted_ids

    text = "".join(pieces)
    want = [(m.span(), m.group(1)) for m in _QUOTED_ID.finditer(text)]
    assert [(m.span(), m.group(1)) for m in _quoted_ids(text, text.lower())] == want


# ---- held-out classes (issue 14) ------------------------------------------------------------

_FX = Path(__file__).parent / "fixtures" / "messages"


def _without_return_path(name: str) -> bytes:
    raw = (_FX / name).read_bytes()
    return b"".join(
        line for line in raw.splitlines(keepends=True) if not line.startswith(b"Return-Path:")
    )


@pytest.mark.parametrize(
    "name", ["virusscanner-failed-recipients.eml", "gateway-returned-mail-error.eml"]
)
def test_gateway_from_an_ordinary_address_without_null_sender(name: str) -> None:
    """No mailer-daemon, no null Return-Path: returning the recipient's own message under a
    bounce-like subject is what tells a gateway's report from mail."""
    v = classify(_without_return_path(name))
    assert v.is_ndr, v.evidence
    assert v.original.message_id


def test_forwarding_someone_elses_message_is_not_returning_ones_own() -> None:
    raw = _without_return_path("virusscanner-failed-recipients.eml").replace(
        b"From: Ben Kraus <ben.kraus@sender.example>", b"From: Other <other@elsewhere.example>"
    )
    assert classify(raw).kind is Kind.NOT_NDR


def test_inline_dsn_fields_need_a_bounce_subject_without_a_mail_system_sign() -> None:
    raw = _without_return_path("workmail-inline-dsn.eml")
    assert classify(raw).kind is Kind.FAILED
    plain = raw.replace(b"Subject: Undelivered Mail Returned to Sender", b"Subject: notes")
    assert classify(plain).kind is Kind.NOT_NDR


def test_lookalike_rule_yields_to_a_failed_dsn_part() -> None:
    """A notification system's own DSN (a failed Action) is still an NDR."""
    raw = b(dsn()).replace(b"Subject:", b"X-Bugzilla-Reason: None\nSubject:", 1)
    v = classify(raw)
    assert v.kind is Kind.FAILED
    notice = (_FX / "lookalike-bugtracker-daemon.eml").read_bytes()
    v = classify(notice)
    assert v.kind is Kind.NOT_NDR and v.detector == "lookalike"
    assert "notification system" in v.evidence[0]


def test_app_daemon_sender_is_not_a_mailer_daemon() -> None:
    from ndr_sweeper.classify.detectors._base import from_address_kind
    from ndr_sweeper.classify.message import parse

    kinds = {
        a: from_address_kind(parse(f"From: {a}\n\nx\n".encode()))
        for a in ("bugzilla-daemon@x.example", "MAILER-DAEMON@x.example", "mail-daemon@x.example")
    }
    assert kinds == {
        "bugzilla-daemon@x.example": "weak",
        "MAILER-DAEMON@x.example": "strong",
        "mail-daemon@x.example": "strong",
    }


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("exchange55-did-not-reach.eml", "the quoted headers carry no Message-ID"),
        ("lotus-delivery-failure.eml", "the quoted headers carry no Message-ID"),
    ],
)
def test_ndr_without_original_says_why(name: str, why: str) -> None:
    v = classify((_FX / name).read_bytes())
    assert v.is_ndr and v.original.message_id is None
    assert v.evidence[-1] == f"no usable original: {why}"


def test_ndr_whose_returned_message_has_no_id_says_so() -> None:
    raw = b(dsn()).replace(b"Message-ID: <lunch-123@example.org>\n", b"")
    v = classify(raw)
    assert v.is_ndr and v.original.message_id is None, v.original
    assert v.evidence[-1] == "no usable original: the returned headers carry no Message-ID"


def test_malformed_attachment_is_a_defect_and_still_gives_the_id() -> None:
    v = classify((_FX / "structural-attachment-headers-in-part-header.eml").read_bytes())
    assert v.original.message_id == "plans-7731@sender.example"
    assert v.original.subject == "Plans for Tuesday"
    assert any("MIME part header" in d for d in v.defects)


def test_returned_copy_with_the_reports_own_id_is_kept_but_said() -> None:
    """Domino stamps the returned copy with the report's own Message-ID."""
    raw = b(dsn()).replace(
        b"Message-ID: <lunch-123@example.org>", b"Message-ID: <bounce-1@mx.example.org>"
    )
    v = classify(raw)
    assert v.original.message_id == "bounce-1@mx.example.org" == v.message_id
    assert "the returned copy carries the report's own Message-ID" in v.defects


def test_report_header_is_never_taken_for_the_returned_headers() -> None:
    """A header-only part without a Message-ID must not make the report's own header (or a
    copy stamped with the report's ID) the original: the sweep would junk a real bounce."""
    raw = (_FX / "structural-attachment-headers-in-part-header.eml").read_bytes()
    stamped = raw.replace(
        b"Message-ID: <plans-7731@sender.example>",
        b"Message-ID: <rpt.20250323120005.31@mx.dest.example.org>",
    )
    v = classify(stamped)
    assert v.is_ndr and v.original.message_id is None
    headers_only = (
        b(dsn())
        .replace(b"Message-ID: <lunch-123@example.org>\n", b"")
        .replace(b"message/rfc822", b"text/rfc822-headers")
    )
    v = classify(headers_only)
    assert v.is_ndr and v.original.message_id is None, v.original
