"""The result of classifying one message. Pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    """What a message is. Only FAILED and DELAYED are NDRs."""

    FAILED = "failed"
    DELAYED = "delayed"
    AUTOREPLY = "autoreply"
    CHALLENGE_RESPONSE = "challenge_response"
    MDN = "mdn"
    FEEDBACK_REPORT = "feedback_report"
    DMARC_REPORT = "dmarc_report"
    TLSRPT_REPORT = "tlsrpt_report"
    DELIVERY_SUCCESS = "delivery_success"
    VIRUS_NOTICE = "virus_notice"
    NOT_NDR = "not_ndr"

    @property
    def is_ndr(self) -> bool:
        return self in (Kind.FAILED, Kind.DELAYED)


@dataclass(frozen=True, slots=True)
class Recipient:
    """A recipient the report is about."""

    address: str
    status: str | None = None  # enhanced status code, e.g. "5.1.1"
    action: str | None = None  # DSN Action: failed / delayed / delivered / ...
    diagnostic: str | None = None  # the remote server's words, shortened


@dataclass(frozen=True, slots=True)
class Original:
    """What the report tells about the message it is about (the one we may have sent)."""

    message_id: str | None = None  # normalised: no angle brackets, stripped
    other_message_ids: tuple[str, ...] = ()  # other IDs naming the same original
    from_: str | None = None
    to: str | None = None
    subject: str | None = None
    date: str | None = None
    received: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classifier's answer for one message, with its evidence."""

    kind: Kind
    detector: str  # module that decided, e.g. "rfc3464", "postfix", "headers"
    original: Original = field(default_factory=Original)
    recipients: tuple[Recipient, ...] = ()
    evidence: tuple[str, ...] = ()  # short human-readable reasons
    defects: tuple[str, ...] = ()  # malformations met while reading
    message_id: str | None = None  # the report's own Message-ID (normalised)
    subject: str | None = None  # the report's own Subject
    from_: str | None = None  # the report's own From
    # For look-alikes (auto-replies, challenge/response): the IDs in In-Reply-To/References,
    # so rules can treat replies to forged mail like backscatter.
    reply_to_ids: tuple[str, ...] = ()

    @property
    def is_ndr(self) -> bool:
        return self.kind.is_ndr

    @property
    def original_message_id(self) -> str | None:
        return self.original.message_id

    def all_original_ids(self) -> tuple[str, ...]:
        """Every ID that names the original, the main one first."""
        if self.original.message_id is None:
            return self.original.other_message_ids
        return (self.original.message_id, *self.original.other_message_ids)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (used by `explain --json` and the sweep's journal)."""
        return {
            "is_ndr": self.is_ndr,
            "kind": str(self.kind),
            "original_message_id": self.original.message_id,
            "other_message_ids": list(self.original.other_message_ids),
            "detector": self.detector,
            "evidence": list(self.evidence),
            "defects": list(self.defects),
            "recipients": [
                {
                    "address": r.address,
                    "status": r.status,
                    "action": r.action,
                    "diagnostic": r.diagnostic,
                }
                for r in self.recipients
            ],
            "original": {
                "from": self.original.from_,
                "to": self.original.to,
                "subject": self.original.subject,
                "date": self.original.date,
                "received": list(self.original.received),
            },
            "message_id": self.message_id,
            "subject": self.subject,
            "from": self.from_,
            "reply_to_ids": list(self.reply_to_ids),
        }
