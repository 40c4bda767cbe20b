"""Small SQL building blocks shared by every reader of the collector's database.

Column names come from code, never from a request: callers pass fixed names and user values go
through ``?`` parameters only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from amgs.sqlite_tx import rollback, write_transaction

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["database", "where", "rollback", "write_transaction"]


def database(db: sqlite3.Connection | sqlite_utils.Database) -> sqlite_utils.Database:
    """The sqlite-utils view of a connection, for dict rows: ``database(conn).query(sql, params)``."""
    import sqlite_utils  # here, not at the top: the `amgs server` command group loads on a Pi without it

    return db if isinstance(db, sqlite_utils.Database) else sqlite_utils.Database(db, execute_plugins=False)


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
