"""Database access: one psycopg 3 connection per container, transactions, tenant-scoped transactions."""

from observai.db.connection import close_connection, get_connection, tenant_transaction, transaction

__all__ = ["close_connection", "get_connection", "tenant_transaction", "transaction"]
