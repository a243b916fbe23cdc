"""intake: the sender's event time and rule name beside each alert; dedupe claims in the database

Revision ID: 0002_intake_event_time_claims
Revises: 0001_baseline
Create Date: 2026-12-04

``alerts.event_time`` (when the sender says it happened) and ``alerts.rule_name`` (the sender's name for its
rule) are nullable: alerts stored before this revision keep NULL (their senders' times were not kept).
``intake_claims`` holds the (runbook, target) claims of incidents that act or await approval, so two daemons
on one database agree (agent/intake/claims.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002_intake_event_time_claims"
down_revision: str | None = "0001_baseline"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table("intake_claims",
                    sa.Column("runbook", sa.String(length=80), nullable=False),
                    sa.Column("target", sa.String(length=255), nullable=False),
                    sa.Column("incident_id", sa.String(length=40), nullable=False),
                    sa.Column("since", sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint("runbook", "target"))
    with op.batch_alter_table("intake_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_intake_claims_incident_id"), ["incident_id"], unique=False)
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_time", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("rule_name", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("rule_name")
        batch_op.drop_column("event_time")
    with op.batch_alter_table("intake_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_intake_claims_incident_id"))
    op.drop_table("intake_claims")
