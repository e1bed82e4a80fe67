"""Encryption of vendor secrets at rest (the PlusVibe client password, per-student keys).

Fernet (AES-128-CBC + HMAC-SHA256) under a list of keys: the first key encrypts, every key
decrypts, so rotating means prepending a new key, re-sealing stored values, then dropping the old.
"""

from __future__ import annotations

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken
from cryptography.fernet import MultiFernet
from pydantic import SecretStr

from core.settings import Settings


class SecretBoxError(ValueError):
    """A stored secret could not be decrypted with any configured key."""


class SecretBox:
    """Seal and open secrets with the app's data keys; never holds plaintext."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one data key is required")
        try:
            self._fernets = [Fernet(key.encode()) for key in keys]
        except ValueError:
            # Don't chain: the original message may echo part of the key.
            raise ValueError("a data key is not a valid Fernet key") from None
        self._multi = MultiFernet(self._fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """Build the box from ``APP_DATA_KEYS`` (comma-separated, newest first)."""
        raw = settings.data_keys.get_secret_value()
        return cls([key.strip() for key in raw.split(",") if key.strip()])

    def __repr__(self) -> str:
        return f"SecretBox(keys={len(self._fernets)})"

    def seal(self, plaintext: str | SecretStr) -> str:
        """Encrypt ``plaintext`` under the newest key and return the token."""
        value = plaintext.get_secret_value() if isinstance(plaintext, SecretStr) else plaintext
        return self._multi.encrypt(value.encode()).decode()

    def open(self, token: str) -> SecretStr:
        """Decrypt ``token`` with whichever configured key sealed it."""
        try:
            return SecretStr(self._multi.decrypt(token.encode()).decode())
        except InvalidToken:
            raise SecretBoxError(
                "stored secret cannot be decrypted with the configured keys"
            ) from None

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` under the newest key (no-op in meaning, new ciphertext)."""
        try:
            return self._multi.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretBoxError(
                "stored secret cannot be decrypted with the configured keys"
            ) from None

    def is_current(self, token: str) -> bool:
        """Whether ``token`` is already sealed under the newest key."""
        try:
            self._fernets[0].decrypt(token.encode())
        except InvalidToken:
            return False
        return True


def generate_key() -> str:
    """Return a fresh random data key."""
    return Fernet.generate_key().decode()
