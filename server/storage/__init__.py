"""The collector's SQLite file: schema, migrations (backup first), connections."""
