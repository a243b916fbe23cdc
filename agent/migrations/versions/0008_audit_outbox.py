"""audit outbox: site workers' audit records (and evidence they name) for the one chain (agent.audit.outbox)

Revision ID: 0008_audit_outbox
Revises: 0007_action_site_lease
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008_audit_outbox"
down_revision: str | None = "0007_action_site_lease"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_chain",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("genesis", sa.String(length=64), nullable=False),
        sa.Column("writer", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "audit_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident", sa.String(length=40), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("drain_from", sa.Integer(), nullable=True),
        sa.Column("attachment", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_outbox_incident"), ["incident"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_outbox_incident"))
    op.drop_table("audit_outbox")
    op.drop_table("audit_chain")
