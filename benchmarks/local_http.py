"""A quiet static HTTP server on 127.0.0.1, on a thread, for the browser benchmarks' pages."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request to the benchmark's output."""

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler] | object) -> Iterator[int]:
    """Serve with ``handler`` (a class, or a ``functools.partial`` of one) on a free port,
    yielded; stopped and closed on exit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
