"""The SQLite store: one connection module, migrations, and plain SQL per aggregate."""
