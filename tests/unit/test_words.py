# ruff: noqa: RUF001  (full-width marks are the point: Japanese text)
"""One joining rule: the live text, final_text, utterances, subtitles and the DataFrame
agree, for spaced and unspaced scripts, across an endpoint and a reconnect (issue 21).

Before, the session core knew Thai, Lao, Myanmar and Khmer are written without spaces
and the transcript knew only Chinese and Japanese: after an endpoint a Thai utterance
was joined with a space in utterances and subtitles, and without one live.
"""

from __future__ import annotations

import json

import pytest

from soniox_widget.config import SonioxConfig
from soniox_widget.protocol import parse_reply
from soniox_widget.session import SessionCore
from soniox_widget.session.core import DeliverReply, OpenConnection
from soniox_widget.transcript import Transcript
from soniox_widget.words import is_unspaced, join_words, space_between

RAW = SonioxConfig(audio_format="pcm_s16le", sample_rate=16000, num_channels=1)

# Each case: what the service says before an endpoint, after it, and on a new connection
# after a drop (whose first token comes without a leading space, as a new session's does),
# and the utterances a person should read.
CASES = {
    "english": ([" Hello", " there", "."], [" How", " are", " you", "?"],
                ["I", " am", " fine", "."],
                ["Hello there.", "How are you? I am fine."]),
    "thai": (["สวัส", "ดี", "ครับ"], ["ยินดี", "ที่", "ได้", "รู้จัก"], ["ขอบคุณ", "ครับ"],
             ["สวัสดีครับ", "ยินดีที่ได้รู้จักขอบคุณครับ"]),
    "japanese": (["こんに", "ちは", "。"], ["元気", "です", "か", "？"], ["はい", "。"],
                 ["こんにちは。", "元気ですか？はい。"]),
    "mixed": ([" We", " use", " Python", "."], ["東京", "で", "。"], ["Then", " home", "."],
              ["We use Python.", "東京で。Then home."]),
}


def tokens(texts: list[str], start: int) -> list[dict]:
    return [{"text": t, "start_ms": start + 100 * i, "end_ms": start + 100 * i + 90,
             "is_final": True} for i, t in enumerate(texts)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_live_text_final_text_utterances_srt_and_dataframe_agree(case):
    first, second, resumed, utterances = CASES[case]
    core = SessionCore(RAW)
    core.start(0.0)
    core.connected(1, 0.0)
    core.audio(bytes(32_000 * 6), 0.1)
    delivered = []

    def take(actions):
        delivered.extend(a.reply for a in actions if isinstance(a, DeliverReply))

    take(core.message(1, json.dumps({"tokens": [
        *tokens(first, 0), {"text": "<end>", "is_final": True}]}), 0.2))
    take(core.message(1, json.dumps({"tokens": tokens(second, 2000),
                                     "final_audio_proc_ms": 2400}), 0.3))
    core.connection_closed(1, 1006, 0.4)
    opened = core.tick(core.next_deadline())
    (conn,) = [a.conn for a in opened if isinstance(a, OpenConnection)]
    core.connected(conn, 1.0)
    # The new session's clock starts at the resume point (2400 ms).
    take(core.message(conn, json.dumps({"tokens": tokens(resumed, 100)}), 1.1))

    live = "".join(t.text for r in delivered for t in r.tokens
                   if t.is_final and not t.is_special)
    transcript = Transcript()
    for r in delivered:
        transcript.apply(r)
    parts = transcript.utterance_parts()
    words = [w for _, spoken, _ in parts for w in spoken]

    assert transcript.final_text == live
    assert [u.text for u, _, _ in parts] == utterances
    assert join_words(words) == live.strip()
    assert [u.text for u, _, _ in parts] == [join_words(s) for _, s, _ in parts]
    # Subtitles may split an utterance into cues (at sentences); read back in order,
    # with a space where the rule puts one, they are the text again, nothing added.
    cues = [block.split("\n", 2)[2].replace("\n", " ")
            for block in transcript.to_srt().strip().split("\n\n")]
    read = cues[0]
    for cue in cues[1:]:
        read += (" " if space_between(read, cue) else "") + cue
    assert read == live.strip()
    pytest.importorskip("pandas")
    frame = transcript.to_dataframe(include_translation=False)
    assert list(frame["word"]) == [w.text for w in words]


def test_unspaced_scripts_and_the_space_a_reconnect_adds():
    for ch in "ทລကកあア漢。！":
        assert is_unspaced(ch), ch
    for ch in "a한Ж1":
        assert not is_unspaced(ch), ch
    assert space_between("fine.", "Then")
    assert space_between("word", "(aside")
    assert space_between("word", "¿qué")
    assert not space_between("word ", "next")
    assert not space_between("ครับ", "ขอบ") and not space_between("です", "Then")
    assert not space_between("word", ",") and not space_between("", "first")
    assert not space_between("John", "'s")  # a reconnect inside "John's"


def test_parse_reply_is_what_the_core_delivers():
    # The test above feeds the core JSON; the transcript gets the core's Reply objects.
    assert parse_reply(json.dumps({"tokens": tokens(["x"], 0)})).tokens[0].text == "x"
