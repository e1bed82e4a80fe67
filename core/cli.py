"""The ``infra`` command: idempotent set-up and maintenance of the app DB.

Every command can run any number of times and leaves the same state: migrations apply only what
is missing, seeding adds only missing tiers, user commands create or update.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import migrate
from core.accounts import revoke_sessions
from core.crud import get_user_by_email
from core.crud import normalize_email
from core.crud import seed_default_tiers
from core.crud import upsert_user
from core.crypto import SecretBox
from core.crypto import generate_key
from core.db import make_engine
from core.db import make_sessionmaker
from core.db import session_scope
from core.models import AuditLog
from core.models import Provision
from core.models import RecoveryCode
from core.models import Role
from core.models import TotpFactor
from core.models import User
from core.passwords import WeakPasswordError
from core.settings import Settings
from core.settings import get_settings


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")


def _password(args: argparse.Namespace) -> str | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise SystemExit(f"environment variable {args.password_env} is empty or unset")
        return value
    if args.password:
        return args.password
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return None


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> None:
    """Migrate the app DB up to the given revision."""
    migrate.upgrade(settings.database_url, args.revision)
    _say(f"database at revision {args.revision}")


def cmd_db_downgrade(settings: Settings, args: argparse.Namespace) -> None:
    """Migrate the app DB down to the given revision."""
    migrate.downgrade(settings.database_url, args.revision)
    _say(f"database at revision {args.revision}")


def cmd_seed_tiers(settings: Settings, _args: argparse.Namespace) -> None:
    """Insert the default tiers that are missing; existing ones are left as admins set them."""
    with _session(settings) as session:
        created = seed_default_tiers(session=session)
    _say(f"tiers created: {', '.join(created) or 'none (all present)'}")


def cmd_setup(settings: Settings, args: argparse.Namespace) -> None:
    """Migrate to head and seed the default tiers."""
    args.revision = "head"
    cmd_db_upgrade(settings, args)
    cmd_seed_tiers(settings, args)


def _create_user(settings: Settings, args: argparse.Namespace, role: Role) -> None:
    try:
        with _session(settings) as session:
            password = _password(args)
            user, created = upsert_user(
                session=session, email=args.email, password=password, role=role, name=args.name
            )
            if password is not None and not created:
                # A new password ends every session signed in with the old one.
                ended = revoke_sessions(session, user.id, "password_change")
                _audit(session, "password_changed", user.id, sessions_ended=ended)
            email = user.email
    except (WeakPasswordError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    _say(f"{role.value} {email} {'created' if created else 'updated'}")


def cmd_create_admin(settings: Settings, args: argparse.Namespace) -> None:
    """Create an admin, or make an existing user an admin."""
    _create_user(settings, args, Role.ADMIN)


def cmd_create_student(settings: Settings, args: argparse.Namespace) -> None:
    """Create a student, or update an existing one."""
    _create_user(settings, args, Role.STUDENT)


def _audit(session: Session, action: str, user_id: int, **details: object) -> None:
    # The audit log names who ran the command: no portal user, the operating-system account.
    try:
        os_user = getpass.getuser()
    except (OSError, KeyError):
        os_user = "unknown"
    session.add(
        AuditLog(
            actor_id=None,
            action=action,
            target_type="user",
            target_id=user_id,
            details={"via": "infra", "os_user": os_user, **details},
        )
    )


def _user(session: Session, email: str) -> User:
    user = get_user_by_email(session=session, email=email)
    if user is None:
        raise SystemExit(f"error: no user {normalize_email(email)}")
    return user


def cmd_revoke_sessions(settings: Settings, args: argparse.Namespace) -> None:
    """Sign a user out everywhere: every live session of the account ends at its next request."""
    with _session(settings) as session:
        user = _user(session, args.email)
        ended = revoke_sessions(session, user.id, "cli")
        _audit(session, "sessions_revoked", user.id, sessions_ended=ended)
        email = user.email
    _say(f"sessions ended for {email}: {ended}")


def cmd_reset_2fa(settings: Settings, args: argparse.Namespace) -> None:
    """Remove an admin's second factor and recovery codes (a lost phone): they enrol again."""
    with _session(settings) as session:
        user = _user(session, args.email)
        factor = session.execute(delete(TotpFactor).where(TotpFactor.user_id == user.id))
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        # Whoever holds the lost phone may be signed in with it: every session ends too.
        ended = revoke_sessions(session, user.id, "two_factor_reset")
        _audit(
            session,
            "two_factor_reset",
            user.id,
            had_second_factor=bool(factor.rowcount),
            sessions_ended=ended,
        )
        email = user.email
    _say(
        f"second factor removed for {email} (sessions ended: {ended}); "
        "they set up a new one at their next sign-in"
    )


def cmd_rotate_data_keys(settings: Settings, _args: argparse.Namespace) -> None:
    """Re-seal every stored secret under the newest data key."""
    box = SecretBox.from_settings(settings)
    rotated = 0
    with _session(settings) as session:
        for provision in session.scalars(
            select(Provision).where(Provision.plusvibe_client_password_enc.is_not(None))
        ):
            token = provision.plusvibe_client_password_enc
            if token is not None and not box.is_current(token):
                provision.plusvibe_client_password_enc = box.rotate(token)
                rotated += 1
        # Admins' TOTP secrets are sealed with the same keys.
        for factor in session.scalars(select(TotpFactor)):
            if not box.is_current(factor.secret_enc):
                factor.secret_enc = box.rotate(factor.secret_enc)
                rotated += 1
    _say(f"secrets re-sealed under the newest key: {rotated}")


def cmd_generate_data_key(_settings: Settings, _args: argparse.Namespace) -> None:
    """Print a fresh data key for APP_DATA_KEYS."""
    _say(generate_key())


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``infra`` command."""
    parser = argparse.ArgumentParser(prog="infra", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("db-upgrade", help=cmd_db_upgrade.__doc__)
    up.add_argument("--revision", default="head")
    up.set_defaults(func=cmd_db_upgrade)
    down = sub.add_parser("db-downgrade", help=cmd_db_downgrade.__doc__)
    down.add_argument("--revision", required=True)
    down.set_defaults(func=cmd_db_downgrade)
    sub.add_parser("seed-tiers", help=cmd_seed_tiers.__doc__).set_defaults(func=cmd_seed_tiers)
    sub.add_parser("setup", help=cmd_setup.__doc__).set_defaults(func=cmd_setup)
    for name, func in (("create-admin", cmd_create_admin), ("create-student", cmd_create_student)):
        user = sub.add_parser(name, help=func.__doc__)
        user.add_argument("--email", required=True)
        user.add_argument("--name", default="")
        user.add_argument("--password", help="visible in the process list; prefer --password-env")
        user.add_argument("--password-env", help="read the password from this environment variable")
        user.set_defaults(func=func)
    revoke = sub.add_parser("revoke-sessions", help=cmd_revoke_sessions.__doc__)
    revoke.add_argument("--email", required=True)
    revoke.set_defaults(func=cmd_revoke_sessions)
    reset_2fa = sub.add_parser("reset-2fa", help=cmd_reset_2fa.__doc__)
    reset_2fa.add_argument("--email", required=True)
    reset_2fa.set_defaults(func=cmd_reset_2fa)
    sub.add_parser("rotate-data-keys", help=cmd_rotate_data_keys.__doc__).set_defaults(
        func=cmd_rotate_data_keys
    )
    sub.add_parser("generate-data-key", help=cmd_generate_data_key.__doc__).set_defaults(
        func=cmd_generate_data_key
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``infra`` command."""
    args = build_parser().parse_args(argv)
    args.func(get_settings(), args)


if __name__ == "__main__":
    main()
