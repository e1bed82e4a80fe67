"""cohorts: the cohorts table, users.cohort_id and revoked invitations

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-17 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# No batch mode on "users": on SQLite a batch recreates the table, and dropping the old one with
# foreign keys on would cascade into every table that references users. SQLite adds (and since
# 3.35 drops) a column in place, foreign key included, so plain ALTERs do on both backends.

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK_NAME = "fk_users_cohort_id_cohorts"


def upgrade() -> None:
    op.create_table(
        "cohorts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("instructor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cohorts")),
        sa.UniqueConstraint("name", name=op.f("uq_cohorts_name")),
    )
    if op.get_bind().dialect.name == "sqlite":
        # Alembic cannot add a foreign key to an existing SQLite table outside batch mode, but
        # SQLite itself accepts one inline in ADD COLUMN (the new column is NULL everywhere).
        op.execute(
            f"ALTER TABLE users ADD COLUMN cohort_id INTEGER CONSTRAINT {FK_NAME} "
            "REFERENCES cohorts (id)"
        )
    else:
        op.add_column("users", sa.Column("cohort_id", sa.Integer(), nullable=True))
        op.create_foreign_key(FK_NAME, "users", "cohorts", ["cohort_id"], ["id"])
    op.create_index("ix_users_cohort_id", "users", ["cohort_id"], unique=False)
    op.add_column(
        "password_tokens", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("password_tokens", "revoked_at")
    op.drop_index("ix_users_cohort_id", table_name="users")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE users DROP COLUMN cohort_id")
    else:
        op.drop_constraint(FK_NAME, "users", type_="foreignkey")
        op.drop_column("users", "cohort_id")
    op.drop_table("cohorts")
