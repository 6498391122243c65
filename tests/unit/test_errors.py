"""The error classes, the one retry rule and the words shown for each failure."""

from __future__ import annotations

import pytest

from soniox_widget import errors
from soniox_widget.errors import (
    ConnectError,
    ConnectionLostError,
    HandshakeError,
    ProtocolViolationError,
    ServiceError,
    SessionClosedError,
    SessionTimeoutError,
    SonioxError,
    is_retryable,
    user_message,
)
from soniox_widget.session import SessionCore, SessionState
from soniox_widget.session.core import OpenConnection

KINDS = [(ConnectError, "connect"), (HandshakeError, "handshake"),
         (ConnectionLostError, "connection_lost"), (SessionTimeoutError, "timeout"),
         (ProtocolViolationError, "protocol"), (ServiceError, "service"),
         (SessionClosedError, "closed")]


@pytest.mark.parametrize("cls, reason", KINDS)
def test_each_kind_is_a_sonioxerror_with_its_reason(cls, reason):
    err = cls("it failed", error_code=None)
    assert isinstance(err, SonioxError) and err.reason == reason
    with pytest.raises(AttributeError):
        err.reason = "other"  # read-only
    assert repr(err).startswith(cls.__name__)


def test_the_base_class_still_takes_a_reason_for_older_callers():
    assert SonioxError("x", reason="connect").reason == "connect"
    assert SonioxError("x", error_code=503).reason == "service"
    assert SonioxError("x").reason == "unknown"


@pytest.mark.parametrize("err, retry", [
    (ConnectError("down"), True),
    (ConnectionLostError("dropped"), True),
    (SessionTimeoutError("slow"), True),
    (ProtocolViolationError("garbage"), False),
    (SessionClosedError("closed"), False),
    *[(ServiceError("e", error_code=code), retry)
      for code, (_, retry) in errors.ERROR_CODES.items()],
    *[(HandshakeError("e", error_code=code), retry)
      for code, (_, retry) in errors.ERROR_CODES.items()],
    (ServiceError("e", error_code=418), False),  # a code Soniox does not document
    (ValueError("not ours"), False),
])
def test_one_rule_decides_what_is_retried(err, retry):
    assert is_retryable(err) is retry
    if isinstance(err, SonioxError):
        assert err.retryable is retry


def test_the_table_retries_restart_timeouts_and_gateways_not_quota_or_auth():
    retried = {code for code, (_, retry) in errors.ERROR_CODES.items() if retry}
    assert retried == {408, 500, 502, 503, 504}


@pytest.mark.parametrize("code, reconnects", [(503, True), (500, True), (408, True),
                                              (429, False), (401, False), (400, False)])
def test_the_session_core_reconnects_exactly_when_the_rule_says(code, reconnects):
    import json

    from soniox_widget.config import SonioxConfig

    core = SessionCore(SonioxConfig(audio_format="pcm_s16le", sample_rate=16000,
                                    num_channels=1))
    core.start(0.0)
    core.connected(1, 0.0)
    core.audio(bytes(3200), 0.1)
    core.message(1, json.dumps({"error_code": code, "error_message": "x"}), 0.2)
    core.connection_closed(1, 1000, 0.3)
    if reconnects:
        assert core.state == SessionState.RECONNECTING
        assert any(isinstance(a, OpenConnection) for a in core.tick(10.0))
    else:
        assert core.state == SessionState.FAILED
        assert isinstance(core.error, ServiceError) and core.error.error_code == code
        assert core.error.retryable is False


def test_user_messages_say_what_to_do():
    assert "Check SONIOX_API_KEY" in user_message(ServiceError("e", error_code=401))
    assert "Check SONIOX_API_KEY" in user_message(HandshakeError("e", error_code=403))
    assert "billing" in user_message(ServiceError("e", error_code=402))
    assert "wait a moment" in user_message(ServiceError("e", error_code=429))
    assert user_message(ConnectError("no route."), "the offline local engine").startswith(
        "Cannot reach the offline local engine: no route.")
    assert user_message(ConnectionLostError("dropped.")) == "dropped. Click Record to try again."
    assert user_message(ValueError("plain")) == "plain"
