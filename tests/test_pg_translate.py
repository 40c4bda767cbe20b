"""The dialect layer's rewrites of SQLite's functions (no PostgreSQL needed: text in, text out)."""

from __future__ import annotations

from amgs.server.storage.pg import translate


def test_group_concat_becomes_string_agg_with_sqlites_default_separator():
    assert translate("SELECT count(*), group_concat(sha256) FROM models") == (
        "SELECT count(*), string_agg(CAST(sha256 AS TEXT), ',') FROM models"
    )
    assert translate("SELECT group_concat(DISTINCT n, ' | ') FROM t WHERE a = ?") == (
        "SELECT string_agg(DISTINCT CAST(n AS TEXT), ' | ') FROM t WHERE a = %s"
    )
    assert translate("SELECT group_concat(max(a, b)) FROM t") == (
        "SELECT string_agg(CAST(greatest(a,  b) AS TEXT), ',') FROM t"
    )
