"""baseline: the schema the pre-Alembic releases made with create_all (up to commit ffa8a63)

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-04

It adopts journals written before Alembic: a table that already exists is left as it is (those releases created
exactly these tables, and the daemon's intake table only when the daemon ran), a missing one is created, and the
journal is then at this revision. Timestamps are plain DATETIME columns (agent.store._UTC is a Python-side
decorator over DateTime: the models may change, a migration must not).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_baseline"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _table(name: str, *columns: sa.Column[object] | sa.Constraint, indexes: tuple[str, ...] = ()) -> None:
    if sa.inspect(op.get_bind()).has_table(name):
        return
    op.create_table(name, *columns)
    for column in indexes:
        op.create_index(f"ix_{name}_{column}", name, [column], unique=False)


def _s(length: int) -> sa.String:
    return sa.String(length=length)


def upgrade() -> None:
    dt = sa.DateTime
    _table("incidents",
           sa.Column("id", _s(40), nullable=False),
           sa.Column("title", sa.Text(), nullable=False),
           sa.Column("status", _s(20), nullable=False),
           sa.Column("trigger", _s(40), nullable=False),
           sa.Column("reason", sa.Text(), nullable=False),
           sa.Column("requested_by", _s(200), nullable=False),
           sa.Column("discovered_at", dt(), nullable=False),
           sa.Column("created_at", dt(), nullable=False),
           sa.Column("contained_at", dt(), nullable=True),
           sa.PrimaryKeyConstraint("id"))
    _table("actions",
           sa.Column("id", _s(36), nullable=False),
           sa.Column("seq", sa.Integer(), nullable=False),
           sa.Column("incident_id", _s(40), nullable=False),
           sa.Column("runbook", _s(80), nullable=False),
           sa.Column("step", _s(80), nullable=False),
           sa.Column("kind", _s(10), nullable=False),
           sa.Column("undo_of", _s(36), nullable=True),
           sa.Column("target", _s(200), nullable=False),
           sa.Column("subject", _s(255), nullable=False),
           sa.Column("target_kind", _s(20), nullable=False),
           sa.Column("address", _s(64), nullable=False),
           sa.Column("connector", _s(40), nullable=False),
           sa.Column("action", _s(60), nullable=False),
           sa.Column("args", sa.JSON(), nullable=False),
           sa.Column("reversible", sa.Integer(), nullable=False),
           sa.Column("mutating", sa.Integer(), nullable=False),
           sa.Column("state", _s(20), nullable=False),
           sa.Column("snapshot", sa.JSON(), nullable=True),
           sa.Column("result", sa.JSON(), nullable=True),
           sa.Column("verification", sa.JSON(), nullable=True),
           sa.Column("error", sa.Text(), nullable=True),
           sa.Column("error_kind", _s(40), nullable=True),
           sa.Column("attempts", sa.Integer(), nullable=False),
           sa.Column("changed", sa.Integer(), nullable=True),
           sa.Column("requested_by", _s(200), nullable=False),
           sa.Column("approved_by", _s(200), nullable=True),
           sa.Column("reason", sa.Text(), nullable=False),
           sa.Column("owner", _s(80), nullable=False),
           sa.Column("created_at", dt(), nullable=False),
           sa.Column("updated_at", dt(), nullable=False),
           sa.Column("expires_at", dt(), nullable=True),
           sa.Column("undone_at", dt(), nullable=True),
           sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"]),
           sa.ForeignKeyConstraint(["undo_of"], ["actions.id"]),
           sa.PrimaryKeyConstraint("id"),
           indexes=("incident_id", "seq", "state", "subject", "target"))
    _table("alerts",
           sa.Column("id", _s(36), nullable=False),
           sa.Column("source", _s(40), nullable=False),
           sa.Column("rule_id", _s(200), nullable=False),
           sa.Column("severity", sa.Integer(), nullable=False),
           sa.Column("host", _s(255), nullable=True),
           sa.Column("user", _s(255), nullable=True),
           sa.Column("source_ip", _s(64), nullable=True),
           sa.Column("digest", _s(64), nullable=False),
           sa.Column("raw", sa.JSON(), nullable=False),
           sa.Column("received_at", dt(), nullable=False),
           sa.Column("incident_id", _s(40), nullable=True),
           sa.Column("disposition", _s(40), nullable=False),
           sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"]),
           sa.PrimaryKeyConstraint("id"),
           indexes=("digest",))
    _table("approvals",
           sa.Column("id", _s(36), nullable=False),
           sa.Column("incident_id", _s(40), nullable=False),
           sa.Column("runbook", _s(80), nullable=False),
           sa.Column("target", _s(200), nullable=False),
           sa.Column("params", sa.JSON(), nullable=False),
           sa.Column("status", _s(20), nullable=False),
           sa.Column("reason", sa.Text(), nullable=False),
           sa.Column("requested_at", dt(), nullable=False),
           sa.Column("expires_at", dt(), nullable=True),
           sa.Column("decided_by", _s(200), nullable=True),
           sa.Column("decided_at", dt(), nullable=True),
           sa.Column("decision_reason", sa.Text(), nullable=False),
           sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"]),
           sa.PrimaryKeyConstraint("id"),
           indexes=("incident_id",))
    _table("transitions",
           sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
           sa.Column("action_id", _s(36), nullable=False),
           sa.Column("from_state", _s(20), nullable=False),
           sa.Column("to_state", _s(20), nullable=False),
           sa.Column("at", dt(), nullable=False),
           sa.Column("detail", sa.Text(), nullable=False),
           sa.ForeignKeyConstraint(["action_id"], ["actions.id"]),
           sa.PrimaryKeyConstraint("id"),
           indexes=("action_id",))
    _table("intake_incidents",
           sa.Column("incident_id", _s(40), nullable=False),
           sa.Column("runbook", _s(80), nullable=False),
           sa.Column("target", _s(255), nullable=False),
           sa.Column("rule", _s(80), nullable=False),
           sa.Column("policy", _s(20), nullable=False),
           sa.Column("alert_id", _s(36), nullable=False),
           sa.Column("opened_at", dt(), nullable=False),
           sa.Column("decision", _s(40), nullable=False),
           sa.Column("detail", sa.Text(), nullable=False),
           sa.PrimaryKeyConstraint("incident_id"),
           indexes=("opened_at", "runbook", "target"))


def downgrade() -> None:
    for name in ("intake_incidents", "transitions", "approvals", "alerts", "actions", "incidents"):
        op.drop_table(name)
