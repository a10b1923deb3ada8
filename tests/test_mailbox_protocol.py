"""Every mailbox has the protocol's signatures: a parameter added to base.Mailbox (as `below`
was to search_uids) and left out of one implementation fails here, not in a user's sweep."""

from __future__ import annotations

import inspect

import pytest

from ndr_sweeper.mailbox.base import Mailbox
from ndr_sweeper.mailbox.imap import ImapMailbox
from ndr_sweeper.mailbox.maildir import MaildirMailbox
from ndr_sweeper.mailbox.memory import MemoryMailbox

METHODS = [
    name for name, value in vars(Mailbox).items() if callable(value) and not name.startswith("_")
]


def _params(fn: object) -> list[tuple[str, object, object]]:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


@pytest.mark.parametrize("impl", [ImapMailbox, MemoryMailbox, MaildirMailbox])
@pytest.mark.parametrize("method", METHODS)
def test_same_signature_as_the_protocol(impl: type, method: str) -> None:
    assert hasattr(impl, method), f"{impl.__name__} has no {method}"
    assert _params(getattr(impl, method)) == _params(getattr(Mailbox, method)), (
        f"{impl.__name__}.{method}{inspect.signature(getattr(impl, method))} differs from "
        f"Mailbox.{method}{inspect.signature(getattr(Mailbox, method))}"
    )
