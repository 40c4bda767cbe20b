"""Small SQL building blocks shared by every reader of the collector's database.

Column names come from code, never from a request: callers pass fixed names and user values go
through ``?`` parameters only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import sqlite_utils

from amgs.sqlite_tx import rollback, write_transaction

__all__ = ["query", "where", "rollback", "write_transaction"]


def where(
    equal: Mapping[str, Any] | None = None, *conditions: str | tuple[str, Iterable[Any]], joiner: str = "AND"
) -> tuple[str, list[Any]]:
    """``("WHERE a = ? AND t >= ?", [1, 5.0])`` from ``equal={"a": 1}`` and ``("t >= ?", [5.0])``.

    ``equal`` entries whose value is None are left out (an optional filter not given). Extra
    ``conditions`` are SQL fragments, alone or with their parameters. No condition gives ``("", [])``.
    """
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (equal or {}).items():
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    for condition in conditions:
        if isinstance(condition, str):
            clauses.append(condition)
        else:
            sql, values = condition
            clauses.append(sql)
            params.extend(values)
    if not clauses:
        return "", []
    return "WHERE " + f" {joiner} ".join(f"({c})" if " or " in c.lower() else c for c in clauses), params


def query(
    conn: sqlite3.Connection | sqlite_utils.Database, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()
) -> Iterator[dict[str, Any]]:
    """Rows as dicts through sqlite-utils' ``db.query``, for code that holds a plain sqlite3 connection
    (the read queries take one). Wrapping costs a few microseconds and changes no connection setting."""
    if not isinstance(conn, sqlite_utils.Database):
        conn = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
    return conn.query(sql, params)
