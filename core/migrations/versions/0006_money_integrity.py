"""money integrity: purchase attempts, order snapshots, outbox, run epochs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# "cancelled" is terminal: no statement, from any process, may move a provision out of it.
# Note for later migrations: SQLite's batch mode recreates the table and drops its triggers, so
# a migration that batch-alters "provisions" must create this trigger again.
SQLITE_TRIGGER = """
CREATE TRIGGER provisions_cancelled_is_terminal
BEFORE UPDATE OF status ON provisions
WHEN OLD.status = 'cancelled' AND NEW.status <> 'cancelled'
BEGIN
    SELECT RAISE(ABORT, 'provision is cancelled: cancelled is terminal');
END
"""
POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION provisions_cancelled_is_terminal() RETURNS trigger AS $$
BEGIN
    IF OLD.status = 'cancelled' AND NEW.status <> 'cancelled' THEN
        RAISE EXCEPTION 'provision % is cancelled: cancelled is terminal', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql
"""
POSTGRES_TRIGGER = """
CREATE TRIGGER provisions_cancelled_is_terminal
BEFORE UPDATE OF status ON provisions
FOR EACH ROW EXECUTE FUNCTION provisions_cancelled_is_terminal()
"""

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("key", name=op.f("uq_outbox_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_unsent", ["sent_at", "next_attempt_at"], unique=False)

    op.create_table(
        "order_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provision_id", sa.Integer(), nullable=False),
        sa.Column("checkout_session_id", sa.String(length=255), nullable=True),
        sa.Column("tier_id", sa.Integer(), nullable=False),
        sa.Column("setup_cents", sa.Integer(), nullable=False),
        sa.Column("monthly_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("setup_price_id", sa.String(length=255), nullable=True),
        sa.Column("monthly_price_id", sa.String(length=255), nullable=True),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("addresses", sa.JSON(), nullable=False),
        sa.Column("sender_first_name", sa.String(length=100), nullable=False),
        sa.Column("sender_last_name", sa.String(length=100), nullable=False),
        sa.Column("username_patterns", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("stripe_refund_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'paid', 'superseded', 'refunded', 'expired')",
            name=op.f("ck_order_snapshots_status"),
        ),
        sa.ForeignKeyConstraint(
            ["provision_id"],
            ["provisions.id"],
            name=op.f("fk_order_snapshots_provision_id_provisions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tier_id"],
            ["tiers.id"],
            name=op.f("fk_order_snapshots_tier_id_tiers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_snapshots")),
        sa.UniqueConstraint(
            "checkout_session_id", name=op.f("uq_order_snapshots_checkout_session_id")
        ),
    )
    with op.batch_alter_table("order_snapshots", schema=None) as batch_op:
        batch_op.create_index("ix_order_snapshots_provision_id", ["provision_id"], unique=False)

    op.create_table(
        "purchase_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provision_id", sa.Integer(), nullable=False),
        sa.Column("upgrade_id", sa.Integer(), nullable=True),
        sa.Column("domain_name", sa.String(length=253), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('sent', 'refused', 'unknown', 'accepted')",
            name=op.f("ck_purchase_attempts_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["provision_id"],
            ["provisions.id"],
            name=op.f("fk_purchase_attempts_provision_id_provisions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["upgrade_id"],
            ["upgrades.id"],
            name=op.f("fk_purchase_attempts_upgrade_id_upgrades"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_attempts")),
        sa.UniqueConstraint(
            "domain_name", "attempt_no", name=op.f("uq_purchase_attempts_domain_name_attempt_no")
        ),
    )
    with op.batch_alter_table("purchase_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_purchase_attempts_unresolved", ["resolution"], unique=False)

    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("export_id", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("export_requested_at", sa.DateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("provisions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("run_epoch", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("cancel_generation", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("past_due_since", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("upgrades", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("run_epoch", sa.Integer(), server_default="0", nullable=False)
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS provisions_cancelled_is_terminal"
        + (" ON provisions" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS provisions_cancelled_is_terminal()")
    with op.batch_alter_table("upgrades", schema=None) as batch_op:
        batch_op.drop_column("run_epoch")

    with op.batch_alter_table("provisions", schema=None) as batch_op:
        batch_op.drop_column("past_due_since")
        batch_op.drop_column("cancel_generation")
        batch_op.drop_column("run_epoch")

    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("export_requested_at")
        batch_op.drop_column("export_id")

    with op.batch_alter_table("purchase_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_purchase_attempts_unresolved")

    op.drop_table("purchase_attempts")
    with op.batch_alter_table("order_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_order_snapshots_provision_id")

    op.drop_table("order_snapshots")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_unsent")

    op.drop_table("outbox")
