"""The exceptions users meet. Each message says what happened and what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .transcript import Transcript


class SonioxWidgetError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(SonioxWidgetError, ValueError):
    """An option is unknown, has the wrong type, or is missing a companion option."""


class MissingAPIKeyError(SonioxWidgetError):
    """No Soniox API key could be found where one is needed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "No Soniox API key found. Pass api_key=..., set the SONIOX_API_KEY environment "
            "variable, or put SONIOX_API_KEY=... in a .env file in the working directory. "
            "Without a key, use the offline local engine (pip install 'soniox-widget[local]')."
        )


class SonioxError(SonioxWidgetError):
    """A session failed: Soniox (or the local engine) said so, or the connection did.

    ``error_code`` follows Soniox's HTTP-like codes (400 bad request, 401 bad key,
    402 payment, 408 timeout, 429 rate limit, 500/503 server) when the service sent
    one; local failures use ``reason`` instead (``"connect"``, ``"handshake"``,
    ``"connection_lost"``, ``"timeout"``, ``"protocol"``, ``"closed"``).

    ``partial`` is what was saved before the failure, when the failure ended a
    transcription (``transcribe_file``, a recorder's ``wait_until_idle``): a
    :class:`~soniox_widget.Transcript` of the final words only, with
    ``partial.final_audio_proc_ms`` the audio they cover. ``None`` otherwise.
    """

    #: The final words before the failure (see the class docstring).
    partial: Transcript | None

    def __init__(
        self,
        message: str,
        *,
        error_code: int | None = None,
        error_message: str | None = None,
        reason: str | None = None,
    ) -> None:
        # Whatever a server sent back (it may have echoed the key) is masked here,
        # once, for the exception, the widget's error trait and the proxy's replies.
        from .redaction import redact

        message = redact(message)
        super().__init__(message)
        self.error_code = error_code
        self.error_message = redact(error_message) if error_message is not None else message
        self.reason = reason or ("service" if error_code is not None else "unknown")
        self.partial = None

    @property
    def retryable(self) -> bool:
        """True when a new session may well succeed (timeouts, overload, lost connections)."""
        from .protocol import RETRYABLE_ERROR_CODES

        if self.error_code is not None:
            return self.error_code in RETRYABLE_ERROR_CODES
        return self.reason in {"connect", "connection_lost", "timeout"}

    def to_json(self) -> dict[str, object]:
        """The error as a Soniox-style reply, safe to send to a browser."""
        return {"error_code": self.error_code, "error_message": str(self)}

    def __repr__(self) -> str:
        return f"SonioxError({str(self)!r}, error_code={self.error_code!r}, reason={self.reason!r})"
