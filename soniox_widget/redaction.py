"""One redaction step for every text that may leave the process: errors, logs, replies.

The API key lives in one :class:`~soniox_widget.auth.APIKey`, but copies of it can
come back from elsewhere: a hostile or buggy server may echo it in an error
message, and ``websockets`` logs the handshake headers (``Authorization: Bearer
...``) at DEBUG level. So every secret the package holds is registered here, and
:func:`redact` removes all of them, plus anything that looks like a credential
header, from a text. It runs in :class:`~soniox_widget.errors.SonioxError` (so
exception messages, the widget's ``error`` trait, saved notebooks and the proxy's
error replies are clean) and in a logging filter on the ``websockets`` loggers
and the package's own (so ``-v`` still shows the headers, masked).
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
#: The shortest run of a secret that is masked on its own, wherever it appears. A text
#: can hold a secret in pieces: ``websockets`` logs a long frame as its head and tail
#: (with a 64-character key echoed in an error, 28 characters of it before the cut and
#: 21 after), a server may quote part of it. Eight characters of a random key are too
#: many to guess and too few to appear by chance in ordinary text.
PIECE = 8
_secrets: set[str] = set()
# The same secrets, longest first, and a pattern finding any PIECE-long run of one,
# replaced whole on each registration: readers take them without the lock or a sort
# (redact runs on every log record).
_ordered: tuple[str, ...] = ()
_pieces: re.Pattern[str] | None = None
_lock = threading.Lock()

# "Authorization: Bearer x", "authorization=Token x", "'Authorization', 'Bearer x'"
_HEADER = re.compile(
    r"(?i)(authorization['\"]?\s*[:=,]\s*['\"]?)((?:bearer|token|basic)\s+)?[^\s'\",;]+")
# Sec-WebSocket-Protocol: soniox-api-key, <key>
_SUBPROTOCOL = re.compile(r"(?i)(soniox-api-key['\"]?\s*,\s*['\"]?)[^\s'\",;\]]+")
# Query parameters named like credentials (the proxy's access token).
_QUERY = re.compile(r"(?i)([?&](?:token|api_key|key)=)[^&\s'\"]+")


def register_secret(secret: str) -> None:
    """Mask ``secret`` wherever it appears from now on, whole or any ``PIECE``-long run
    of it (keys, access tokens)."""
    global _ordered, _pieces
    if secret and len(secret) >= 4:
        with _lock:
            _secrets.add(secret)
            _ordered = tuple(sorted(_secrets, key=len, reverse=True))
            runs = sorted({s[i:i + PIECE] for s in _secrets
                           for i in range(len(s) - PIECE + 1)})
            # A lookahead finds overlapping runs: each match is where one begins.
            _pieces = re.compile("(?=(" + "|".join(map(re.escape, runs)) + "))") \
                if runs else None


def _mask_pieces(text: str, pattern: re.Pattern[str]) -> str:
    """``text`` with every stretch covered by runs of a secret replaced by one mask."""
    spans: list[list[int]] = []
    for match in pattern.finditer(text):
        start, end = match.start(), match.start() + len(match.group(1))
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    if not spans:
        return text
    parts, at = [], 0
    for start, end in spans:
        parts += [text[at:start], MASK]
        at = end
    parts.append(text[at:])
    return "".join(parts)


def redact(text: object) -> str:
    """``text`` with every registered secret (whole or in pieces) and credential-like
    value masked."""
    out = str(text)
    for secret in _ordered:
        if secret in out:
            out = out.replace(secret, MASK)
    if (pieces := _pieces) is not None:
        out = _mask_pieces(out, pieces)
    out = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{MASK}", out)
    out = _SUBPROTOCOL.sub(lambda m: f"{m.group(1)}{MASK}", out)
    return _QUERY.sub(lambda m: f"{m.group(1)}{MASK}", out)


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record's message (and its arguments) before any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the handler's problem, not a leak
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()
#: Loggers whose records may carry handshake headers or server texts. A filter on a
#: logger sees only the records logged on that very logger, so each one is named.
LOGGERS = (
    "websockets", "websockets.client", "websockets.server",
    "soniox_widget", "soniox_widget.upstream", "soniox_widget.session.core",
    "soniox_widget.recorder", "soniox_widget.recording", "soniox_widget.local.server",
    "soniox_widget.proxy.server", "soniox_widget._serving", "soniox_widget.headless",
)


def install_log_redaction() -> None:
    """Put the filter on every logger that may see a secret (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
