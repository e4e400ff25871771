"""Asserts outside pytest's rewriting, as they run in a notebook kernel (no message of their own)."""


def one_plus_one_is_three() -> None:
    assert 1 + 1 == 3
