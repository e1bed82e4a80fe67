"""Which new passwords are accepted: long enough, not the account's email, not a common one."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from core.passwords import MIN_PASSWORD_LENGTH

# About a thousand of the most used passwords (well-known leaked-password lists), lower-case,
# plus the long forms people reach for when told "12 characters": 123456789012, qwertyuiopas...
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")
MAX_PASSWORD_LENGTH = 200


@lru_cache
def common_passwords() -> frozenset[str]:
    """The bundled list, read once."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip())


def password_problem(password: str, *, email: str) -> str | None:
    """Why ``password`` is refused for the account ``email``, or None if it is fine."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Use at most {MAX_PASSWORD_LENGTH} characters."
    folded = password.strip().lower()
    if folded in common_passwords():
        return "This password is on a list of common passwords; choose another."
    if folded in {email.lower(), email.lower().split("@")[0]}:
        return "Do not use your email address as your password."
    return None
