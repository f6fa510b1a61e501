"""Passwords that Tayori makes for members."""

from __future__ import annotations

from tayori.auth.passwords import generate_password, hash_password, verify_password


def test_generated_passwords_are_letters_and_digits_only() -> None:
    """A demo password is typed into mail programs and command lines: one beginning with
    `-` was taken for an option by swaks (seen in an end-to-end test run)."""
    drawn = [generate_password() for _ in range(500)]
    assert all(len(p) == 16 and p.isascii() and p.isalnum() for p in drawn)
    assert len(set(drawn)) == len(drawn)


def test_a_generated_password_verifies_against_its_hash() -> None:
    password = generate_password()
    assert verify_password(hash_password(password), password)
    assert not verify_password(hash_password(password), password[:-1])
