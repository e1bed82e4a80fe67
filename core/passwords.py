"""Password hashing for portal logins (scrypt via werkzeug, salted, constant-time checks)."""

from __future__ import annotations

from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

MIN_PASSWORD_LENGTH = 10
# A valid hash of a random string: checking against it costs the same as a real check, so a
# login for an unknown email takes as long as one for a known email (no user enumeration).
_DUMMY_HASH = generate_password_hash("dummy-password-for-timing-equalisation")


class WeakPasswordError(ValueError):
    """The password does not meet the minimum policy."""


def hash_password(password: str) -> str:
    """Hash ``password`` for storage, refusing ones that are too short."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return generate_password_hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check ``password`` against a stored hash; ``None`` (unknown user) costs the same and fails."""
    if password_hash is None:
        check_password_hash(_DUMMY_HASH, password)
        return False
    return check_password_hash(password_hash, password)
