"""Alembic revisions of the governance store, oldest first."""
