import json

import pytest

from soniox_widget.protocol import ProtocolError, Reply, Token, parse_reply


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
