import json

import pytest

from soniox_widget.protocol import (
    AudioFrame,
    EndOfStream,
    FinalizeRequest,
    KeepaliveMessage,
    ProtocolError,
    Reply,
    StartMessage,
    Token,
    encode_client_message,
    parse_client_message,
    parse_reply,
    parse_start_message,
)


def test_parse_tokens_and_progress():
    reply = parse_reply(json.dumps({
        "tokens": [
            {"text": " hello", "start_ms": 120, "end_ms": 480, "confidence": 0.97,
             "is_final": True, "speaker": "1", "language": "en"},
            {"text": " wor", "is_final": False},
        ],
        "final_audio_proc_ms": 480, "total_audio_proc_ms": 960,
    }))
    assert reply.final_tokens[0] == Token(" hello", True, 120, 480, 0.97, "1", "en")
    assert reply.nonfinal_tokens[0].text == " wor"
    assert (reply.final_audio_proc_ms, reply.total_audio_proc_ms) == (480, 960)
    assert not reply.finished and not reply.is_error


def test_parse_error_and_finished():
    err = parse_reply('{"error_code": 401, "error_message": "Invalid API key"}')
    assert err.is_error and err.error_code == 401 and err.error_message == "Invalid API key"
    assert parse_reply('{"tokens": [], "finished": true}').finished


def test_special_tokens_are_marked():
    reply = parse_reply('{"tokens": [{"text": "<end>", "is_final": true}]}')
    assert reply.tokens[0].is_special


@pytest.mark.parametrize("bad", ["not json", "[1,2]", '{"tokens": 5}',
                                 '{"tokens": [{"is_final": true}]}',
                                 '{"tokens": [{"text": "a", "start_ms": "x"}]}'])
def test_malformed_replies_raise_protocol_error(bad):
    with pytest.raises(ProtocolError):
        parse_reply(bad)


def test_round_trip_keeps_unknown_fields():
    original = {"tokens": [{"text": "hi", "is_final": True, "translation_status": "original"}],
                "final_audio_proc_ms": 10, "total_audio_proc_ms": 20, "new_field": 1}
    again = json.loads(parse_reply(json.dumps(original)).dumps())
    assert again == original


def test_error_reply_serialises_like_soniox():
    assert Reply(error_code=400, error_message="bad").to_json() == {
        "error_code": 400, "error_message": "bad"}


# -- client → server frames -------------------------------------------------------------

@pytest.mark.parametrize("message", [
    StartMessage({"model": "stt-rt-v5", "audio_format": "auto", "language_hints": ["en"],
                  "context": {"text": "Zürich [notes]"}}),
    AudioFrame(b"\x00\x01audio"),
    FinalizeRequest(),
    FinalizeRequest(trailing_silence_ms=0),
    FinalizeRequest(trailing_silence_ms=300),
    KeepaliveMessage(),
    EndOfStream(),
])
def test_client_messages_round_trip(message):
    frame = encode_client_message(message)
    if isinstance(message, StartMessage):
        assert parse_start_message(frame) == message
    else:
        assert parse_client_message(frame) == message


def test_client_frames_have_the_wire_types_soniox_expects():
    assert encode_client_message(AudioFrame(b"abc")) == b"abc"
    assert encode_client_message(EndOfStream()) == b""
    assert json.loads(encode_client_message(KeepaliveMessage())) == {"type": "keepalive"}
    assert json.loads(encode_client_message(FinalizeRequest())) == {"type": "finalize"}
    assert json.loads(encode_client_message(FinalizeRequest(250))) == {
        "type": "finalize", "trailing_silence_ms": 250}
    start = encode_client_message(StartMessage({"model": "m", "context": {"text": "ü"}}))
    assert isinstance(start, str) and "ü" in start  # text frame, not escaped bytes


def test_encoding_something_else_is_a_type_error():
    with pytest.raises(TypeError):
        encode_client_message({"type": "keepalive"})


@pytest.mark.parametrize("frame", [b"", "", bytearray(), memoryview(b"")])
def test_an_empty_frame_of_either_kind_ends_the_stream(frame):
    assert parse_client_message(frame) == EndOfStream()


def test_binary_frames_are_audio_whatever_they_hold():
    assert parse_client_message(b'{"type": "finalize"}') == AudioFrame(b'{"type": "finalize"}')
    assert parse_client_message(bytearray(b"\x01\x02")) == AudioFrame(b"\x01\x02")
    assert parse_client_message(memoryview(b"\x03")) == AudioFrame(b"\x03")


def test_finalize_without_silence_and_extra_fields_are_accepted():
    assert parse_client_message('{"type": "finalize", "x": 1}') == FinalizeRequest(None)
    assert parse_client_message('{"type": "finalize", "trailing_silence_ms": null}') == \
        FinalizeRequest(None)


DEEP = "[" * 200_000


@pytest.mark.parametrize(("frame", "words"), [
    ("hello", "not valid JSON"),
    ("{", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('"finalize"', "must be a JSON object"),
    ("null", "must be a JSON object"),
    ('{"kind": "finalize"}', "unknown control message type 'None'"),
    ('{"type": "stop"}', "unknown control message type 'stop'"),
    ('{"type": 7}', "unknown control message type '7'"),
    ('{"type": "' + "x" * 500 + '"}', "unknown control message type 'xxxx"),
    ('{"type": "finalize", "trailing_silence_ms": -1}', "non-negative integer"),
    ('{"type": "finalize", "trailing_silence_ms": 1.5}', "non-negative integer"),
    ('{"type": "finalize", "trailing_silence_ms": "100"}', "non-negative integer"),
    ('{"type": "finalize", "trailing_silence_ms": true}', "non-negative integer"),
    ('{"a": ' * 40 + "1" + "}" * 40, "nested too deeply"),
    ("[" * 40 + "]" * 40, "nested too deeply"),
    (DEEP, "over"),
    ('{"type": "keepalive", "pad": "' + "x" * 70_000 + '"}', "over"),
])
def test_bad_control_frames_raise_protocol_error_with_a_client_facing_message(frame, words):
    with pytest.raises(ProtocolError) as info:
        parse_client_message(frame)
    message = str(info.value)
    assert words in message
    assert len(message) < 300  # says what is wrong without echoing the frame back


def test_nesting_just_inside_the_limit_is_accepted():
    assert parse_client_message('{"type": "keepalive", "x": ' + "[" * 31 + "]" * 31 + "}") \
        == KeepaliveMessage()


def test_deep_nesting_under_the_size_cap_is_refused_without_recursion():
    frame = "[" * 60_000  # under the size cap: the depth check must refuse it
    with pytest.raises(ProtocolError, match="nested too deeply"):
        parse_client_message(frame)
    with pytest.raises(ProtocolError, match="nested too deeply"):
        parse_start_message(frame)


def test_a_text_frame_that_is_not_json_says_to_send_audio_as_binary():
    with pytest.raises(ProtocolError, match="binary"):
        parse_client_message("hello")


def test_start_message_parses_to_its_config():
    start = parse_start_message('{"model": "stt-rt-v5", "audio_format": "auto"}')
    assert start == StartMessage({"model": "stt-rt-v5", "audio_format": "auto"})


@pytest.mark.parametrize(("frame", "words"), [
    (b'{"model": "stt-rt-v5"}', "not audio"),
    (b"", "not audio"),
    ("", "not valid JSON"),
    ("not json", "not valid JSON"),
    ('["model"]', "must be a JSON object"),
    ("42", "must be a JSON object"),
    ('{"context": ' * 40 + "{}" + "}" * 40, "nested too deeply"),
    (DEEP, "over"),
])
def test_bad_start_messages_raise_protocol_error(frame, words):
    with pytest.raises(ProtocolError) as info:
        parse_start_message(frame)
    assert words in str(info.value)
    assert "start message" in str(info.value) or "first message" in str(info.value)
