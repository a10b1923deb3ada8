"""ndr-sweeper: move NDR backscatter out of an IMAP mailbox, keep the user's real bounces."""

__version__ = "0.1.0"
