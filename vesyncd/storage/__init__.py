"""The SQLite state: schema and migrations, the writer, the energy ledger."""
