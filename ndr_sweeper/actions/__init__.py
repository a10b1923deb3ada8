"""Deciding what to do with each message (pure) and doing it (through a Mailbox)."""
