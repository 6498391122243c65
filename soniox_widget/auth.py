"""Where the API key comes from, and the one object that holds it.

In order: the ``api_key`` argument, the ``SONIOX_API_KEY`` environment variable, a
``.env`` file, and, only inside Google Colab (its kernel has ``google.colab`` loaded),
Colab's secrets (``google.colab.userdata``), so a shared Colab notebook needs no key in
its code.

The key is kept in an :class:`APIKey` whose ``repr``/``str`` never show it, so it
cannot leak into a log line, a traceback's locals, a widget trait or an error
message by accident. Only :meth:`APIKey.authorization_header` reveals it, for the
WebSocket handshake.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from types import ModuleType

from dotenv import dotenv_values, find_dotenv

from .errors import MissingAPIKeyError
from .redaction import redact, register_secret

logger = logging.getLogger(__name__)

ENV_VAR = "SONIOX_API_KEY"
COLAB_ADVICE = (f"In Colab: add a secret named {ENV_VAR} in the Secrets panel (the key icon "
                "on the left) and turn on its notebook access.")


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
        """Mask the key, whole or in pieces, in text that may have echoed it (e.g. a
        server's error); the same rule as every log record (:func:`.redaction.redact`)."""
        return redact(text)

    def __repr__(self) -> str:
        return "APIKey(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, APIKey) and other._secret == self._secret

    def __hash__(self) -> int:
        return hash(self._secret)

    def __reduce__(self):  # never pickled into a file or sent to another process by accident
        raise TypeError("APIKey cannot be pickled")


class KeyRing:
    """Several keys, one per user, for a shared server (a hub's engine service): each
    user's kernel gets its own key, so one can be revoked (remove its line, then a
    rolling restart: sessions drain to the other replicas) and every session's log line
    names its user. The keys are held as :class:`APIKey` objects (masked everywhere).
    """

    __slots__ = ("_users",)

    def __init__(self, keys: dict[str, str | APIKey]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one user and key")
        users: dict[str, APIKey] = {}
        for user, key in keys.items():
            if not isinstance(user, str) or not user or any(c.isspace() for c in user):
                raise ValueError(f"user names are words without spaces, got {user!r}")
            users[user] = key if isinstance(key, APIKey) else APIKey(key)
        self._users = users

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KeyRing:
        """Read ``user key`` lines (blank lines and ``#`` comments are skipped)."""
        keys: dict[str, str] = {}
        text = Path(path).read_text("utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}, line {number}: expected 'user key' (two words)")
            user, key = parts
            if user in keys:
                raise ValueError(f"{path}, line {number}: user {user!r} is listed twice")
            keys[user] = key
        if not keys:
            raise ValueError(f"{path} lists no 'user key' line")
        return cls(keys)

    def user_of(self, presented: str | None) -> str | None:
        """The user whose key ``presented`` is (every key is compared, in constant time
        each, so the time taken does not tell which user came close)."""
        found = None
        for user, key in self._users.items():
            if key.matches(presented):
                found = user
        return found

    def matches(self, presented: str | None) -> bool:
        return self.user_of(presented) is not None

    @property
    def users(self) -> list[str]:
        return list(self._users)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._users)} users)"

    def __reduce__(self):  # never pickled into a file or sent to another process
        raise TypeError("KeyRing cannot be pickled")


def find_api_key(api_key: str | APIKey | None = None, *, dotenv_path: str | Path | None = None
                 ) -> APIKey | None:
    """The key from the argument, else ``SONIOX_API_KEY``, else a ``.env`` file, else
    (in Colab) Colab's secrets; or None.

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
    return colab_api_key()


def colab_api_key(name: str = ENV_VAR) -> APIKey | None:
    """The key from Colab's secrets, or None (also outside Colab).

    Tried last, so an explicit key, the environment or ``.env`` win. Colab asks the
    user once per notebook whether the notebook may read the secret. A missing secret,
    a refused access or any other failure is not fatal: it is logged with what to do
    (never the value) and gives None, so the caller falls back to the offline local
    engine or says that a key is missing.
    """
    userdata = _colab_userdata()
    if userdata is None:
        return None
    try:
        value = userdata.get(name)
    except Exception as exc:  # any failure of Colab's lookup means "no key from Colab"
        logger.warning("No Soniox API key from Colab's secrets: %s. Without a key the "
                       "offline local engine is used if installed.", _colab_problem(exc, name))
        return None
    if not isinstance(value, str) or not value.strip():
        logger.warning("No Soniox API key from Colab's secrets: the secret %s is empty.", name)
        return None
    try:
        # A newline pasted at the end of a secret is a copying accident, not part of the key.
        return APIKey(value.strip())
    except MissingAPIKeyError as exc:  # its message never contains the value
        logger.warning("No Soniox API key from Colab's secrets: %s", exc)
        return None


def _colab_userdata() -> ModuleType | None:
    """Colab's secrets module when this kernel runs in Colab, else None.

    Colab's kernel is built on ``google.colab``, so there it is loaded before any user
    code. It is not imported here: the ``google-colab`` package installed elsewhere
    would send its request to a front end that never answers, and wait forever.
    """
    if "google.colab" not in sys.modules:
        return None
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return None
    return userdata


def _colab_problem(exc: Exception, name: str) -> str:
    """What went wrong, told by the exception's class: its text is not shown (it is
    Colab's, and whatever it holds should not reach a log)."""
    kind = type(exc).__name__
    if kind == "SecretNotFoundError":
        return (f"there is no secret named {name}; add one in the Secrets panel (the key "
                "icon on the left)")
    if kind == "NotebookAccessError":
        return (f"this notebook was not given access to the secret {name}; turn on its "
                "notebook access in the Secrets panel")
    if kind == "TimeoutException":
        return "Colab did not answer the request for the secret in time"
    return f"reading the secret failed ({kind})"


def missing_key_error(message: str | None = None) -> MissingAPIKeyError:
    """A :class:`MissingAPIKeyError` whose advice, in Colab, also names Colab's secrets."""
    error = MissingAPIKeyError(message)
    if _colab_userdata() is not None:
        return MissingAPIKeyError(f"{error} {COLAB_ADVICE}")
    return error


def require_api_key(api_key: str | APIKey | None = None) -> APIKey:
    key = find_api_key(api_key)
    if key is None:
        raise missing_key_error()
    return key
