"""Builders for the bounces and look-alikes the sweep tests put into a lab mailbox.

Our own messages, written for these tests: a Postfix-style DSN (with the original as
message/rfc822 or only its headers), a free-text NDR without the original, an auto-reply and
ordinary mail. CRLF line ends, as IMAP stores them.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from email.utils import format_datetime

_seq = itertools.count(1)


def _uid() -> str:
    return f"{next(_seq)}.{os.getpid()}.{os.urandom(3).hex()}"


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def original(
    message_id: str,
    sender: str = "me@example.org",
    to: str = "friend@example.net",
    subject: str = "Lunch on Friday?",
    extra_headers: str = "",
) -> bytes:
    """A message as the user (or a spammer forging the user) sent it."""
    return _crlf(
        f"From: {sender}\n"
        f"To: {to}\n"
        f"Subject: {subject}\n"
        f"Date: {format_datetime(datetime(2026, 11, 20, 9, 30, tzinfo=UTC))}\n"
        f"Message-ID: <{message_id}>\n"
        f"{extra_headers}"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "Shall we meet at noon?\n"
    )


def dsn(
    original_id: str,
    *,
    rcpt: str = "nobody@example.net",
    headers_only: bool = False,
    bounce_id: str | None = None,
    sender: str = "me@example.org",
) -> bytes:
    """A Postfix-style delivery-status report for `original_id`."""
    bounce_id = bounce_id or f"bounce.{_uid()}@mx.example.net"
    boundary = f"B.{_uid()}"
    orig = original(original_id, sender=sender, to=rcpt).decode()
    part3_type = "text/rfc822-headers" if headers_only else "message/rfc822"
    part3 = orig.split("\r\n\r\n", 1)[0] + "\r\n" if headers_only else orig
    return _crlf(
        "Return-Path: <>\n"
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
        f"To: {sender}\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        f"Date: {format_datetime(datetime(2026, 11, 20, 9, 31, tzinfo=UTC))}\n"
        f"Message-ID: <{bounce_id}>\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=delivery-status;\n"
        f'\tboundary="{boundary}"\n'
        "\n"
        f"--{boundary}\n"
        "Content-Description: Notification\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "This is the mail system at host mx.example.net.\n"
        "\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n"
        "\n"
        f"<{rcpt}>: host mail.example.net[192.0.2.7] said: 550 5.1.1\n"
        "    User unknown (in reply to RCPT TO command)\n"
        "\n"
        f"--{boundary}\n"
        "Content-Description: Delivery report\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mx.example.net\n"
        "Arrival-Date: Fri, 20 Nov 2026 09:30:59 +0000 (UTC)\n"
        "\n"
        f"Final-Recipient: rfc822; {rcpt}\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n"
        "\n"
        f"--{boundary}\n"
        f"Content-Type: {part3_type}\n"
        "\n"
        f"{part3}"
        f"--{boundary}--\n"
    )


def freetext_ndr_without_original(rcpt: str = "gone@example.net") -> bytes:
    """A free-text NDR that does not quote the original message: undetermined."""
    return _crlf(
        "Return-Path: <>\n"
        "From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.com>\n"
        "To: me@example.org\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        f"Date: {format_datetime(datetime(2026, 11, 20, 10, 0, tzinfo=UTC))}\n"
        f"Message-ID: <ndr.{_uid()}@relay.example.com>\n"
        f"X-Failed-Recipients: {rcpt}\n"
        "Auto-Submitted: auto-replied\n"
        "\n"
        "This message was created automatically by mail delivery software.\n"
        "\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n"
        "\n"
        f"  {rcpt}\n"
        "    mailbox is full: retry timeout exceeded\n"
    )


def autoreply(in_reply_to: str) -> bytes:
    return _crlf(
        "From: Dana <dana@example.net>\n"
        "To: me@example.org\n"
        "Subject: Out of office: Lunch on Friday?\n"
        f"Date: {format_datetime(datetime(2026, 11, 20, 11, 0, tzinfo=UTC))}\n"
        f"Message-ID: <ooo.{_uid()}@example.net>\n"
        f"In-Reply-To: <{in_reply_to}>\n"
        f"References: <{in_reply_to}>\n"
        "Auto-Submitted: auto-replied\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "I am away until Monday and will read your message when I am back.\n"
    )


def ordinary(subject: str = "Minutes of the meeting") -> bytes:
    return _crlf(
        "From: Lee <lee@example.com>\n"
        "To: me@example.org\n"
        f"Subject: {subject}\n"
        f"Date: {format_datetime(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))}\n"
        f"Message-ID: <mail.{_uid()}@example.com>\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "Here are the minutes. The undeliverable parcel issue is solved.\n"
    )


def new_id(tag: str = "sent") -> str:
    return f"{tag}.{_uid()}@laptop.example.org"
