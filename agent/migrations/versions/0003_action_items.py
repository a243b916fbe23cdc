"""action items: one row per subject of an action (account, address, host), backfilled from journaled args

Revision ID: 0003_action_items
Revises: 0002_intake_event_time_claims
Create Date: 2026-12-04

Existing actions get their items from what the journal already holds, so undo matching, blast-radius counting
and unblock-ip bookkeeping (which now read items) see containments made before this revision:

- firewall ``block_ip``/``unblock_ip``: one item per ``args.addresses`` entry; ``changed`` is 0 for an address
  the snapshot recorded as already blocked (block) or not blocked (unblock), else the action's ``changed``;
- active_directory with ``args.accounts`` (batched disable): one item per snapshot account entry (or per name
  when there is no snapshot), keyed by objectGUID when the snapshot has it;
- any other action: one item for its subject (the account for AD actions, the host otherwise).

Item state follows the action: done/failed/skipped as journaled; an action still in flight gets ``intent``.
Self-contained on purpose (plain SQL tables, no model imports): it describes the schema at this point in history.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003_action_items"
down_revision: str | None = "0002_intake_event_time_claims"
branch_labels: str | None = None
depends_on: str | None = None

_ACTIONS = sa.table("actions", *(sa.column(c) for c in (
    "id", "connector", "action", "target", "subject", "args", "state", "snapshot", "changed", "undone_at",
    "updated_at")))
_FINAL = {"done": "done", "failed": "failed", "skipped": "skipped"}


def upgrade() -> None:
    op.create_table("action_items",
                    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
                    sa.Column("action_id", sa.String(length=36), nullable=False),
                    sa.Column("position", sa.Integer(), nullable=False),
                    sa.Column("kind", sa.String(length=20), nullable=False),
                    sa.Column("canonical", sa.String(length=255), nullable=False),
                    sa.Column("requested", sa.String(length=255), nullable=False),
                    sa.Column("state", sa.String(length=20), nullable=False),
                    sa.Column("outcome", sa.String(length=40), nullable=False),
                    sa.Column("changed", sa.Integer(), nullable=True),
                    sa.Column("snapshot", sa.JSON(), nullable=True),
                    sa.Column("verification", sa.JSON(), nullable=True),
                    sa.Column("error", sa.Text(), nullable=True),
                    sa.Column("updated_at", sa.DateTime(), nullable=False),
                    sa.Column("undone_at", sa.DateTime(), nullable=True),
                    sa.Column("undone_by", sa.String(length=36), nullable=True),
                    sa.ForeignKeyConstraint(["action_id"], ["actions.id"]),
                    sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_action_items_action_id", "action_items", ["action_id"], unique=False)
    op.create_index("ix_action_items_canonical", "action_items", ["canonical"], unique=False)
    items = sa.table("action_items", *(sa.column(c) for c in (
        "action_id", "position", "kind", "canonical", "requested", "state", "outcome", "changed", "snapshot",
        "updated_at", "undone_at")))
    bind = op.get_bind()
    rows = [dict(r._mapping) for r in bind.execute(sa.select(_ACTIONS))]
    new = [item for row in rows for item in _items(row)]
    if new:
        bind.execute(items.insert(), new)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _net(text: str) -> str:
    try:
        return "net:" + str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return "net:" + text


def _items(row: dict[str, Any]) -> list[dict[str, Any]]:
    args, snap = _json(row["args"]) or {}, _json(row["snapshot"]) or {}
    base = {"action_id": row["id"], "state": _FINAL.get(row["state"], "intent"), "outcome": "",
            "updated_at": row["updated_at"], "undone_at": row["undone_at"]}
    out: list[dict[str, Any]] = []
    if row["connector"] == "firewall" and isinstance(args.get("addresses"), list):
        if row["action"] == "unblock_ip":  # an address that was not blocked before was not changed by it
            unchanged = {_net(a) for a in args["addresses"]} - {_net(a) for a in snap.get("was_blocked", [])}
        else:
            unchanged = {_net(a) for a in snap.get("already_blocked", [])}
        for i, address in enumerate(args["addresses"]):
            canonical = _net(str(address))
            requested = row["subject"] if len(args["addresses"]) == 1 and row["subject"] else str(address)
            out.append({**base, "position": i, "kind": "address", "canonical": canonical, "requested": requested,
                        "changed": 0 if canonical in unchanged else row["changed"], "snapshot": None})
        return out
    if row["connector"] == "active_directory" and isinstance(args.get("accounts"), list):
        entries = snap.get("accounts") or [{"requested": n} for n in args["accounts"]]
        for i, entry in enumerate(entries):
            identity = entry.get("account") or {}
            ok = entry.get("status", "ok") == "ok"
            was = int(entry.get("userAccountControl", 0) or 0) & 2
            out.append({**base, "position": i, "kind": "account", "canonical": _account(identity,
                                                                                         entry["requested"]),
                        "requested": str(entry["requested"]), "snapshot": entry if "status" in entry else None,
                        "changed": (0 if was else row["changed"]) if ok else 0,
                        **({} if ok else {"state": "failed", "outcome": str(entry.get("status", ""))})})
        return out
    if row["connector"] == "active_directory":
        name = str(args.get("account") or row["subject"] or row["target"])
        out.append({**base, "position": 0, "kind": "account", "canonical": _account(snap.get("account") or {}, name),
                    "requested": row["subject"] or name, "changed": row["changed"], "snapshot": None})
        return out
    out.append({**base, "position": 0, "kind": "host", "canonical": f"host:{row['target']}",
                "requested": row["subject"] or row["target"], "changed": row["changed"], "snapshot": None})
    return out


def _account(identity: dict[str, Any], name: str) -> str:
    guid = identity.get("objectGUID")
    return f"guid:{str(guid).strip('{}').lower()}" if guid else f"name:{name.casefold()}"


def downgrade() -> None:
    op.drop_index("ix_action_items_canonical", table_name="action_items")
    op.drop_index("ix_action_items_action_id", table_name="action_items")
    op.drop_table("action_items")
