"""Secrets at rest: round-trip, key rotation, and no plaintext in the stored column."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.crypto import SecretBox
from core.crypto import SecretBoxError
from core.crypto import generate_key
from core.models import Provision
from tests.factories import ProvisionFactory

PASSWORD = "PlusVibe-One-Time-Pa55!"


def test_seal_and_open_round_trip() -> None:
    box = SecretBox([generate_key()])
    token = box.seal(PASSWORD)
    assert PASSWORD not in token
    assert box.open(token).get_secret_value() == PASSWORD
    # Fernet is randomized: the same secret never produces the same token twice.
    assert box.seal(PASSWORD) != token


def test_opened_secret_does_not_show_in_repr() -> None:
    box = SecretBox([generate_key()])
    opened = box.open(box.seal(PASSWORD))
    assert PASSWORD not in repr(opened)
    assert PASSWORD not in str(opened)
    assert "keys=1" in repr(box)


def test_wrong_key_cannot_open() -> None:
    token = SecretBox([generate_key()]).seal(PASSWORD)
    with pytest.raises(SecretBoxError):
        SecretBox([generate_key()]).open(token)


def test_rotation_keeps_old_tokens_readable_then_reseals_them() -> None:
    old_key, new_key = generate_key(), generate_key()
    token = SecretBox([old_key]).seal(PASSWORD)

    rotating = SecretBox([new_key, old_key])
    assert rotating.open(token).get_secret_value() == PASSWORD
    assert not rotating.is_current(token)

    resealed = rotating.rotate(token)
    assert rotating.is_current(resealed)
    # Once every token is resealed the old key can be dropped.
    assert SecretBox([new_key]).open(resealed).get_secret_value() == PASSWORD
    with pytest.raises(SecretBoxError):
        SecretBox([new_key]).open(token)


def test_invalid_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="not a valid Fernet key") as info:
        SecretBox(["not-a-key-but-secret-material"])
    assert "secret-material" not in str(info.value)
    assert info.value.__cause__ is None


def test_stored_column_holds_no_plaintext(backend_session: Session) -> None:
    box = SecretBox([generate_key()])
    provision = ProvisionFactory(
        session=backend_session,
        user__email="a@example.com",
        plusvibe_client_password_enc=box.seal(PASSWORD),
    )
    backend_session.commit()

    raw = backend_session.execute(
        text("SELECT plusvibe_client_password_enc FROM provisions WHERE id = :id"),
        {"id": provision.id},
    ).scalar_one()
    assert PASSWORD not in raw
    assert box.open(raw).get_secret_value() == PASSWORD
    # No other column of the row carries it either.
    row = backend_session.execute(
        text("SELECT * FROM provisions WHERE id = :id"), {"id": provision.id}
    ).one()
    assert all(PASSWORD not in str(value) for value in row)
    assert isinstance(backend_session.get(Provision, provision.id), Provision)
