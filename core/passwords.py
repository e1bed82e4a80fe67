"""Password hashing for portal logins (scrypt via werkzeug, salted, constant-time checks)."""

from __future__ import annotations

from functools import lru_cache

from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

MIN_PASSWORD_LENGTH = 12
# scrypt N=2^15 (32 MiB), r=8, p=3: one of the equivalent scrypt settings of OWASP's Password
# Storage Cheat Sheet. Chosen over N=2^17 (128 MiB) so that 16 concurrent sign-ins (4 gunicorn
# workers x 4 threads) stay within memory. werkzeug's own default (p=1) is below that guidance.
PASSWORD_HASH_METHOD = "scrypt:32768:8:3"
# Tests sign in hundreds of times: they hash with cheap parameters (prod refuses them).
TEST_PASSWORD_HASH_METHOD = "scrypt:1024:8:1"


class WeakPasswordError(ValueError):
    """The password does not meet the minimum policy."""


def hash_password(password: str, *, method: str = PASSWORD_HASH_METHOD) -> str:
    """Hash ``password`` for storage, refusing ones that are too short."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return generate_password_hash(password, method=method)


def rehash_password(password: str, *, method: str = PASSWORD_HASH_METHOD) -> str:
    """Hash an already accepted password with ``method`` (a sign-in upgrading an old hash)."""
    return generate_password_hash(password, method=method)


def needs_rehash(password_hash: str, *, method: str = PASSWORD_HASH_METHOD) -> bool:
    """Whether ``password_hash`` was made with other parameters than ``method``."""
    return password_hash.split("$", 1)[0] != method


@lru_cache
def _dummy_hash(method: str) -> str:
    # A valid hash of a random string with the current parameters: checking against it costs the
    # same as a real check, so an unknown email takes as long as a known one (no enumeration).
    return generate_password_hash("dummy-password-for-timing-equalisation", method=method)


def verify_password(
    password_hash: str | None, password: str, *, method: str = PASSWORD_HASH_METHOD
) -> bool:
    """Check ``password`` against a stored hash; ``None`` (unknown user) costs the same and fails."""
    if password_hash is None:
        check_password_hash(_dummy_hash(method), password)
        return False
    return check_password_hash(password_hash, password)
