"""Which service a session talks to: Soniox, the offline local engine, or a given URL.

One decision, made in one place, for the widget, ``transcribe_file``, the
standalone proxy and :class:`~soniox_widget.upstream.UpstreamSession`: with a
key, Soniox; with a URL (argument or ``SONIOX_WS_URL``), that server; otherwise
the embedded local engine. ``engine=`` overrides. Whether a key is required is
decided from the URL's parsed host name, never by string matching.

Choosing has no side effects: the shared local server is started only when a
session first connects (:meth:`Backend.connect_url`), so building a widget or a
proxy never loads a model.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from .access import is_loopback
from .auth import APIKey, find_api_key, missing_key_error
from .errors import ConfigError
from .protocol import DEFAULT_WS_URL

logger = logging.getLogger(__name__)

EngineChoice = Literal["auto", "soniox", "local"]
LOCAL_LABEL = "local engine (offline)"
URL_ENV_VAR = "SONIOX_WS_URL"


def is_soniox_host(host: str | None) -> bool:
    """Soniox's own hosts (any region) always need a key."""
    host = (host or "").lower().rstrip(".")
    return host == "soniox.com" or host.endswith(".soniox.com")


def parse_ws_url(url: str) -> tuple[str, str]:
    """Check a WebSocket URL; return its host name and a short ``host:port`` label."""
    if not isinstance(url, str):
        raise ConfigError(f"the upstream URL must be a string, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ConfigError(
            f"the upstream URL must start with ws:// or wss://, got {url!r} "
            f"(check the url argument or {URL_ENV_VAR})"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"the upstream URL {url!r} has an invalid port") from None
    if not parts.hostname:
        raise ConfigError(f"the upstream URL {url!r} has no host name")
    if parts.username or parts.password:
        raise ConfigError("the upstream URL must not carry credentials; pass api_key= or "
                          "set SONIOX_API_KEY instead")
    if is_soniox_host(parts.hostname) and parts.scheme != "wss":
        raise ConfigError(f"Soniox URLs must use wss:// (the key would travel in clear): "
                          f"{url!r}")
    label = parts.hostname if port is None else f"{parts.hostname}:{port}"
    return parts.hostname, label


@dataclass(frozen=True)
class Backend:
    """Where sessions go and with which key; the result of :func:`choose_backend`.

    For the local engine ``fixed_url`` is None: the process-wide server starts on
    the first :meth:`connect_url`.
    """

    fixed_url: str | None
    api_key: APIKey | None
    label: str
    is_local: bool

    def __post_init__(self) -> None:
        # A key given as text becomes the one object that holds it (validated, masked).
        if isinstance(self.api_key, str):
            object.__setattr__(self, "api_key", APIKey(self.api_key))

    @property
    def paces_realtime(self) -> bool:
        """Soniox wants audio at about real-time pace (long bursts may be cut off); the
        local engine, and other servers, take a file as fast as they can."""
        if self.is_local or self.fixed_url is None:
            return False
        return is_soniox_host(urlsplit(self.fixed_url).hostname)

    @property
    def url(self) -> str:
        """The WebSocket URL (starts the shared local server if it is the local engine)."""
        if self.fixed_url is not None:
            return self.fixed_url
        from .local.shared import shared_server

        return shared_server().url

    async def connect_url(self) -> str:
        """The URL to connect to now, without blocking the event loop on a model load."""
        if self.fixed_url is not None:
            return self.fixed_url
        return await asyncio.to_thread(lambda: self.url)

    def describe(self) -> str:
        return self.label if self.fixed_url is None else f"{self.label} ({self.fixed_url})"


def choose_backend(
    engine: str = "auto",
    *,
    api_key: str | APIKey | None = None,
    url: str | None = None,
    model: str | None = None,
) -> Backend:
    """Pick the service. ``engine`` is ``"auto"``, ``"soniox"`` or ``"local"``.

    Raises :class:`MissingAPIKeyError` (what to do) when Soniox is needed without a key,
    and :class:`ConfigError` for a bad URL or engine name. Starts nothing.
    """
    if engine not in ("auto", "soniox", "local"):
        raise ConfigError(f"engine must be 'auto', 'soniox' or 'local', got {engine!r}")
    if engine == "local":
        return local_backend()
    key = find_api_key(api_key)
    chosen = url or os.environ.get(URL_ENV_VAR) or None
    if chosen is not None or engine == "soniox" or key is not None:
        chosen = chosen or DEFAULT_WS_URL
        host, where = parse_ws_url(chosen)
        if is_soniox_host(host):
            if key is None:
                raise missing_key_error()
            label = f"Soniox {model}" if model else "Soniox"
        else:
            label = f"server at {where}"
            if key is not None and not is_loopback(host) and chosen.startswith("ws://"):
                logger.warning("the API key will be sent to %s without TLS (ws://)", where)
        return Backend(chosen, key, label, is_local=False)
    from .local.shared import local_engine_available

    if not local_engine_available():
        raise missing_key_error(
            "No Soniox API key found and the offline local engine is not installed. Either "
            "set SONIOX_API_KEY (environment variable or .env file, or pass api_key=...), or "
            "install the offline engine: pip install 'soniox-widget[local]'."
        )
    return local_backend()


def local_backend() -> Backend:
    from .local.shared import LocalEngineUnavailable, local_engine_available

    if not local_engine_available():
        raise LocalEngineUnavailable()
    return Backend(None, None, LOCAL_LABEL, is_local=True)
