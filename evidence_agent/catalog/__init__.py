"""The catalog: SQL tables (SQLite or PostgreSQL), migrations, sessions and queries."""
