"""The SMTP stand-in: a real SMTP server that keeps every message per recipient, with a read API."""
