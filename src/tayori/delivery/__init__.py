"""Putting accepted messages where they belong: mailbox appends (group-committed)."""
