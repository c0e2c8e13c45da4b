"""Keys, auth, credits, limits, the ledger, kept prompts and the stores (SQLite, PostgreSQL) with their migrations; imports routing, config and wire, never the server."""
