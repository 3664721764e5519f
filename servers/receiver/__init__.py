"""The webhook receiver: defences (signature, replay window, dedup, Basic Auth, secret path, HTTPS, size and type
limits), a fault model for measuring what senders lose, an audit log and an inspector page."""

from .app import create_app
from .config import Endpoint, ReceiverSetup, load_setup, simple_setup

__all__ = ["create_app", "ReceiverSetup", "Endpoint", "load_setup", "simple_setup"]
