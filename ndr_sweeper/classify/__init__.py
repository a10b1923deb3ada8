"""Pure classification: raw message bytes in, a Verdict out.

Nothing in this package does I/O or imports imapclient, keyring, rich or apscheduler.
"""

from ndr_sweeper.classify.verdict import Kind, Original, Recipient, Verdict

__all__ = ["Kind", "Original", "Recipient", "Verdict"]
