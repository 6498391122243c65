"""The session lifecycle as a pure state machine: events in, actions out.

No sockets, no asyncio, no sleeping: every test feeds :class:`SessionCore` events with
an explicit ``now`` and looks at the actions it returns and the state it is in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soniox_widget.config import SonioxConfig
from soniox_widget.errors import SonioxError
from soniox_widget.protocol import (
    FIN_TOKEN,
    KEEPALIVE_MESSAGE,
    FinalizeRequest,
    finalize_message,
    parse_reply,
)
from soniox_widget.session import NO_RECONNECT, ReconnectPolicy, SessionCore, SessionState
from soniox_widget.session.core import (
    MAX_FRAME_BYTES,
    CloseConnection,
    DeliverReply,
    DeliverText,
    EndTranscoder,
    FeedTranscoder,
    MarkTranscoder,
    OpenConnection,
    SendFrame,
    SessionOver,
    StartTranscoding,
    StateChanged,
)

S = SessionState
RAW = SonioxConfig(audio_format="pcm_s16le", sample_rate=16000, num_channels=1)
BYTES_PER_MS = 32  # 16 kHz, 16-bit, mono
POLICY = ReconnectPolicy()  # 3 attempts, 0.5 s base delay, 4 s max, 30 s window
END_FRAME = b""


# -- helpers ----------------------------------------------------------------------------


def pcm(ms: int, start_ms: int = 0) -> bytes:
    """``ms`` of recognisable raw audio: every millisecond has its own 32 bytes."""
    return b"".join(((start_ms + i) % 65536).to_bytes(2, "little") * 16 for i in range(ms))


def make(config: SonioxConfig = RAW, **kwargs) -> SessionCore:
    return SessionCore(config, **kwargs)


def connected_core(config: SonioxConfig = RAW, now: float = 0.0, **kwargs) -> SessionCore:
    """A core whose first connection (id 1) is up and streaming."""
    core = make(config, **kwargs)
    assert core.start(now) == [StateChanged(S.CONNECTING), OpenConnection(1)]
    core.connected(1, now)
    assert core.state == S.STREAMING
    return core


def start_frame(config: SonioxConfig = RAW) -> str:
    return json.dumps(config.to_start_message(), ensure_ascii=False)


def of(actions: list, kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def sent(actions: list, conn: int | None = None) -> list[str | bytes]:
    return [a.frame for a in of(actions, SendFrame) if conn is None or a.conn == conn]


def audio_of(frames: list[str | bytes]) -> bytes:
    return b"".join(f for f in frames if isinstance(f, bytes))


def word(text: str, start: int, end: int, final: bool = True) -> dict:
    return {"text": text, "start_ms": start, "end_ms": end, "is_final": final}


def reply(*tokens: dict, final: int | None = None, total: int | None = None,
          finished: bool = False) -> str:
    msg: dict = {"tokens": list(tokens)}
    if final is not None:
        msg["final_audio_proc_ms"] = final
    if total is not None:
        msg["total_audio_proc_ms"] = total
    if finished:
        msg["finished"] = True
    return json.dumps(msg)


def error(code: int, message: str = "something went wrong") -> str:
    return json.dumps({"error_code": code, "error_message": message})


def fin_token() -> dict:
    return {"text": FIN_TOKEN, "is_final": True}


def delivered(actions: list):
    """The one reply an action list delivers."""
    (deliver,) = of(actions, DeliverReply)
    return deliver.reply


def over_error(actions: list) -> SonioxError | None:
    (over,) = of(actions, SessionOver)
    return over.error


def assert_failed(core: SessionCore, actions: list, reason: str) -> SonioxError:
    assert core.state == S.FAILED
    assert StateChanged(S.FAILED) in actions
    err = over_error(actions)
    assert err is core.error and err is not None
    assert err.reason == reason, err
    assert not of(actions, OpenConnection) and not of(actions, SendFrame)
    return err


def finalize_upto(core: SessionCore, conn: int, ms: int, now: float) -> list:
    """The server on ``conn`` makes everything up to its own ``ms`` final."""
    return core.message(conn, reply(word(" w", 0, ms), final=ms, total=ms), now)


def drop(core: SessionCore, now: float, code: int = 1006) -> list:
    """The current connection is lost."""
    return core.connection_closed(core.current_connection, code, now)


def reconnect(core: SessionCore, now: float) -> tuple[int, list]:
    """After a drop: the retry timer fires, the new connection comes up."""
    due = core.next_deadline()
    assert due is not None
    opened = core.tick(max(now, due))
    (open_,) = of(opened, OpenConnection)
    return open_.conn, core.connected(open_.conn, max(now, due))


# -- the happy path ---------------------------------------------------------------------


def test_start_opens_the_first_connection():
    core = make()
    assert core.state == S.NEW
    assert core.start(0.0) == [StateChanged(S.CONNECTING), OpenConnection(1)]
    assert core.connections == 1 and core.current_connection == 1
    assert core.start(0.1) == []  # a second start does nothing


def test_audio_and_finalize_before_connected_are_queued_and_sent_in_order():
    core = make()
    core.start(0.0)
    assert core.audio(b"a" * 10, 0.1) == []
    assert core.finalize(None, 0.2) == []
    assert core.audio(b"b" * 6, 0.3) == []
    assert core.finalize(200, 0.4) == []
    actions = core.connected(1, 0.5)
    assert sent(actions) == [start_frame(), b"a" * 10, finalize_message(),
                             b"b" * 6, finalize_message(200)]
    assert all(a.conn == 1 for a in of(actions, SendFrame))
    assert StateChanged(S.STREAMING) in actions
    assert core.bytes_in == core.bytes_sent == 16


def test_audio_and_finalize_while_streaming_are_sent_at_once():
    core = connected_core()
    assert core.audio(b"xy", 1.0) == [SendFrame(1, b"xy")]
    assert core.finalize(None, 1.1) == [SendFrame(1, finalize_message())]
    assert core.audio(b"", 1.2) == []  # nothing to send


def test_audio_accepts_bytearray_and_memoryview():
    core = connected_core()
    assert core.audio(bytearray(b"ab"), 1.0) == [SendFrame(1, b"ab")]
    assert core.audio(memoryview(b"cd"), 1.0) == [SendFrame(1, b"cd")]


def test_large_audio_is_split_into_frames_in_order():
    core = connected_core()
    data = bytes(range(256)) * (MAX_FRAME_BYTES * 2 // 256 + 10)
    frames = sent(core.audio(data, 1.0))
    assert len(frames) == 3
    assert all(len(f) <= MAX_FRAME_BYTES for f in frames)
    assert b"".join(frames) == data


def test_end_sends_the_empty_frame_and_finished_ends_the_session():
    core = connected_core()
    core.audio(pcm(100), 1.0)
    actions = core.end(2.0)
    assert actions == [StateChanged(S.FINISHING), SendFrame(1, END_FRAME)]
    assert core.ended and core.state == S.FINISHING
    assert core.end(2.1) == []  # idempotent

    actions = core.message(1, reply(word(" hi", 0, 100), final=100, total=100,
                                    finished=True), 3.0)
    assert core.state == S.FINISHED and core.error is None
    (deliver,) = of(actions, DeliverReply)
    assert deliver.reply.finished and deliver.reply.tokens[0].text == " hi"
    assert actions[-2:] == [CloseConnection(1), SessionOver(None)]
    assert StateChanged(S.FINISHED) in actions
    assert core.next_deadline() is None
    assert core.tick(1000.0) == []


def test_end_before_connected_sends_the_end_frame_after_the_queued_audio():
    core = make()
    core.start(0.0)
    core.audio(b"abcd", 0.1)
    assert core.end(0.2) == []
    assert core.state == S.CONNECTING
    actions = core.connected(1, 0.3)
    assert sent(actions) == [start_frame(), b"abcd", END_FRAME]
    assert core.state == S.FINISHING


def test_replies_are_delivered_unchanged_on_the_first_connection():
    core = connected_core()
    r = delivered(core.message(1, reply(word(" hi", 0, 300), word(" th", 300, 400, False),
                                        final=300, total=600), 1.0))
    assert [(t.text, t.start_ms, t.end_ms, t.is_final) for t in r.tokens] == [
        (" hi", 0, 300, True), (" th", 300, 400, False)]
    assert (r.final_audio_proc_ms, r.total_audio_proc_ms) == (300, 600)


def test_unknown_reply_fields_are_kept():
    core = connected_core()
    r = delivered(core.message(1, json.dumps({"tokens": [], "extra_field": 7}), 1.0))
    assert r.extra == {"extra_field": 7}


@pytest.mark.parametrize("what", ["audio", "finalize"])
def test_audio_and_finalize_after_end_raise(what):
    core = connected_core()
    core.end(1.0)
    with pytest.raises(SonioxError, match="already ended") as info:
        core.audio(b"x", 2.0) if what == "audio" else core.finalize(None, 2.0)
    assert info.value.reason == "closed"


@pytest.mark.parametrize("what", ["audio", "finalize"])
def test_audio_and_finalize_after_failure_raise(what):
    core = connected_core()
    core.message(1, error(401, "Invalid API key"), 1.0)
    with pytest.raises(SonioxError, match="session is over") as info:
        core.audio(b"x", 2.0) if what == "audio" else core.finalize(None, 2.0)
    assert "401" in str(info.value)


def test_audio_before_start_is_kept():
    core = make()
    assert core.audio(b"early", 0.0) == []
    core.start(0.1)
    assert sent(core.connected(1, 0.2)) == [start_frame(), b"early"]


# -- keepalive and the finish deadline ----------------------------------------------------


def test_no_deadline_before_connected():
    core = make()
    assert core.next_deadline() is None
    core.start(0.0)
    assert core.next_deadline() is None
    assert core.tick(100.0) == []


def test_keepalive_deadline_follows_the_last_frame_sent():
    core = connected_core(now=10.0, keepalive_interval=5.0)
    assert core.next_deadline() == 15.0
    core.audio(b"ab", 12.0)
    assert core.next_deadline() == 17.0
    assert core.tick(16.9) == []
    assert core.tick(17.0) == [SendFrame(1, KEEPALIVE_MESSAGE)]
    assert core.next_deadline() == 22.0


def test_keepalives_flow_while_paused():
    core = connected_core(keepalive_interval=5.0)
    core.pause(1.0)
    assert core.state == S.PAUSED
    assert core.tick(5.0) == [SendFrame(1, KEEPALIVE_MESSAGE)]
    assert core.tick(9.0) == []
    assert core.tick(10.0) == [SendFrame(1, KEEPALIVE_MESSAGE)]


def test_no_keepalive_after_the_end_of_stream():
    core = connected_core(keepalive_interval=5.0, finish_timeout=30.0)
    core.end(1.0)
    assert core.next_deadline() == 31.0
    assert core.tick(6.0) == [] and core.tick(20.0) == []


def test_no_finished_within_the_deadline_fails_with_timeout():
    core = connected_core(finish_timeout=30.0)
    core.end(1.0)
    assert core.tick(30.9) == []
    actions = core.tick(31.0)
    err = assert_failed(core, actions, "timeout")
    assert CloseConnection(1) in actions
    assert "finished" in str(err)
    assert core.next_deadline() is None


def test_replies_after_the_end_do_not_move_the_finish_deadline():
    core = connected_core(finish_timeout=30.0)
    core.end(1.0)
    core.message(1, reply(word(" a", 0, 10), final=10), 20.0)
    assert core.next_deadline() == 31.0


# -- pause and resume ---------------------------------------------------------------------


def test_pause_and_resume_while_streaming():
    core = connected_core()
    assert core.pause(1.0) == [StateChanged(S.PAUSED)]
    assert core.pause(1.1) == []
    assert core.resume(2.0) == [StateChanged(S.STREAMING)]
    assert core.resume(2.1) == []


def test_audio_and_finalize_while_paused_are_still_sent():
    core = connected_core()
    core.pause(1.0)
    assert core.audio(b"ab", 1.1) == [SendFrame(1, b"ab")]
    assert core.finalize(None, 1.2) == [SendFrame(1, finalize_message())]


def test_pause_while_connecting_lands_in_paused():
    core = make()
    core.start(0.0)
    assert core.pause(0.1) == []
    actions = core.connected(1, 0.2)
    assert StateChanged(S.PAUSED) in actions and core.state == S.PAUSED
    assert core.tick(5.2) == [SendFrame(1, KEEPALIVE_MESSAGE)]


def test_pause_then_resume_while_connecting_lands_in_streaming():
    core = make()
    core.start(0.0)
    core.pause(0.1)
    core.resume(0.2)
    core.connected(1, 0.3)
    assert core.state == S.STREAMING


def test_end_while_paused_finishes():
    core = connected_core()
    core.pause(1.0)
    assert core.end(2.0) == [StateChanged(S.FINISHING), SendFrame(1, END_FRAME)]


def test_pause_and_resume_do_nothing_once_finishing():
    core = connected_core()
    core.end(1.0)
    assert core.pause(2.0) == [] and core.resume(2.1) == []
    assert core.state == S.FINISHING


# -- reconnecting with raw PCM ------------------------------------------------------------


def test_a_drop_reconnects_and_resends_the_audio_that_was_not_final():
    core = connected_core()
    core.audio(pcm(1500), 1.5)
    finalize_upto(core, 1, 1000, 1.6)

    actions = drop(core, 2.0)
    assert actions == [CloseConnection(1), StateChanged(S.RECONNECTING)]
    assert core.state == S.RECONNECTING and core.current_connection == 2
    assert core.next_deadline() == 2.5

    # The user keeps talking meanwhile; nothing goes out.
    assert core.audio(pcm(200, 1500), 2.1) == []
    assert core.finalize(None, 2.2) == []
    assert core.tick(2.49) == []
    assert core.tick(2.5) == [OpenConnection(2)]
    assert core.connections == 2 and core.reconnects == 0

    actions = core.connected(2, 2.6)
    frames = sent(actions, 2)
    assert len(frames) == len(sent(actions))
    assert frames[0] == start_frame()
    assert audio_of(frames) == pcm(1700)[1000 * BYTES_PER_MS:] == pcm(700, 1000)
    assert frames[-1] == finalize_message()
    assert StateChanged(S.STREAMING) in actions
    assert core.reconnects == 1 and core.state == S.STREAMING


def test_audio_is_taken_only_while_a_connection_is_live():
    """What a producer that can wait waits for (UpstreamSession.wait_for_room)."""
    core = make()
    assert not core.takes_audio                  # new
    core.start(0.0)
    assert not core.takes_audio                  # connecting
    core.connected(1, 0.1)
    assert core.takes_audio                      # streaming
    core.pause(0.2)
    assert core.takes_audio                      # paused: keepalives, audio still goes
    core.resume(0.3)
    drop(core, 1.0)
    assert not core.takes_audio                  # reconnecting
    core.tick(1.5)
    assert not core.takes_audio                  # a new connection is on its way
    core.connected(2, 1.6)
    assert core.takes_audio
    core.close(2.0)
    assert core.state.is_over and core.takes_audio  # over: nothing to wait for


def test_replies_after_a_reconnect_are_on_the_recordings_clock():
    core = connected_core()
    core.audio(pcm(1500), 1.5)
    finalize_upto(core, 1, 1000, 1.6)
    drop(core, 2.0)
    conn, _ = reconnect(core, 2.0)

    r = delivered(core.message(conn, reply(word(" there", 0, 500), word(" x", 500, 600, False),
                                           final=500, total=600), 3.0))
    assert [(t.start_ms, t.end_ms) for t in r.tokens] == [(1000, 1500), (1500, 1600)]
    assert (r.final_audio_proc_ms, r.total_audio_proc_ms) == (1500, 1600)


def test_a_second_drop_resends_from_the_new_final_position():
    core = connected_core()
    core.audio(pcm(2000), 1.0)
    finalize_upto(core, 1, 1000, 1.1)
    drop(core, 2.0)
    conn2, _ = reconnect(core, 2.0)
    finalize_upto(core, conn2, 600, 3.0)  # recording time 1600
    drop(core, 4.0)
    conn3, actions = reconnect(core, 4.0)
    assert conn3 == 3 and core.connections == 3 and core.reconnects == 2
    assert audio_of(sent(actions)) == pcm(400, 1600)
    r = delivered(core.message(conn3, reply(word(" z", 0, 100), final=100), 5.0))
    assert r.tokens[0].start_ms == 1600 and r.final_audio_proc_ms == 1700


def test_events_of_the_old_connection_are_ignored_after_a_drop():
    core = connected_core()
    core.audio(pcm(100), 1.0)
    drop(core, 2.0)
    assert core.message(1, reply(word(" late", 0, 50), final=50), 2.1) == []
    assert core.message(1, error(401, "late"), 2.1) == []
    assert core.connection_closed(1, 1000, 2.2) == []
    assert core.connect_failed(1, SonioxError("x", reason="connect"), 2.2) == []
    assert core.connected(1, 2.3) == [CloseConnection(1)]
    assert core.state == S.RECONNECTING
    conn, _ = reconnect(core, 2.5)
    assert conn == 2
    assert core.message(1, reply(word(" late", 0, 50), final=50), 3.0) == []


def test_only_unanswered_finalize_requests_are_sent_again():
    core = connected_core()
    core.audio(pcm(500), 1.0)
    core.finalize(None, 1.1)
    core.finalize(300, 1.2)
    core.message(1, reply(word(" a", 0, 400), fin_token(), final=400), 1.3)
    drop(core, 2.0)
    _, actions = reconnect(core, 2.0)
    assert sent(actions) == [start_frame(), pcm(100, 400), finalize_message(300)]


def test_a_finalize_answered_before_the_drop_is_not_sent_again():
    core = connected_core()
    core.audio(pcm(500), 1.0)
    core.finalize(None, 1.1)
    core.message(1, reply(word(" a", 0, 500), fin_token(), final=500), 1.3)
    drop(core, 2.0)
    _, actions = reconnect(core, 2.0)
    assert sent(actions) == [start_frame()]


def test_a_drop_while_paused_comes_back_paused():
    core = connected_core()
    core.pause(1.0)
    drop(core, 2.0)
    _, actions = reconnect(core, 2.0)
    assert core.state == S.PAUSED and StateChanged(S.PAUSED) in actions


def test_resume_while_reconnecting_comes_back_streaming():
    core = connected_core()
    core.pause(1.0)
    drop(core, 2.0)
    core.resume(2.1)
    reconnect(core, 2.1)
    assert core.state == S.STREAMING


def test_end_while_reconnecting_sends_the_end_after_the_resent_audio():
    core = connected_core()
    core.audio(pcm(300), 1.0)
    drop(core, 2.0)
    assert core.end(2.1) == []
    assert core.state == S.RECONNECTING
    _, actions = reconnect(core, 2.1)
    assert sent(actions) == [start_frame(), pcm(300), END_FRAME]
    assert core.state == S.FINISHING


def test_a_drop_after_the_end_resends_the_end_and_restarts_the_finish_deadline():
    core = connected_core(finish_timeout=30.0)
    core.audio(pcm(300), 1.0)
    core.end(1.0)
    finalize_upto(core, 1, 100, 1.5)
    drop(core, 20.0)
    assert core.state == S.RECONNECTING
    _, actions = reconnect(core, 20.0)
    assert sent(actions) == [start_frame(), pcm(200, 100), END_FRAME]
    assert core.state == S.FINISHING
    assert core.next_deadline() == 50.5
    actions = core.message(2, reply(word(" b", 0, 200), final=200, finished=True), 21.0)
    assert over_error(actions) is None and core.state == S.FINISHED


def test_a_session_that_drops_before_any_audio_reconnects():
    core = connected_core()
    drop(core, 1.0)
    _, actions = reconnect(core, 1.0)
    assert sent(actions) == [start_frame()]
    assert core.state == S.STREAMING


def test_a_token_ending_before_the_resend_point_is_not_delivered_twice():
    core = connected_core()
    core.audio(pcm(1000), 1.0)
    finalize_upto(core, 1, 600, 1.1)
    drop(core, 2.0)
    conn, _ = reconnect(core, 2.0)
    r = delivered(core.message(conn, reply(word(" old", -100, 0), word(" new", 0, 200),
                                           final=200), 3.0))
    assert [t.text for t in r.tokens] == [" new"]


# -- joining the text across a resume ------------------------------------------------------


def resumed_after(*final_texts: str) -> tuple[SessionCore, int]:
    """A session whose words ``final_texts`` were final when the connection dropped."""
    core = connected_core()
    core.audio(pcm(3000), 0.0)
    if final_texts:
        step = 1000 // len(final_texts)
        words = [word(t, i * step, (i + 1) * step) for i, t in enumerate(final_texts)]
        core.message(1, reply(*words, final=1000), 0.5)
    drop(core, 1.0)
    conn, _ = reconnect(core, 1.0)
    return core, conn


def texts_of(core: SessionCore, conn: int, *tokens: dict) -> list[str]:
    return [t.text for t in delivered(core.message(conn, reply(*tokens), 2.0)).tokens]


def test_the_first_word_after_a_resume_gets_a_space():
    core, conn = resumed_after("Hello", " world")
    assert texts_of(core, conn, word("How", 0, 200), word(" are", 200, 400)) == [
        " How", " are"]
    assert texts_of(core, conn, word("you", 400, 600)) == ["you"]  # joined once only


def test_a_non_final_first_word_is_joined_until_a_word_is_final():
    core, conn = resumed_after("Hello")
    assert texts_of(core, conn, word("Ho", 0, 100, final=False)) == [" Ho"]
    assert texts_of(core, conn, word("How", 0, 200, final=False)) == [" How"]
    assert texts_of(core, conn, word("How", 0, 200), word("ard", 200, 300, final=False)) == [
        " How", "ard"]
    assert texts_of(core, conn, word("ard", 200, 300, final=False)) == ["ard"]


def test_special_tokens_are_never_joined():
    core, conn = resumed_after("Hello")
    assert texts_of(core, conn, fin_token(), word("How", 0, 200)) == [FIN_TOKEN, " How"]


@pytest.mark.parametrize(("before", "first", "expected"), [
    (("Hello",), " How", " How"),      # already spaced
    (("Hello",), ",", ","),            # punctuation takes no space before it
    (("Hello",), "?", "?"),
    ((), "How", "How"),                # nothing was final: it starts the text
    (("你好",), "世界", "世界"),         # CJK is written without spaces
    (("สวัสดี",), "ครับ", "ครับ"),        # so is Thai
    (("Hello ",), "How", "How"),       # the text already ends in a space
    (("Hello",), "(maybe", " (maybe"),
    (("Hola",), "¿qué", " ¿qué"),
    (("Привет",), "мир", " мир"),      # Cyrillic is spaced
])
def test_joining_a_resumed_first_word(before, first, expected):
    core, conn = resumed_after(*before)
    assert texts_of(core, conn, word(first, 0, 200)) == [expected]


def test_no_joining_without_a_resume():
    core = connected_core()
    core.audio(pcm(1000), 0.0)
    core.message(1, reply(word("Hello", 0, 300), final=300), 0.5)
    assert [t.text for t in delivered(core.message(1, reply(word("How", 300, 500)), 1.0))
            .tokens] == ["How"]


@pytest.mark.parametrize("last", [" world.", " world,", " world!", " world?", " world:"])
def test_a_resumed_first_word_after_punctuation_gets_a_space(last):
    core, conn = resumed_after("Hello", last)
    assert texts_of(core, conn, word("How", 0, 200)) == [" How"]


def test_a_resumed_korean_word_gets_a_space():
    core, conn = resumed_after("안녕하세요")
    assert texts_of(core, conn, word("감사합니다", 0, 200)) == [" 감사합니다"]


# -- error codes, back-off and limits -----------------------------------------------------


@pytest.mark.parametrize("code", [408, 500, 503])
def test_restartable_error_replies_reconnect(code):
    core = connected_core()
    core.audio(pcm(100), 1.0)
    actions = core.message(1, error(code, "Cannot continue request"), 1.5)
    assert actions == [CloseConnection(1), StateChanged(S.RECONNECTING)]
    assert core.error is None
    assert core.connection_closed(1, 1011, 1.6) == []  # the server closes after the error
    _, actions = reconnect(core, 1.6)
    assert audio_of(sent(actions)) == pcm(100)


@pytest.mark.parametrize("code", [400, 401, 402, 403, 404, 429])
def test_errors_a_retry_cannot_fix_fail_at_once(code):
    core = connected_core()
    actions = core.message(1, error(code, "nope"), 1.0)
    err = assert_failed(core, actions, "service")
    assert err.error_code == code and err.error_message == "nope"
    assert CloseConnection(1) in actions
    assert core.next_deadline() is None
    assert core.tick(100.0) == []
    assert core.connections == 1


def test_an_error_reply_without_a_code_fails():
    core = connected_core()
    actions = core.message(1, json.dumps({"error_message": "mystery"}), 1.0)
    err = assert_failed(core, actions, "service")
    assert err.error_code is None and "mystery" in str(err)


def test_the_first_connection_failing_is_not_retried():
    core = make()
    core.start(0.0)
    actions = core.connect_failed(1, SonioxError("no route", reason="connect"), 0.5)
    err = assert_failed(core, actions, "connect")
    assert str(err) == "no route"
    assert core.tick(10.0) == []


def test_the_first_connection_closing_during_the_handshake_fails():
    core = make()
    core.start(0.0)
    actions = core.connection_closed(1, 1006, 0.5)
    assert "handshake" in str(assert_failed(core, actions, "connection_lost"))


def test_failed_attempts_back_off_and_then_give_up():
    core = connected_core(reconnect=ReconnectPolicy(max_attempts=3, base_delay=0.5))
    drop(core, 0.0)
    now, opened, delays = 0.0, [], []
    for _ in range(3):
        due = core.next_deadline()
        delays.append(round(due - now, 6))
        assert core.tick(due - 0.01) == []
        (open_,) = of(core.tick(due), OpenConnection)
        opened.append(open_.conn)
        now = due + 0.1
        err = SonioxError("refused", error_code=503, reason="handshake")
        actions = core.connect_failed(open_.conn, err, now)
    assert delays == [0.5, 1.0, 2.0]
    assert opened == [2, 3, 4] and core.connections == 4 and core.reconnects == 0
    err = assert_failed(core, actions, "connection_lost")
    assert err.error_code == 503
    assert "3 attempts" in str(err) and "refused" in str(err)


def test_back_off_delays_are_capped():
    policy = ReconnectPolicy(max_attempts=6, base_delay=1.0, max_delay=3.0, window=1000)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    core = connected_core(reconnect=policy)
    drop(core, 0.0)
    now, delays = 0.0, []
    while core.state == S.RECONNECTING:
        due = core.next_deadline()
        delays.append(due - now)
        (open_,) = of(core.tick(due), OpenConnection)
        now = due
        core.connect_failed(open_.conn, SonioxError("down", reason="connect"), now)
    assert delays == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    assert core.state == S.FAILED and core.error.reason == "connection_lost"
    assert core.error.error_code is None


def test_connect_errors_that_are_not_transient_end_the_reconnect():
    core = connected_core()
    drop(core, 0.0)
    conn = of(core.tick(0.5), OpenConnection)[0].conn
    bad_key = SonioxError("refused (HTTP 401)", error_code=401, reason="handshake")
    actions = core.connect_failed(conn, bad_key, 0.6)
    assert over_error(actions) is bad_key and core.state == S.FAILED


def test_a_connection_closing_in_its_handshake_while_reconnecting_is_a_failed_attempt():
    core = connected_core()
    drop(core, 0.0)
    conn = of(core.tick(0.5), OpenConnection)[0].conn
    assert core.connection_closed(conn, 1006, 0.6) == []
    assert core.state == S.RECONNECTING and core.next_deadline() == 1.6


def test_the_window_since_the_drop_bounds_the_reconnect():
    core = connected_core(reconnect=ReconnectPolicy(window=1.0, base_delay=0.5))
    drop(core, 0.0)
    assert core.tick(0.5) == [OpenConnection(2)]
    assert core.next_deadline() == 1.0  # the attempt hangs
    assert core.tick(0.99) == []
    actions = core.tick(1.0)
    err = assert_failed(core, actions, "connection_lost")
    assert CloseConnection(2) in actions  # the hanging attempt is cancelled
    assert "(1 attempt)" in str(err)      # the one in flight was made (it said 0)


def test_a_failed_attempt_after_the_window_gives_up_at_once():
    core = connected_core(reconnect=ReconnectPolicy(window=1.0, base_delay=0.5))
    drop(core, 0.0)
    core.tick(0.5)
    actions = core.connect_failed(2, SonioxError("slow", reason="timeout"), 1.2)
    assert_failed(core, actions, "connection_lost")


def test_a_connection_that_drops_again_before_a_new_final_word_is_a_failed_attempt():
    core = connected_core(reconnect=ReconnectPolicy(max_attempts=3, window=1000))
    core.audio(pcm(500), 0.0)
    drop(core, 1.0)
    now = 1.0
    for expected_conn in (2, 3, 4):
        conn, _ = reconnect(core, now)
        assert conn == expected_conn
        now = core.next_deadline()  # a keepalive later it drops again, still no words
        core.message(conn, reply(word(" x", 0, 100, False), total=100), now)
        actions = drop(core, now)
    assert core.reconnects == 3
    err = assert_failed(core, actions, "connection_lost")
    assert "3 attempts" in str(err)


def test_a_new_final_word_proves_the_connection_and_resets_the_attempts():
    core = connected_core(reconnect=ReconnectPolicy(max_attempts=2, window=1000))
    core.audio(pcm(5000), 0.0)
    now = 1.0
    for i in range(5):  # more drops than max_attempts, each after progress
        drop(core, now)
        conn, _ = reconnect(core, now)
        now += 1.0
        finalize_upto(core, conn, 100, now)
        now += 1.0
        assert core.state == S.STREAMING, i
    assert core.reconnects == 5


def test_max_reconnects_caps_the_reconnects_of_a_session():
    core = connected_core(reconnect=ReconnectPolicy(max_reconnects=2, window=1000))
    core.audio(pcm(5000), 0.0)
    now = 1.0
    for _ in range(2):
        drop(core, now)
        conn, _ = reconnect(core, now)
        now += 1.0
        finalize_upto(core, conn, 100, now)
    assert core.reconnects == 2
    actions = drop(core, now + 1)
    assert "start a new recording" in str(assert_failed(core, actions, "connection_lost"))
    assert core.connections == 3


def test_max_reconnects_also_caps_restartable_error_replies():
    core = connected_core(reconnect=ReconnectPolicy(max_reconnects=1))
    drop(core, 1.0)
    reconnect(core, 1.0)
    actions = core.message(2, error(503, "restart"), 3.0)
    assert assert_failed(core, actions, "service").error_code == 503


def test_no_reconnect_fails_at_once_on_a_drop():
    core = connected_core(reconnect=NO_RECONNECT)
    core.audio(pcm(100), 1.0)
    actions = drop(core, 2.0)
    err = assert_failed(core, actions, "connection_lost")
    assert "1006" in str(err)
    assert core.tick(100.0) == []


def test_no_reconnect_fails_at_once_on_a_503():
    core = connected_core(reconnect=NO_RECONNECT)
    actions = core.message(1, error(503, "restart"), 1.0)
    assert assert_failed(core, actions, "service").error_code == 503


def test_no_reconnect_with_container_audio_fails_on_a_drop():
    core = connected_core(SonioxConfig(), reconnect=NO_RECONNECT)
    core.audio(b"webm", 1.0)
    assert_failed(core, drop(core, 2.0), "connection_lost")


def test_the_window_still_counts_from_the_first_drop_after_an_unproven_reconnect():
    core = connected_core(reconnect=ReconnectPolicy(window=8.0, base_delay=0.5,
                                                    stable_after=10.0))
    core.audio(pcm(500), 0.0)
    drop(core, 0.0)
    reconnect(core, 0.0)       # back at 0.5, but no word becomes final
    drop(core, 5.0)            # unproven (up 4.5 s): a failed attempt; retry at 6.0
    conn, _ = reconnect(core, 5.0)
    core.connection_closed(conn, 1006, 7.9)  # again: attempt 2, retry due at 9.9 ...
    assert core.state == S.RECONNECTING
    assert core.next_deadline() == 8.0       # ... but the window from the first drop ends
    actions = core.tick(8.0)
    assert_failed(core, actions, "connection_lost")


def test_a_reconnect_that_holds_long_enough_counts_as_working():
    core = connected_core(reconnect=ReconnectPolicy(max_attempts=1, stable_after=10.0))
    core.audio(pcm(500), 0.0)
    drop(core, 0.0)
    reconnect(core, 0.0)
    drop(core, 20.0)           # up 19.5 s without words (a pause): not a failed attempt
    assert core.state == S.RECONNECTING and core.error is None


def test_reconnects_that_hold_while_paused_are_not_failed_attempts():
    core = connected_core(reconnect=ReconnectPolicy(max_attempts=3))
    core.audio(pcm(1000), 0.0)
    finalize_upto(core, 1, 1000, 0.5)  # everything is final: nothing left to resend
    core.pause(1.0)
    now = 10.0
    for _ in range(4):
        drop(core, now)
        assert core.state == S.RECONNECTING
        reconnect(core, now)
        for _ in range(120):  # ten minutes of keepalives on the new connection
            now = core.next_deadline()
            assert core.tick(now) == [SendFrame(core.current_connection, KEEPALIVE_MESSAGE)]
    assert core.state == S.PAUSED


def test_a_later_give_up_does_not_carry_the_error_code_of_an_old_recovered_error():
    core = connected_core(reconnect=ReconnectPolicy(max_attempts=1, window=1000))
    core.audio(pcm(5000), 0.0)
    core.message(1, error(503, "restart"), 1.0)
    conn, _ = reconnect(core, 1.0)
    finalize_upto(core, conn, 100, 2.0)  # recovered: the session is healthy again
    now = 100.0
    drop(core, now)                      # a plain network drop, no error code
    conn, _ = reconnect(core, now)
    actions = drop(core, now + 1)        # drops again before any word: give up
    err = assert_failed(core, actions, "connection_lost")
    assert err.error_code is None, err.error_code


# -- container audio: resumed by transcoding to PCM ------------------------------------------


def container_core(**kwargs) -> SessionCore:
    return connected_core(SonioxConfig(), **kwargs)


PCM_CONFIG = RAW  # what container audio goes upstream as after a drop


def test_container_audio_is_sent_as_is_before_a_drop():
    core = container_core()
    assert core.audio(b"\x1aE\xdf\xa3webm", 1.0) == [SendFrame(1, b"\x1aE\xdf\xa3webm")]


def test_a_drop_with_container_audio_starts_transcoding_from_the_final_position():
    core = container_core()
    core.audio(b"HEADER", 0.5)
    core.audio(b"cluster1", 1.0)
    finalize_upto(core, 1, 700, 1.5)
    actions = drop(core, 2.0)
    assert actions == [CloseConnection(1), StartTranscoding(b"HEADERcluster1", 700),
                       StateChanged(S.RECONNECTING)]
    assert core.upstream_config == PCM_CONFIG
    assert core.config.audio_format == "auto"  # the user's config is unchanged

    assert core.audio(b"cluster2", 2.1) == [FeedTranscoder(b"cluster2")]
    assert core.transcoded(pcm(300, 700), 2.2) == []  # queued until connected
    conn, actions = reconnect(core, 2.2)
    assert sent(actions) == [start_frame(PCM_CONFIG), pcm(300, 700)]
    assert core.transcoded(pcm(100, 1000), 3.0) == [SendFrame(conn, pcm(100, 1000))]

    r = delivered(core.message(conn, reply(word(" b", 0, 300), final=300, total=400), 3.5))
    assert (r.tokens[0].start_ms, r.tokens[0].end_ms, r.final_audio_proc_ms) == (700, 1000, 1000)


def test_end_while_transcoding_waits_for_the_transcoder_before_the_end_frame():
    core = container_core()
    core.audio(b"HEADERdata", 1.0)
    drop(core, 2.0)
    conn, _ = reconnect(core, 2.0)
    actions = core.end(3.0)
    assert actions == [EndTranscoder(), StateChanged(S.FINISHING)]
    assert core.transcoded(pcm(50), 3.1) == [SendFrame(conn, pcm(50))]
    assert core.transcoder_finished(None, 3.2) == [SendFrame(conn, END_FRAME)]
    actions = core.message(conn, reply(word(" a", 0, 50), final=50, finished=True), 4.0)
    assert over_error(actions) is None and core.state == S.FINISHED


def test_end_before_the_drop_ends_the_transcoder_at_once():
    core = container_core()
    core.audio(b"HEADERdata", 1.0)
    core.end(1.5)
    actions = drop(core, 2.0)
    assert actions == [CloseConnection(1), StartTranscoding(b"HEADERdata", 0), EndTranscoder(),
                       StateChanged(S.RECONNECTING)]
    core.transcoded(pcm(40), 2.1)
    conn, actions = reconnect(core, 2.2)
    assert sent(actions) == [start_frame(PCM_CONFIG), pcm(40)]  # no end frame yet
    assert core.keepalive_interval and core.next_deadline() == 2.5 + core.keepalive_interval
    assert core.transcoder_finished(None, 2.6) == [SendFrame(conn, END_FRAME)]


def test_the_transcoder_finishing_while_reconnecting_sends_the_end_after_connected():
    core = container_core()
    core.audio(b"HEADERdata", 1.0)
    drop(core, 2.0)
    core.end(2.1)
    core.transcoded(pcm(40), 2.2)
    assert core.transcoder_finished(None, 2.3) == []
    _, actions = reconnect(core, 2.3)
    assert sent(actions) == [start_frame(PCM_CONFIG), pcm(40), END_FRAME]


def test_a_transcoder_failure_fails_the_session():
    core = container_core()
    core.audio(b"HEADERdata", 1.0)
    core.message(1, error(503, "restart"), 1.5)
    actions = core.transcoder_finished("boom", 2.0)
    err = assert_failed(core, actions, "protocol")
    assert "boom" in str(err) and err.error_code == 503
    assert core.transcoded(pcm(10), 2.1) == []


def test_a_second_drop_while_transcoding_resends_pcm_from_the_final_position():
    core = container_core()
    core.audio(b"HEADERdata", 1.0)
    finalize_upto(core, 1, 200, 1.1)
    drop(core, 2.0)
    core.transcoded(pcm(500, 200), 2.1)
    conn, _ = reconnect(core, 2.1)
    finalize_upto(core, conn, 300, 3.0)  # recording time 500
    actions = drop(core, 4.0)
    assert not of(actions, StartTranscoding)  # the transcoder goes on
    conn, actions = reconnect(core, 4.0)
    assert sent(actions) == [start_frame(PCM_CONFIG), pcm(200, 500)]


def test_an_unanswered_finalize_follows_the_resent_container_audio():
    core = container_core()
    core.audio(b"HEADERdata", 1.0)
    core.finalize(None, 1.5)           # sent on connection 1, never answered
    actions = drop(core, 2.0)
    (mark,) = of(actions, MarkTranscoder)  # goes through the transcoder, behind the audio
    assert of(actions, StartTranscoding) and mark.request == FinalizeRequest(None)
    core.transcoded(pcm(300), 2.1)
    assert core.transcoder_mark(mark.request, 2.15) == []  # not connected yet: queued
    _, actions = reconnect(core, 2.2)
    assert sent(actions) == [start_frame(PCM_CONFIG), pcm(300), finalize_message()]


def test_a_finalize_while_transcoding_does_not_overtake_audio_in_the_transcoder():
    core = container_core()
    core.audio(b"HEADERdata", 1.0)
    drop(core, 2.0)
    reconnect(core, 2.0)
    assert core.audio(b"more", 3.0) == [FeedTranscoder(b"more")]
    actions = core.finalize(None, 3.1)
    assert actions == [MarkTranscoder(FinalizeRequest(None))]  # nothing sent yet
    core.transcoded(pcm(50), 3.2)                              # the audio before it ...
    assert sent(core.transcoder_mark(FinalizeRequest(None), 3.3)) == [finalize_message()]


def test_a_container_recording_too_large_to_keep_cannot_be_resumed():
    core = container_core()
    core._container.max_bytes = 8  # white box: the kept stream has a size limit
    core.audio(b"123456789", 1.0)
    assert_failed(core, drop(core, 2.0), "connection_lost")


# -- close ---------------------------------------------------------------------------------


def test_close_fails_the_session_and_nothing_happens_after():
    core = connected_core()
    core.audio(b"ab", 1.0)
    actions = core.close(2.0)
    assert actions[0] == CloseConnection(1)
    err = assert_failed(core, actions, "closed")
    assert actions[-1] == SessionOver(err)
    assert core.close(2.1) == []
    assert core.end(2.2) == []
    assert core.tick(100.0) == []
    assert core.next_deadline() is None
    assert core.message(1, reply(word(" a", 0, 10), final=10), 3.0) == []
    assert core.connection_closed(1, 1000, 3.0) == []
    assert core.connected(1, 3.0) == [CloseConnection(1)]
    assert core.pause(3.0) == [] and core.resume(3.0) == []
    with pytest.raises(SonioxError, match="closed before it finished"):
        core.audio(b"x", 3.0)


def test_close_before_start_opens_nothing():
    core = make()
    actions = core.close(0.0)
    assert not of(actions, CloseConnection)
    assert_failed(core, actions, "closed")
    assert core.start(1.0) == []


def test_close_while_reconnecting_cancels_the_pending_attempt():
    core = connected_core()
    drop(core, 1.0)
    core.tick(1.5)
    actions = core.close(1.6)
    assert CloseConnection(2) in actions
    assert_failed(core, actions, "closed")


def test_close_while_transcoding_ends_the_transcoder():
    core = container_core()
    core.audio(b"HEADER", 1.0)
    drop(core, 2.0)
    actions = core.close(2.1)
    assert EndTranscoder() in actions
    assert_failed(core, actions, "closed")


def test_close_after_finished_does_nothing():
    core = connected_core()
    core.end(1.0)
    core.message(1, reply(finished=True), 2.0)
    assert core.close(3.0) == [] and core.state == S.FINISHED and core.error is None


# -- redaction of what the server says -------------------------------------------------------


def redacting_core(**kwargs) -> SessionCore:
    return connected_core(redact=lambda t: t.replace("sk-secret", "***"), **kwargs)


def assert_secret_free(err: SonioxError) -> None:
    for text in (str(err), err.error_message or "", repr(err), json.dumps(err.to_json())):
        assert "sk-secret" not in text


def test_a_secret_echoed_in_an_error_message_is_redacted():
    core = redacting_core()
    actions = core.message(1, error(401, "bad key sk-secret"), 1.0)
    err = assert_failed(core, actions, "service")
    assert_secret_free(err)
    assert "***" in str(err) and err.error_message == "bad key ***"


def test_a_secret_echoed_in_a_restart_error_is_redacted_in_the_final_error():
    core = redacting_core(reconnect=ReconnectPolicy(max_attempts=1))
    core.message(1, error(503, "restart sk-secret"), 1.0)
    conn = of(core.tick(1.5), OpenConnection)[0].conn
    actions = core.connection_closed(conn, 1006, 1.6)
    err = assert_failed(core, actions, "connection_lost")
    assert err.error_code == 503
    assert_secret_free(err)


def test_a_secret_in_a_malformed_token_is_not_quoted_in_the_error():
    core = redacting_core()
    bad = json.dumps({"tokens": [{"text": " x", "start_ms": "sk-secret", "is_final": True}]})
    err = assert_failed(core, core.message(1, bad, 1.0), "protocol")
    assert "start_ms" in str(err)
    assert_secret_free(err)


@pytest.mark.parametrize("frame", [
    "sk-secret is not json",
    json.dumps(["sk-secret"]),
    json.dumps({"tokens": "sk-secret"}),
    json.dumps({"tokens": [], "final_audio_proc_ms": "sk-secret"}),
    json.dumps({"tokens": [{"text": " x", "language": ["sk-secret"]}]}),
    b"\xffsk-secret",
])
def test_malformed_replies_fail_without_quoting_the_secret(frame):
    core = connected_core()  # no redaction at all: the parser itself must not quote values
    err = assert_failed(core, core.message(1, frame, 1.0), "protocol")
    assert_secret_free(err)


# -- a relay's core: replies as the server's own text ---------------------------------------


def texts(actions: list) -> list[str]:
    return [a.text for a in of(actions, DeliverText)]


def test_a_relay_core_passes_the_servers_text_on_unchanged_and_reads_its_progress():
    core = connected_core(deliver_text=True)
    core.audio(pcm(1000), 1.0)
    core.finalize(None, 1.1)
    # Spacing, key order and fields the session never reads all go through as they came.
    frame = ('{ "total_audio_proc_ms": 900, "tokens": [ {"text": " hi", "start_ms": 0,'
             ' "end_ms": 400, "is_final": true, "speaker": "2", "new_field": [1, {}]},'
             ' {"text": "<fin>", "is_final": true},'
             ' {"text": " th", "is_final": false, "start_ms": "?"} ],'
             ' "final_audio_proc_ms": 450, "vendor": {"x": 1} }')
    actions = core.message(1, frame, 1.2)
    assert actions == [DeliverText(frame)] and not of(actions, DeliverReply)
    # ... and the session learned what it acts on: how far words are final, the <fin>.
    drop(core, 2.0)
    _, resent = reconnect(core, 2.0)
    assert audio_of(sent(resent)) == pcm(550, 450)  # from the final position on
    assert finalize_message() not in sent(resent)   # it was answered


def test_a_relay_core_masks_an_echoed_key_in_the_text_it_passes_on():
    core = redacting_core(deliver_text=True)
    frame = reply(word(" sk-secret", 0, 100, final=False))
    (text,) = texts(core.message(1, frame, 1.0))
    assert "sk-secret" not in text
    assert json.loads(text)["tokens"][0]["text"] == " ***"


def test_a_relay_core_ends_with_finished_and_fails_on_an_error_reply_without_relaying_it():
    core = connected_core(deliver_text=True)
    core.end(1.0)
    frame = reply(word(" a", 0, 100), final=100, total=100, finished=True)
    actions = core.message(1, frame, 1.1)
    assert texts(actions) == [frame]
    assert actions[-1] == SessionOver(None) and core.state == S.FINISHED

    core = redacting_core(deliver_text=True)
    actions = core.message(1, error(400, "bad config for sk-secret"), 1.0)
    err = assert_failed(core, actions, "service")
    assert not texts(actions) and err.error_code == 400
    assert_secret_free(err)


@pytest.mark.parametrize("frame", [
    {"tokens": [{"text": " x", "end_ms": "sk-secret", "is_final": True}]},
    {"tokens": [{"text": ["sk-secret"], "is_final": True}]},
    {"tokens": ["sk-secret"], "finished": True},
    {"tokens": [], "final_audio_proc_ms": "sk-secret", "finished": True},
])
def test_a_relay_core_refuses_a_malformed_reply_it_must_act_on_without_quoting_it(frame):
    core = connected_core(deliver_text=True)
    err = assert_failed(core, core.message(1, json.dumps(frame), 1.0), "protocol")
    assert_secret_free(err)


def test_a_relay_core_passes_on_a_reply_of_non_final_words_without_reading_it():
    core = connected_core(deliver_text=True)
    core.audio(pcm(500), 1.0)
    # Nothing in it to act on (no final word, error or finished): not even checked.
    odd = '{"tokens": [{"text": " maybe", "is_final": false, "start_ms": "soon"}]}'
    assert core.message(1, odd, 1.1) == [DeliverText(odd)]
    assert core.state == S.STREAMING
    # A word "true" only makes the core read the reply in full.
    words = reply(word(" true", 0, 100, final=False), total=100)
    assert core.message(1, words, 1.2) == [DeliverText(words)]


def test_after_a_reconnect_a_relay_core_passes_on_replies_moved_onto_the_recordings_clock():
    core = connected_core(deliver_text=True)
    core.audio(pcm(1500), 1.0)
    finalize_upto(core, 1, 1000, 1.1)
    drop(core, 2.0)
    conn, _ = reconnect(core, 2.0)
    (text,) = texts(core.message(conn, reply(word(" there", 0, 500), final=500), 3.0))
    r = parse_reply(text)
    assert [(t.text, t.start_ms, t.end_ms) for t in r.tokens] == [(" there", 1000, 1500)]
    assert r.final_audio_proc_ms == 1500


# -- properties over random event sequences -----------------------------------------------


@dataclass
class FakeServer:
    """What one connection's server side saw, and how far it made words final."""

    bytes_per_ms: int
    base_ms: int                 # recording time of this connection's first audio byte
    frames: list = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    final_ms: int = 0            # on this connection's own clock
    finalize_at: list[int] = field(default_factory=list)  # audio ms at each finalize
    ended: bool = False

    @property
    def heard_ms(self) -> int:
        return len(self.audio) // self.bytes_per_ms

    def receive(self, frame: str | bytes) -> None:
        if not self.frames:
            assert isinstance(frame, str) and json.loads(frame)["audio_format"], frame
        else:
            assert not self.ended, f"frame after the end of stream: {frame!r}"
            if frame == END_FRAME:
                self.ended = True
            elif isinstance(frame, bytes):
                self.audio += frame
            elif json.loads(frame)["type"] == "finalize":
                self.finalize_at.append(self.heard_ms)
        self.frames.append(frame)

    def reply_up_to(self, ms: int, *, fin: bool = False, finished: bool = False) -> str:
        ms = max(self.final_ms, min(ms, self.heard_ms))
        tokens = [word(" w", self.final_ms, ms)] if ms > self.final_ms else []
        if fin:
            tokens.append(fin_token())
        if self.heard_ms > ms:
            tokens.append(word(" n", ms, self.heard_ms, final=False))
        self.final_ms = ms
        return reply(*tokens, final=ms, total=self.heard_ms, finished=finished)


class Driver:
    """A model driver: carries out the core's actions and checks them as it goes.

    Raw PCM audio is ``pcm(ms, start_ms)``: 32 bytes a millisecond, each recognisable. A
    "container" stream is one byte a millisecond, and the fake transcoder turns byte *i*
    into ``pcm(1, i)``, so every connection's audio can be checked against the recording.
    """

    def __init__(self, config: SonioxConfig, policy: ReconnectPolicy,
                 deliver_text: bool = False) -> None:
        self.core = SessionCore(config, reconnect=policy, keepalive_interval=5.0,
                                finish_timeout=30.0, deliver_text=deliver_text)
        self.delivered: list = []  # every reply, as a Reply (texts parsed)
        self.container = not config.is_raw_audio
        self.now = 0.0
        self.recording = bytearray()     # what the user gave
        self.opening: set[int] = set()   # OpenConnection done, not yet connected
        self.servers: dict[int, FakeServer] = {}  # connected and not closed
        self.old: set[int] = set()       # ids that are stale now
        self.final_ms = 0                # recording time the delivered replies made final
        self.last_word_end = 0
        self.over = False
        self.finished = False
        self.transcoder: bytearray | None = None  # container bytes not yet "decoded"
        self.transcoder_pos = 0          # recording ms of the next decoded byte
        self.transcoder_ended = False
        self.transcoder_done = False
        self.transcoder_in = 0           # bytes given to the transcoder
        self.transcoder_out = 0          # bytes it has decoded
        self.marks: list[tuple[int, FinalizeRequest]] = []  # (input position, request)
        self.starts = 0
        self.opens = 0
        self.state = S.NEW               # as the StateChanged actions told it
        self.finalizes: list[int] = []   # recording ms at each finalize not yet answered
        # A finalize must cover every byte given before it, transcoded or not.
        self.strict_container_finalize = True

    # -- carrying out actions --

    def apply(self, actions: list) -> None:
        assert isinstance(actions, list)
        if self.over:  # nothing happens after the end but closing what reports in late
            assert all(isinstance(a, CloseConnection) for a in actions), actions
        for action in actions:
            if self.over:
                assert not isinstance(action, (SendFrame, OpenConnection, DeliverReply,
                                               DeliverText, StartTranscoding,
                                               FeedTranscoder)), action
            if isinstance(action, SendFrame):
                assert action.conn == self.core.current_connection, action
                assert action.conn in self.servers, action
                self.servers[action.conn].receive(action.frame)
            elif isinstance(action, OpenConnection):
                assert action.conn == self.core.current_connection
                assert action.conn not in self.opening and action.conn not in self.servers
                self.opening = {action.conn}
                self.opens += 1
            elif isinstance(action, CloseConnection):
                self.opening.discard(action.conn)
                self.servers.pop(action.conn, None)
                self.old.add(action.conn)
            elif isinstance(action, DeliverReply):
                assert not self.core.deliver_text
                self.check_reply(action.reply)
            elif isinstance(action, DeliverText):
                assert self.core.deliver_text
                self.check_reply(parse_reply(action.text))
            elif isinstance(action, StartTranscoding):
                assert self.container and self.transcoder is None and self.starts == 0
                self.starts += 1
                assert action.container == bytes(self.recording)
                assert action.skip_ms == self.final_ms
                self.transcoder = bytearray(action.container[action.skip_ms:])
                self.transcoder_pos = action.skip_ms
                self.transcoder_in = len(self.transcoder)
            elif isinstance(action, FeedTranscoder):
                assert self.transcoder is not None and not self.transcoder_ended
                self.transcoder += action.data
                self.transcoder_in += len(action.data)
            elif isinstance(action, MarkTranscoder):
                assert self.transcoder is not None and not self.transcoder_ended
                self.marks.append((self.transcoder_in, action.request))
            elif isinstance(action, EndTranscoder):
                assert self.transcoder is not None
                self.transcoder_ended = True
            elif isinstance(action, SessionOver):
                assert not self.over
                self.over = True
                assert self.core.state.is_over
                assert action.error is self.core.error
                self.finished = action.error is None
            else:
                assert isinstance(action, StateChanged), action
                assert action.state != self.state, action
                self.state = action.state
        assert self.state == self.core.state
        self.check_invariants()

    def check_reply(self, r) -> None:
        self.delivered.append(r)
        for tok in r.tokens:
            if tok.is_final and not tok.is_special:
                assert tok.start_ms >= self.last_word_end, (tok, self.last_word_end)
                self.last_word_end = tok.end_ms
        if r.final_audio_proc_ms is not None:
            assert r.final_audio_proc_ms >= self.final_ms
            self.final_ms = r.final_audio_proc_ms
        for _ in range(sum(t.text == FIN_TOKEN for t in r.tokens)):
            # A <fin> answers the oldest finalize: all audio given before it is final.
            asked_at = self.finalizes.pop(0)
            if not self.container or self.strict_container_finalize:
                assert self.final_ms >= asked_at, (self.final_ms, asked_at)

    def check_invariants(self) -> None:
        core = self.core
        assert isinstance(core.state, SessionState)
        assert self.over == core.state.is_over
        if core.state == S.FAILED:
            assert isinstance(core.error, SonioxError)
        deadline = core.next_deadline()
        assert deadline is None or isinstance(deadline, float)
        if self.over:
            assert deadline is None
        assert core.connections == self.opens
        assert core.bytes_in == len(self.recording)
        # Every connection got exactly the recording's audio from its resend point on.
        for server in self.servers.values():
            assert bytes(server.audio) == self.expected_audio(server), server.base_ms
            if server.ended:
                assert server.base_ms + server.heard_ms == self.recording_ms

    @property
    def recording_ms(self) -> int:
        if self.container:
            return len(self.recording)
        return len(self.recording) // BYTES_PER_MS

    def expected_audio(self, server: FakeServer) -> bytes:
        n = len(server.audio)
        if server.bytes_per_ms == 1:  # the container connection
            return bytes(self.recording[:n])
        if self.container:
            return pcm(n // BYTES_PER_MS, server.base_ms)[:n]
        start = server.base_ms * BYTES_PER_MS
        return bytes(self.recording[start:start + n])

    # -- events --

    def call(self, method: str, *args) -> None:
        self.apply(getattr(self.core, method)(*args, self.now))

    def user_audio(self, n: int) -> None:
        if self.container:
            data = bytes((len(self.recording) + i) % 251 for i in range(n))
        else:
            data = pcm(n, self.recording_ms)
        if self.core.ended or self.core.state.is_over:
            with pytest.raises(SonioxError):
                self.core.audio(data, self.now)
            return
        self.recording += data
        self.call("audio", data)

    def expect_raise_when_closed(self, method: str, *args) -> None:
        if self.core.ended or self.core.state.is_over:
            with pytest.raises(SonioxError):
                getattr(self.core, method)(*args, self.now)
        else:
            self.call(method, *args)

    def connect(self) -> None:
        for conn in sorted(self.opening):
            self.opening.discard(conn)
            pcm_upstream = self.core.upstream_config.is_raw_audio
            bytes_per_ms = BYTES_PER_MS if pcm_upstream else 1
            self.servers[conn] = FakeServer(bytes_per_ms, self.final_ms)
            self.call("connected", conn)
            assert self.servers.get(conn) is None or self.servers[conn].frames

    def connect_fail(self, transient: bool) -> None:
        for conn in sorted(self.opening):
            self.opening.discard(conn)
            self.old.add(conn)
            err = (SonioxError("down", reason="connect") if transient
                   else SonioxError("bad key", error_code=401, reason="handshake"))
            self.call("connect_failed", conn, err)

    def live(self) -> tuple[int, FakeServer] | None:
        conn = self.core.current_connection
        return (conn, self.servers[conn]) if conn in self.servers else None

    def server_says(self, make_frame) -> None:
        if (live := self.live()) is not None:
            conn, server = live
            before = server.final_ms
            actions = self.core.message(conn, make_frame(server), self.now)
            self.apply(actions)
            # On the recording's clock: shifted by where this connection's audio starts.
            (r,) = [a.reply if isinstance(a, DeliverReply) else parse_reply(a.text)
                    for a in actions if isinstance(a, (DeliverReply, DeliverText))]
            base = server.base_ms
            assert [(t.start_ms, t.end_ms) for t in r.final_tokens if not t.is_special] == (
                [(base + before, base + server.final_ms)] if server.final_ms > before else [])
            assert r.final_audio_proc_ms == base + server.final_ms
            assert r.total_audio_proc_ms == base + server.heard_ms

    def drop(self, code: int) -> None:
        if (live := self.live()) is not None:
            conn, _ = live
            del self.servers[conn]
            self.old.add(conn)
            self.call("connection_closed", conn, code)

    def error_reply(self, code: int) -> None:
        if (live := self.live()) is not None:
            conn, _ = live
            self.call("message", conn, error(code, "oops"))
            self.servers.pop(conn, None)
            self.old.add(conn)
            self.call("connection_closed", conn, 1011)

    def stale(self) -> None:
        for conn in sorted(self.old)[-2:]:
            assert conn != self.core.current_connection or self.over
            if conn == self.core.current_connection:
                continue
            for result in (self.core.message(conn, reply(word(" s", 0, 1), final=1), self.now),
                           self.core.connection_closed(conn, 1006, self.now),
                           self.core.connect_failed(conn, SonioxError("x", reason="connect"),
                                                    self.now)):
                assert result == []
            assert self.core.connected(conn, self.now) == [CloseConnection(conn)]

    def transcode_step(self, n: int) -> None:
        if self.transcoder is None or self.transcoder_done:
            return
        chunk = bytes(self.transcoder[:n])
        del self.transcoder[:n]
        if chunk:
            self.call("transcoded", pcm(len(chunk), self.transcoder_pos))
            self.transcoder_pos += len(chunk)
            self.transcoder_out += len(chunk)
        ending = not chunk and self.transcoder_ended and not self.transcoder
        while self.marks and (ending or self.marks[0][0] <= self.transcoder_out):
            if self.over:
                self.marks.clear()
                break
            self.call("transcoder_mark", self.marks.pop(0)[1])
        if ending:  # all decoded: it ends
            self.transcoder_done = True
            self.call("transcoder_finished", None)

    def tick(self, dt: float, to_deadline: bool) -> None:
        due = self.core.next_deadline()
        self.now += dt
        if to_deadline and due is not None:
            self.now = max(self.now, due)
        self.call("tick")

    def run(self, op: tuple) -> None:
        kind, arg = op
        if kind == "audio":
            self.user_audio(arg)
        elif kind == "finalize":
            accepted = not (self.core.ended or self.core.state.is_over)
            if accepted:
                self.finalizes.append(self.recording_ms)
            self.expect_raise_when_closed("finalize", arg)
        elif kind in ("pause", "resume", "end", "close"):
            self.call(kind)
        elif kind == "connect":
            self.connect()
        elif kind == "connect_fail":
            self.connect_fail(arg)
        elif kind == "reply":
            self.server_says(lambda s: s.reply_up_to(s.final_ms + arg))
        elif kind == "answer_finalize":
            if (live := self.live()) is not None and live[1].finalize_at:
                self.server_says(lambda s: s.reply_up_to(s.finalize_at.pop(0), fin=True))
        elif kind == "finished":
            if (live := self.live()) is not None and live[1].ended:
                self.server_says(lambda s: s.reply_up_to(s.heard_ms, finished=True))
        elif kind == "drop":
            self.drop(arg)
        elif kind == "error":
            self.error_reply(arg)
        elif kind == "reconnect":  # the retry timer fires and the connection comes up
            self.tick(0.0, True)
            self.connect()
        elif kind == "stale":
            self.stale()
        elif kind == "transcode":
            self.transcode_step(arg)
        else:
            assert kind == "tick"
            self.tick(*arg)


def _op(kind: str, arg: st.SearchStrategy | None = None, weight: int = 1) -> list:
    arg = st.none() if arg is None else arg
    return [st.tuples(st.just(kind), arg) for _ in range(weight)]


# Weighted by repetition: mostly audio, replies, time and the network coming and going.
_OPS = [
    *_op("audio", st.integers(1, 400), 5),
    *_op("finalize", st.sampled_from([None, 0, 300])),
    *_op("pause"), *_op("resume"), *_op("stale"), *_op("end"),
    *_op("connect", weight=4), *_op("reconnect", weight=2),
    *_op("connect_fail", st.sampled_from([True, True, True, False])),
    *_op("reply", st.integers(0, 300), 4),
    *_op("answer_finalize"), *_op("finished", weight=2),
    *_op("drop", st.sampled_from([1006, 1011, None]), 3),
    *_op("error", st.sampled_from([503, 503, 500, 408, 429, 400])),
    *_op("transcode", st.integers(0, 200), 3),
    *_op("tick", st.tuples(st.floats(0, 8, allow_nan=False), st.booleans()), 4),
]
OPS = st.one_of(*_OPS)
OPS_AND_CLOSE = st.one_of(*_OPS, *_op("close"))
POLICIES = st.sampled_from([
    POLICY,
    NO_RECONNECT,
    ReconnectPolicy(max_attempts=2, base_delay=0.1, max_delay=0.4, window=5.0,
                    max_reconnects=3),
])
CONFIGS = st.sampled_from([RAW, SonioxConfig()])
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None,
                             suppress_health_check=[HealthCheck.too_slow])


def run_session(config: SonioxConfig, policy: ReconnectPolicy, ops: list, *,
                early: int = 0, settle: bool = False, deliver_text: bool = False) -> Driver:
    driver = Driver(config, policy, deliver_text)
    driver.call("start")
    for i, op in enumerate(ops):
        if i == early:  # the first connection mostly comes up (its failure ends it all)
            driver.run(("connect", None))
        driver.run(op)
    if settle:
        finish_well(driver)
    return driver


def finish_well(driver: Driver) -> None:
    """A calm network from here on: the session must end, and end well if it can."""
    for _ in range(200):
        if driver.over:
            return
        for op in (("connect", None), ("transcode", 10_000), ("transcode", 0),
                   ("end", None), ("reply", 10_000), ("finished", None),
                   ("tick", (0.0, True))):
            driver.run(op)
    raise AssertionError(f"the session did not end: {driver.core!r}")


@PROPERTY_SETTINGS
@given(config=CONFIGS, policy=POLICIES, ops=st.lists(OPS_AND_CLOSE, min_size=10, max_size=80),
       early=st.integers(0, 4), deliver_text=st.booleans())
def test_random_event_sequences_keep_the_invariants(config, policy, ops, early, deliver_text):
    run_session(config, policy, ops, early=early, deliver_text=deliver_text)


@PROPERTY_SETTINGS
@given(config=CONFIGS, policy=POLICIES, ops=st.lists(OPS_AND_CLOSE, min_size=10, max_size=80),
       early=st.integers(0, 4))
def test_a_relay_core_does_and_delivers_what_the_object_core_does(config, policy, ops, early):
    # The relay's shortcut (read only what is acted on, pass the text on) must not
    # change a thing: the same frames to every server, the same replies, the same end.
    objects = run_session(config, policy, ops, early=early, settle=True)
    texts = run_session(config, policy, ops, early=early, settle=True, deliver_text=True)
    assert texts.delivered == objects.delivered
    assert [t.to_json() for r in texts.delivered for t in r.tokens] == \
        [t.to_json() for r in objects.delivered for t in r.tokens]
    assert (texts.finished, texts.final_ms, texts.opens) == \
        (objects.finished, objects.final_ms, objects.opens)
    assert str(texts.core.error) == str(objects.core.error)


@PROPERTY_SETTINGS
@given(config=CONFIGS, ops=st.lists(OPS, min_size=10, max_size=80), early=st.integers(0, 4))
def test_a_session_ends_and_if_it_finishes_every_word_is_final_once(config, ops, early):
    driver = run_session(config, POLICY, ops, early=early, settle=True)
    assert driver.over
    if driver.finished:
        assert driver.final_ms == driver.recording_ms
        assert driver.last_word_end <= driver.recording_ms


def test_a_scripted_flaky_session_finishes_with_every_word_once():
    ops = [("connect", None), ("audio", 300), ("reply", 100), ("drop", 1006),
           ("audio", 50), ("tick", (0.0, True)), ("connect", None), ("reply", 80),
           ("error", 503), ("tick", (0.0, True)), ("connect", None), ("audio", 20),
           ("finalize", None), ("answer_finalize", None), ("end", None), ("finished", None)]
    for config in (RAW, SonioxConfig()):
        driver = run_session(config, POLICY, ops, settle=True)
        assert driver.finished, driver.core.error
        assert driver.core.reconnects == 2
        assert driver.final_ms == driver.recording_ms == 370
