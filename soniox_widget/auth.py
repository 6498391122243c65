"""Where the API key comes from, and the one object that holds it.

The key is kept in an :class:`APIKey` whose ``repr``/``str`` never show it, so it
cannot leak into a log line, a traceback's locals, a widget trait or an error
message by accident. Only :meth:`APIKey.authorization_header` reveals it, for the
WebSocket handshake.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values, find_dotenv

from .errors import MissingAPIKeyError
from .redaction import register_secret

ENV_VAR = "SONIOX_API_KEY"


class APIKey:
    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        if not isinstance(secret, str) or not secret.strip():
            raise MissingAPIKeyError("The Soniox API key is empty; pass a non-empty key.")
        if any(c in secret for c in "\r\n"):
            raise MissingAPIKeyError("The Soniox API key contains a line break; check for a stray "
                                     "newline where it was copied.")
        self._secret = secret.strip()
        register_secret(self._secret)

    def authorization_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._secret}"}

    def matches(self, presented: str | None) -> bool:
        import hmac

        return presented is not None and hmac.compare_digest(presented, self._secret)

    def redact(self, text: str) -> str:
        """Remove the key from text that may have echoed it (e.g. a server's error)."""
        return text.replace(self._secret, "***")

    def __repr__(self) -> str:
        return "APIKey(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, APIKey) and other._secret == self._secret

    def __hash__(self) -> int:
        return hash(self._secret)

    def __reduce__(self):  # never pickled into a file or sent to another process by accident
        raise TypeError("APIKey cannot be pickled")


def find_api_key(api_key: str | APIKey | None = None, *, dotenv_path: str | Path | None = None
                 ) -> APIKey | None:
    """The key from the argument, else ``SONIOX_API_KEY``, else a ``.env`` file; or None.

    The ``.env`` file is read without changing ``os.environ``, so the key does not
    spread to child processes the user starts.
    """
    if isinstance(api_key, APIKey):
        return api_key
    if api_key is not None:
        return APIKey(api_key)
    value = os.environ.get(ENV_VAR)
    if value and value.strip():
        return APIKey(value)
    path = dotenv_path if dotenv_path is not None else find_dotenv(usecwd=True)
    if path and Path(path).is_file():
        value = dotenv_values(path).get(ENV_VAR)
        if value and value.strip():
            return APIKey(value)
    return None


def require_api_key(api_key: str | APIKey | None = None) -> APIKey:
    key = find_api_key(api_key)
    if key is None:
        raise MissingAPIKeyError()
    return key
