"""Multi-row INSERT and keyed UPDATE statements: one statement per table per group commit, not one per row.

Why: the DB-API's ``executemany`` steps SQLite once per row and gives the GIL away around every step. In a storm
the writer thread then waits for the interpreter once per row while the dispatcher and the event loop run —
measured: 40 rows took 154 ms with two busy threads beside it, against 12 ms as one multi-row statement. The
alert writer is the one thread every 202 waits for, so it issues a handful of statements per commit whatever
the batch size.

Values go through each column's own SQLAlchemy bind processor (JSON, the UTC timestamp type), so rows are
stored exactly as the ORM and Core would store them. Drivers with another placeholder style than ``?``/``%s``
get plain Core ``executemany`` (same result, slower).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, insert, update

__all__ = ["MAX_PARAMS", "BulkTable"]

MAX_PARAMS = 999  # bound parameters per statement: SQLite's historic default limit, portable everywhere


class BulkTable:
    """Bulk statements for one table on one dialect."""

    def __init__(self, table: Table, dialect: Any) -> None:
        self.table = table
        self.mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        # identifiers quoted where the dialect needs it: ``user`` is a column of ``alerts`` and a reserved word
        # in PostgreSQL (the insert failed there with a syntax error; SQLite accepts it bare)
        self._q: Callable[[str], str] = dialect.identifier_preparer.quote
        self._procs: dict[str, Callable[[Any], Any] | None] = {
            c.name: c.type._cached_bind_processor(dialect) for c in table.c}
        version = getattr(dialect.dbapi, "sqlite_version_info", None) if dialect.name == "sqlite" else None
        self.update_from = version is None or tuple(version) >= (3, 33)  # UPDATE ... FROM

    def insert(self, conn: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """INSERT ``rows`` (dicts with the same keys) in as few statements as the parameter limit allows."""
        if not rows:
            return
        names = list(rows[0])
        if self.mark is None:
            conn.execute(insert(self.table), list(rows))
            return
        procs = [self._procs[n] for n in names]
        one = "(" + ", ".join([self.mark] * len(names)) + ")"
        head = f"INSERT INTO {self._q(self.table.name)} ({', '.join(map(self._q, names))}) VALUES "
        step = max(1, MAX_PARAMS // len(names))
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            params = [v if p is None else p(v)
                      for row in chunk for v, p in zip((row[n] for n in names), procs, strict=True)]
            conn.exec_driver_sql(head + ", ".join([one] * len(chunk)), tuple(params))

    def update(self, conn: Any, key: str, rows: Sequence[tuple[Any, Mapping[str, Any]]]) -> None:
        """``UPDATE ... SET col = value WHERE key = k`` for each ``(k, {col: value})``; later rows win.

        Every row must set the same columns. One statement per chunk, ``UPDATE t SET col = v.column2 FROM
        (VALUES (k, value), ...) AS v WHERE t.key = v.column1`` (SQLite ≥ 3.33 and PostgreSQL name the columns
        of ``VALUES`` alike): an index lookup per row, where ``CASE key WHEN ...`` costs the square.
        """
        if not rows:
            return
        latest = dict(rows)  # a key updated twice in one batch keeps its last values, as executemany would
        columns = list(next(iter(latest.values())))
        if self.mark is None or not self.update_from:
            params = [{"b_key": k, **{f"b_{c}": v[c] for c in columns}} for k, v in latest.items()]
            stmt = update(self.table).where(self.table.c[key] == bindparam("b_key")).values(
                {c: bindparam(f"b_{c}") for c in columns})
            conn.execute(stmt, params)
            return
        procs = [self._procs[key], *(self._procs[c] for c in columns)]
        names = [key, *columns]
        one = "(" + ", ".join([self.mark] * len(names)) + ")"
        sets = ", ".join(f"{self._q(c)} = v.column{i}" for i, c in enumerate(columns, start=2))
        table = self._q(self.table.name)
        items = [(k, *(v[c] for c in columns)) for k, v in latest.items()]
        step = max(1, MAX_PARAMS // len(names))
        for start in range(0, len(items), step):
            chunk = items[start:start + step]
            params = [v if p is None else p(v) for item in chunk for v, p in zip(item, procs, strict=True)]
            conn.exec_driver_sql(f"UPDATE {table} SET {sets} FROM (VALUES {', '.join([one] * len(chunk))}) AS v "
                                 f"WHERE {table}.{self._q(key)} = v.column1", tuple(params))
