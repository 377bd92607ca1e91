"""The server's durable state (SQLite in the state directory)."""
