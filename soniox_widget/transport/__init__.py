"""A small WebSocket transport on websockets' sans-I/O core, for relaying frames cheaply.

* :mod:`.connection`: one connection, an ``asyncio.Protocol`` that feeds a sans-I/O
  ``Protocol``; messages by callback, synchronous sends, flow control, keepalive
  pings, opening and closing handshakes with timeouts;
* :mod:`.server`: :func:`serve`, the listener (policy hook, ``Server`` header, one
  handler task per connection, ``close()`` that ends them all);
* :mod:`.client`: :func:`connect` (``ws://`` and ``wss://``).
"""

from .client import ClientConnection, connect
from .connection import Connection, ConnectionClosedError, Message
from .server import Server, ServerConnection, serve

__all__ = ["ClientConnection", "Connection", "ConnectionClosedError", "Message", "Server",
           "ServerConnection", "connect", "serve"]
