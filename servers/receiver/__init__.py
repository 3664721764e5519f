"""The webhook receiver: signature verification, dedup by webhook-id, an arrival record per request."""

from .app import create_app

__all__ = ["create_app"]
