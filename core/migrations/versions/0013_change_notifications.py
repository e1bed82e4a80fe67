"""change notifications: NOTIFY portal_changes when progress or a session changes (PostgreSQL)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

# The one choke point for the portal's caches (portal/change_listener.py): whatever process or
# statement writes the rows (the step mirror, a flow's compare-and-set, a webhook, the CLI, raw
# SQL), the trigger queues "p:<user_id>" (what the progress page shows changed) or
# "s:<user_id>" (a session or the account changed) on the channel. PostgreSQL delivers a
# notification only when its transaction commits, in commit order. SQLite has no LISTEN/NOTIFY:
# nothing is installed there and the portal reads the DB on every request.
# Triggers survive ALTER TABLE on PostgreSQL (only SQLite's batch mode recreates tables).
FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION portal_notify_provision() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('portal_changes', 'p:' || OLD.user_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.user_id <> OLD.user_id) THEN
        PERFORM pg_notify('portal_changes', 'p:' || NEW.user_id);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
""",
    """
CREATE OR REPLACE FUNCTION portal_notify_step() RETURNS trigger AS $$
DECLARE
    owner integer;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        SELECT user_id INTO owner FROM provisions WHERE id = OLD.provision_id;
        IF owner IS NOT NULL THEN
            PERFORM pg_notify('portal_changes', 'p:' || owner);
        END IF;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.provision_id <> OLD.provision_id) THEN
        SELECT user_id INTO owner FROM provisions WHERE id = NEW.provision_id;
        IF owner IS NOT NULL THEN
            PERFORM pg_notify('portal_changes', 'p:' || owner);
        END IF;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
""",
    """
CREATE OR REPLACE FUNCTION portal_notify_account() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('portal_changes', 's:' || OLD.id);
    ELSE
        PERFORM pg_notify('portal_changes', 's:' || OLD.user_id);
        IF TG_OP = 'UPDATE' AND NEW.user_id <> OLD.user_id THEN
            PERFORM pg_notify('portal_changes', 's:' || NEW.user_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
""",
]

# The provision columns the progress document reads (portal/progress.py, PROGRESS_QUERY; a test
# checks the two agree). Other provision writes (run claims, Stripe fields) change nothing shown.
PROVISION_COLUMNS = ("user_id", "status", "status_reason", "remedy", "paid_at")

TRIGGERS = {
    "provisions_notify_progress": (
        "provisions",
        f"INSERT OR DELETE OR UPDATE OF {', '.join(PROVISION_COLUMNS)}",
        "portal_notify_provision",
    ),
    "provisioning_steps_notify_progress": (
        "provisioning_steps",
        "INSERT OR UPDATE OR DELETE",
        "portal_notify_step",
    ),
    # A new session changes no cached one; revoking, touching or deleting one does.
    "user_sessions_notify_account": (
        "user_sessions",
        "UPDATE OR DELETE",
        "portal_notify_account",
    ),
    "users_notify_account": ("users", "UPDATE OR DELETE", "portal_notify_account"),
}

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for function in FUNCTIONS:
        op.execute(function)
    for name, (table, events, function) in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute(
            f"CREATE TRIGGER {name} AFTER {events} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, _events, _function) in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    for function in ("portal_notify_provision", "portal_notify_step", "portal_notify_account"):
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
