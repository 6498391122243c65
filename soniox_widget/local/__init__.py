"""The embedded local engine: a Soniox-compatible WebSocket server on 127.0.0.1.

``LocalSonioxServer`` speaks the Soniox real-time protocol; an :class:`Engine`
turns audio into tokens. ``shared_server()`` is the process-wide server used
when no API key is set.
"""

from .engine import Engine, EngineError, EngineStream, EngineUpdate
from .scripted_engine import ScriptedEngine
from .server import LocalSonioxServer, SessionRecord
from .shared import LocalEngineUnavailable, local_engine_available, shared_server

__all__ = [
    "Engine",
    "EngineError",
    "EngineStream",
    "EngineUpdate",
    "LocalEngineUnavailable",
    "LocalSonioxServer",
    "ScriptedEngine",
    "SessionRecord",
    "local_engine_available",
    "shared_server",
]
