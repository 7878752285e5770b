"""Persistence: SQLAlchemy models, the request state machine, repositories and migrations."""
