"""Gmail, Google Workspace (G Suite) and Google Groups bounces."""

from __future__ import annotations

from ..message import ParsedMessage
from ..verdict import Verdict
from ._text import TextFormat, detect_format, rx

FORMAT = TextFormat(
    name="gmail",
    markers=rx(
        r"delivery to the following recipients? (?:failed permanently|has been delayed)",
        r"this is an automatically generated delivery status notification",
        r"technical details of (?:permanent|temporary) failure",
        r"your message wasn't delivered to",
        r"there was a (?:temporary )?problem delivering your message to",
        r"the response (?:from the remote server )?was:",
        r"we're writing to let you know that the group you tried to contact",
        r"message blocked\s+your message to [^\n]{1,200} has been blocked",
        r"delivery incomplete",
        r"address not found",
        r"message not delivered",
    ),
    senders=rx(r"google|gmail|googlemail"),
    delay=rx(
        r"delivery to the following recipients? has been delayed",
        r"technical details of temporary failure",
        r"delivery incomplete",
        r"will retry for \d+ more hour",
    ),
)


def detect(msg: ParsedMessage) -> Verdict | None:
    return detect_format(msg, FORMAT)
