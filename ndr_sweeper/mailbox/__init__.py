"""Mailbox access: one UID-based protocol (base.py), an IMAP implementation (imap.py) and an
in-memory one for unit tests (memory.py); discovery.py and uidset.py are pure helpers."""

from ndr_sweeper.mailbox.base import FolderInfo, FolderStatus, HeaderItem, Mailbox

__all__ = ["FolderInfo", "FolderStatus", "HeaderItem", "Mailbox"]
