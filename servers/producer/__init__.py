"""The producer: SQLite store, change generator, polling API (ETag + cursor feed), REST-hook subscriptions,
dispatcher."""

from .app import create_app

__all__ = ["create_app"]
