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


#: What each error code Soniox documents means for a session: the one table every
#: retry decision reads. "Restart the request" (503), a server error (500) and a
#: timeout (408) are worth a new connection (Soniox's own SDKs retry them); 502 and 504
#: come from proxies and load balancers in front of a service that is restarting.
#: 400 (request), 401 (key), 402 (payment) and 429 (rate or concurrency quota) need
#: something fixed or time to pass first: retrying at once would fail again.
ERROR_CODES: dict[int, tuple[str, bool]] = {
    400: ("the request or its options are wrong", False),
    401: ("the API key was refused", False),
    402: ("the account needs payment", False),
    403: ("the API key is not allowed here", False),
    408: ("the service timed out waiting", True),
    429: ("too many sessions or requests at once", False),
    500: ("the service failed", True),
    502: ("a gateway in front of the service failed", True),
    503: ("the service asked to restart the request", True),
    504: ("a gateway in front of the service timed out", True),
}


def retryable_code(code: int | None) -> bool:
    """Whether a new connection may well succeed after an error with this code."""
    return code is not None and ERROR_CODES.get(code, ("", False))[1]


class SonioxError(SonioxWidgetError):
    """A session failed: Soniox (or the local engine) said so, or the connection did.

    Catch this class for every session failure, or a subclass for one kind:
    :class:`ConnectError`, :class:`HandshakeError` (``status``),
    :class:`ConnectionLostError`, :class:`SessionTimeoutError`,
    :class:`ProtocolViolationError`, :class:`ServiceError` (``error_code``) and
    :class:`SessionClosedError`. ``error_code`` follows Soniox's HTTP-like codes
    (:data:`ERROR_CODES`) when there is one; ``reason`` names the kind as a string
    (``"connect"``, ``"handshake"``, ``"connection_lost"``, ``"timeout"``,
    ``"protocol"``, ``"service"``, ``"closed"``) for code written before the classes.

    ``partial`` is what was saved before the failure, when the failure ended a
    transcription (``transcribe_file``, a recorder's ``wait_until_idle``): a
    :class:`~soniox_widget.Transcript` of the final words only, with
    ``partial.final_audio_proc_ms`` the audio they cover. ``None`` otherwise.
    """

    #: The kind, as :attr:`reason` gives it; each subclass sets its own.
    kind = "unknown"
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
        if reason is None:
            reason = "service" if type(self).kind == "unknown" and error_code is not None \
                else type(self).kind
        self._reason = reason
        self.partial = None

    @property
    def reason(self) -> str:
        """The kind of failure as a string (read-only; prefer the subclasses)."""
        return self._reason

    @property
    def retryable(self) -> bool:
        """True when a new session may well succeed (:func:`is_retryable`)."""
        return is_retryable(self)

    def to_json(self) -> dict[str, object]:
        """The error as a Soniox-style reply, safe to send to a browser."""
        return {"error_code": self.error_code, "error_message": str(self)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self)!r}, error_code={self.error_code!r}, "
                f"reason={self.reason!r})")


class ConnectError(SonioxError):
    """The service could not be reached at all (network, DNS, a bad URL)."""

    kind = "connect"


class HandshakeError(SonioxError):
    """The service answered the WebSocket handshake with an HTTP error (``status``)."""

    kind = "handshake"

    @property
    def status(self) -> int | None:
        """The HTTP status of the refusal (401, 403, 429, 503, ...)."""
        return self.error_code


class ConnectionLostError(SonioxError):
    """The connection dropped and could not be resumed (or resuming was off)."""

    kind = "connection_lost"


class SessionTimeoutError(SonioxError):
    """The service did not answer in time (no ``finished`` after the end of stream)."""

    kind = "timeout"


class ProtocolViolationError(SonioxError):
    """The service sent what the protocol does not allow, or it could not be used."""

    kind = "protocol"


class ServiceError(SonioxError):
    """The service ended the session with an error reply (``error_code``)."""

    kind = "service"


class SessionClosedError(SonioxError):
    """The session was closed, or is not in a state to do what was asked."""

    kind = "closed"


def is_retryable(error: BaseException) -> bool:
    """The one rule for whether a new connection may well succeed after ``error``.

    The session core asks it before every reconnect attempt and ``.retryable`` gives
    its answer, so what the package retries by itself and what it tells a caller are
    the same: a connection that could not be opened or was lost, a timeout, and the
    codes :data:`ERROR_CODES` marks (from the handshake or in an error reply).
    """
    if not isinstance(error, SonioxError):
        return False
    if error.reason in ("connect", "connection_lost", "timeout"):
        return True
    if error.reason in ("handshake", "service"):
        return retryable_code(error.error_code)
    return False


def user_message(error: BaseException, where: str | None = None) -> str:
    """What to show a person for ``error``: what happened and what to do next.

    ``where``: the service's name for a connect error ("the offline local engine",
    "Soniox at stt-rt.soniox.com").
    """
    if not isinstance(error, SonioxError):
        return str(error)
    if error.error_code == 401 or (error.reason == "handshake" and error.error_code == 403):
        return ("The API key was refused (401). Check SONIOX_API_KEY (or the api_key you "
                "passed), then click Record again.")
    if error.error_code == 402:
        return f"{error} — check the billing of your Soniox account."
    if error.error_code == 429:
        return f"{error} — too many sessions at once; wait a moment and record again."
    if error.reason == "connect":
        return f"Cannot reach {where or 'the speech service'}: {error} Click Record to try again."
    return f"{str(error).rstrip('.')}. Click Record to try again."
