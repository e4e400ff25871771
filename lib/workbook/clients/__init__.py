"""Clients of the real services, built from an `Env`; platform.py joins with the platform issues."""
