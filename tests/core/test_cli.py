"""The infra command: idempotent migrate/seed/user commands and key rotation."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlalchemy import select

from core import cli
from core.crypto import SecretBox
from core.crypto import generate_key
from core.db import make_engine
from core.db import make_sessionmaker
from core.db import utcnow
from core.models import AuditLog
from core.models import Provision
from core.models import RecoveryCode
from core.models import Tier
from core.models import TotpFactor
from core.models import User
from core.models import UserSession
from core.passwords import verify_password
from core.settings import Settings
from tests.factories import ProvisionFactory


@pytest.fixture
def cli_settings(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on a fresh SQLite file, returned by get_settings() inside the CLI."""
    settings = Settings(env="test", instance_dir=tmp_path, _env_file=None)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    return settings


def count(settings: Settings, model: type) -> int:
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0
    finally:
        engine.dispose()


def test_setup_twice_gives_the_default_tiers_once(cli_settings: Settings, capsys) -> None:
    cli.main(["setup"])
    cli.main(["setup"])
    assert count(cli_settings, Tier) == 3
    assert "none (all present)" in capsys.readouterr().out


def test_default_tiers_have_the_agreed_prices(cli_settings: Settings) -> None:
    cli.main(["setup"])
    engine = make_engine(cli_settings.database_url)
    with make_sessionmaker(engine)() as session:
        tiers = {t.slug: t for t in session.scalars(select(Tier))}
    engine.dispose()
    assert {s: (t.domain_count, t.mailboxes_per_domain) for s, t in tiers.items()} == {
        "starter": (3, 2),
        "growth": (5, 2),
        "scale": (10, 2),
    }
    assert [tiers[s].setup_cents for s in ("starter", "growth", "scale")] == [9700, 14700, 24700]
    assert [tiers[s].monthly_cents for s in ("starter", "growth", "scale")] == [4700, 7700, 12700]


def test_create_admin_is_idempotent_and_updates_the_password(
    cli_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.main(["setup"])
    cli.main(["create-admin", "--email", "Boss@Example.com", "--password", "first-password-1"])
    monkeypatch.setenv("NEW_PW", "second-password-2")
    cli.main(["create-admin", "--email", "boss@example.com", "--password-env", "NEW_PW"])
    assert count(cli_settings, User) == 1
    engine = make_engine(cli_settings.database_url)
    with make_sessionmaker(engine)() as session:
        user = session.scalar(select(User))
    engine.dispose()
    assert user is not None
    assert (user.email, user.role) == ("boss@example.com", "admin")
    assert verify_password(user.password_hash, "second-password-2")
    assert not verify_password(user.password_hash, "first-password-1")


def test_weak_password_is_refused_and_nothing_is_written(cli_settings: Settings) -> None:
    cli.main(["setup"])
    with pytest.raises(SystemExit, match="at least 12 characters"):
        cli.main(["create-student", "--email", "s@example.com", "--password", "short"])
    assert count(cli_settings, User) == 0


def test_rotate_data_keys_reseals_stored_secrets(
    cli_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.main(["setup"])
    old_key, new_key = generate_key(), generate_key()
    engine = make_engine(cli_settings.database_url)
    factory = make_sessionmaker(engine)
    with factory() as session:
        provision = ProvisionFactory(
            session=session,
            user__email="a@example.com",
            plusvibe_client_password_enc=SecretBox([old_key]).seal("pw-123"),
        )
        session.flush()
        owner = provision.user_id
        # An admin's TOTP secret is sealed with the same keys.
        session.add(TotpFactor(user_id=owner, secret_enc=SecretBox([old_key]).seal("B" * 32)))
        session.commit()

    rotated = cli_settings.model_copy(
        update={"data_keys": type(cli_settings.data_keys)(f"{new_key},{old_key}")}
    )
    monkeypatch.setattr(cli, "get_settings", lambda: rotated)
    cli.main(["rotate-data-keys"])

    with factory() as session:
        token = session.scalar(select(Provision.plusvibe_client_password_enc))
        sealed = session.scalar(select(TotpFactor.secret_enc))
    engine.dispose()
    assert token is not None and sealed is not None
    assert SecretBox([new_key]).open(token).get_secret_value() == "pw-123"
    assert SecretBox([new_key]).open(sealed).get_secret_value() == "B" * 32


def test_reset_2fa_removes_the_second_factor_ends_sessions_and_is_audited(
    cli_settings: Settings, capsys
) -> None:
    cli.main(["setup"])
    cli.main(["create-admin", "--email", "boss@example.com", "--password", "first-password-1"])
    engine = make_engine(cli_settings.database_url)
    factory = make_sessionmaker(engine)
    with factory() as session:
        boss = session.scalars(select(User)).one()
        box = SecretBox.from_settings(cli_settings)
        session.add(
            TotpFactor(user_id=boss.id, secret_enc=box.seal("A" * 32), confirmed_at=utcnow())
        )
        session.add(RecoveryCode(user_id=boss.id, code_hash="0" * 64))
        session.add(UserSession(id="s" * 64, user_id=boss.id, second_factor="totp"))
        session.commit()
        boss_id = boss.id
    capsys.readouterr()

    cli.main(["reset-2fa", "--email", "BOSS@example.com"])

    assert (
        "second factor removed for boss@example.com (sessions ended: 1)" in capsys.readouterr().out
    )
    assert (count(cli_settings, TotpFactor), count(cli_settings, RecoveryCode)) == (0, 0)
    with factory() as session:
        ended = session.scalars(select(UserSession)).one()
        row = session.scalars(select(AuditLog).where(AuditLog.action == "two_factor_reset")).one()
    engine.dispose()
    assert ended.revoked_at is not None and ended.revoked_reason == "two_factor_reset"
    assert (row.actor_id, row.target_type, row.target_id) == (None, "user", boss_id)
    assert row.details["via"] == "infra" and row.details["sessions_ended"] == 1
    assert row.details["had_second_factor"] is True
    with pytest.raises(SystemExit, match="no user nobody@example.com"):
        cli.main(["reset-2fa", "--email", "nobody@example.com"])
