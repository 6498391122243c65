"""SonioxRecorder's kernel side: front-end messages in, traits and view messages out.

The front end is replaced by comm messages of the real shape, handed to the widget's
comm entry point (``_handle_msg``, what ipywidgets calls for every message from a
view); the upstream is a real local server on 127.0.0.1. The browser itself is
exercised in tests/e2e.
"""

import asyncio
import json
import logging
import socket

import pytest

from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.recorder import SonioxRecorder
from tests.speech import write_wav

AUDIO = bytes(range(256)) * 20


class Views:
    """Collects what the kernel sends to the views (the widget's custom messages)."""

    def __init__(self, rec: SonioxRecorder) -> None:
        self.messages: list[dict] = []
        rec.send = lambda msg, buffers=None: self.messages.append(msg)

    def of(self, kind):
        return [m for m in self.messages if m["type"] == kind]


def msg(rec, content, buffers=()):
    """One custom message from a view, as the comm delivers it."""
    rec._handle_msg({"content": {"data": {"method": "custom", "content": content}},
                     "buffers": [memoryview(bytes(b)) for b in buffers]})


def record(rec, audio, session="s1", view="v1", step=250, order=None):
    msg(rec, {"type": "start", "session": session, "view": view, "mime_type": "audio/webm"})
    chunks = [audio[i : i + step] for i in range(0, len(audio), step)]
    for seq in order or range(len(chunks)):
        msg(rec, {"type": "chunk", "session": session, "seq": seq}, [memoryview(chunks[seq])])
    msg(rec, {"type": "stop", "session": session, "chunks": len(chunks)})


@pytest.fixture
def recorder(local_server):
    rec = SonioxRecorder(url=local_server.url)
    yield rec
    rec.close()


async def test_recording_flows_to_traits_and_views(recorder, local_server, engine,
                                                   no_task_leaks):
    views = Views(recorder)
    statuses, finals = [], []
    recorder.observe(lambda c: statuses.append(c["new"]), names="status")
    recorder.observe(lambda c: finals.append(c["new"]), names="final_text")
    record(recorder, AUDIO)
    transcript = await recorder.wait_until_idle(timeout=10)
    expected = engine.text_for(AUDIO)
    assert recorder.final_text == transcript.final_text == expected
    assert finals[-1] == expected and len(finals) > 1  # it grew live
    assert statuses[0] == "connecting" and statuses[-1] == "idle"
    assert "finishing" in statuses
    assert local_server.sessions[0].audio_bytes == len(AUDIO)
    assert bytes(local_server.sessions[0].audio) == AUDIO
    assert [t["text"].strip() for t in recorder.tokens] == expected.split()
    assert recorder.tokens[0].keys() >= {"text", "start_ms", "end_ms", "confidence", "speaker"}
    # The views got the text as deltas that chain by revision.
    deltas = views.of("delta")
    assert "".join(s["text"] for d in deltas for s in d["final"]) == expected
    assert all(d["base_rev"] + 1 == d["rev"] for d in deltas)
    assert recorder.active_view == "" and recorder.error == ""
    await no_task_leaks()


async def test_out_of_order_chunks_are_put_back_in_order(recorder, local_server, caplog):
    caplog.set_level(logging.WARNING)
    record(recorder, AUDIO, order=[1, 0, 2, 4, 3, *range(5, len(AUDIO) // 250 + 1)])
    await recorder.wait_until_idle(timeout=10)
    assert bytes(local_server.sessions[0].audio) == AUDIO
    assert "holding it" in caplog.text


async def test_malformed_messages_are_logged_and_never_crash(recorder, local_server, engine,
                                                             caplog):
    caplog.set_level(logging.WARNING)
    msg(recorder, {"type": "start", "session": "s1", "view": "v1"})
    msg(recorder, {"type": "chunk", "session": "s1", "seq": 0}, [AUDIO[:300]])
    msg(recorder, {"type": "what"})                                    # unknown type
    msg(recorder, {"type": "chunk", "session": "s1", "seq": 1})        # missing buffer
    msg(recorder, {"type": "chunk", "session": "s1", "seq": 0}, [b"dup"])  # duplicate
    msg(recorder, {"type": "chunk", "session": "s1", "seq": "x"}, [b"x"])  # bad seq
    msg(recorder, {"type": "chunk", "session": "other", "seq": 1}, [b"x"])  # stray session
    msg(recorder, ["not", "a", "dict"])
    msg(recorder, {"type": "chunk", "session": "s1", "seq": 1}, [AUDIO[300:600]])
    msg(recorder, {"type": "stop", "session": "s1", "chunks": 2})
    await recorder.wait_until_idle(timeout=10)
    for text in ("unknown message type", "no binary buffer", "twice or out of order",
                 "valid seq", "not recording", "expected a JSON object"):
        assert text in caplog.text
    assert bytes(local_server.sessions[0].audio) == AUDIO[:600]
    assert recorder.final_text == engine.text_for(AUDIO[:600])


async def test_second_view_is_rejected_while_one_records(recorder):
    views = Views(recorder)
    msg(recorder, {"type": "start", "session": "s1", "view": "v1"})
    msg(recorder, {"type": "start", "session": "s2", "view": "v2"})
    assert views.of("rejected")[0]["view"] == "v2"
    assert recorder.active_view == "v1"
    msg(recorder, {"type": "stop", "session": "s1", "chunks": 0})
    await recorder.wait_until_idle(timeout=10)


async def test_snapshot_for_a_new_view(recorder):
    views = Views(recorder)
    record(recorder, AUDIO)
    await recorder.wait_until_idle(timeout=10)
    msg(recorder, {"type": "snapshot_request"})
    snap = views.of("snapshot")[-1]
    assert "".join(s["text"] for s in snap["segments"]) == recorder.final_text
    assert snap["rev"] == views.of("delta")[-1]["rev"]


async def test_unreachable_upstream_sets_error_and_can_record_again(engine, no_task_leaks):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = SonioxRecorder(url=f"ws://127.0.0.1:{port}/transcribe-websocket")
    views = Views(rec)
    record(rec, AUDIO[:500])
    with pytest.raises(Exception, match="cannot connect"):
        await rec.wait_until_idle(timeout=10)
    assert rec.status == "error" and "Cannot reach" in rec.error
    assert views.of("stop_request")  # the browser is told to release the microphone
    assert rec.audio_stats["connections"] == 1  # a refused first connect is not retried
    # The service comes up; the next click works.
    async with LocalSonioxServer(engine, port=port) as server:
        record(rec, AUDIO, session="s2")
        await rec.wait_until_idle(timeout=10)
        assert rec.status == "idle" and rec.error == ""
        assert rec.final_text == engine.text_for(AUDIO)
        assert len(server.sessions) == 1
        rec.close()
    await no_task_leaks()


async def test_microphone_denied_abort(recorder, local_server, no_task_leaks):
    msg(recorder, {"type": "start", "session": "s1", "view": "v1"})
    await asyncio.sleep(0.05)
    msg(recorder, {"type": "abort", "session": "s1", "kind": "mic-denied",
                   "message": "Microphone permission was denied."})
    with pytest.raises(Exception, match="denied"):
        await recorder.wait_until_idle(timeout=5)
    assert recorder.status == "error" and "denied" in recorder.error
    assert recorder.active_view == ""
    await no_task_leaks()


async def test_upstream_error_mid_stream(no_task_leaks):
    engine = ScriptedEngine(bytes_per_word=100, fail_after_bytes=1000)
    async with LocalSonioxServer(engine) as server:
        rec = SonioxRecorder(url=server.url)
        record(rec, AUDIO)
        with pytest.raises(Exception, match="503"):
            await rec.wait_until_idle(timeout=10)
        assert rec.status == "error" and "503" in rec.error
        rec.close()
    await no_task_leaks()


async def test_feed_and_stop_from_python(recorder, local_server, engine):
    for i in range(0, len(AUDIO), 512):
        recorder.feed(AUDIO[i : i + 512])
    recorder.finalize()
    recorder.stop()
    t = await recorder.wait_until_idle(timeout=10)
    assert t.final_text == engine.text_for(AUDIO)
    assert [e.kind for e in t.events] == ["finalized"]


async def test_transcribe_file_through_the_widget(recorder, local_server, engine, tmp_path):
    path = tmp_path / "audio.wav"
    write_wav(path, AUDIO, 16000)
    original = path.read_bytes()
    with pytest.raises(Exception, match="no audio recorded yet"):
        recorder.save_audio(tmp_path / "none.wav")
    t = await recorder.transcribe_file(path, realtime=False)
    assert t.final_text == engine.text_for(original) == recorder.final_text
    assert local_server.sessions[0].audio_bytes == len(original)
    # Its own container keeps the bytes exactly as transcribed; others are transcoded.
    assert recorder.save_audio(tmp_path / "kept.wav").read_bytes() == original
    assert recorder.save_audio(tmp_path / "kept.flac").stat().st_size > 0
    samples = recorder.audio_array()
    assert samples.dtype.name == "float32" and len(samples) == len(AUDIO) // 2
    assert abs(len(recorder.audio_array(8000)) - len(AUDIO) // 4) <= 1
    with pytest.raises(ValueError, match=r"\.wav"):
        recorder.save_audio(tmp_path / "kept.xyz")
    assert recorder.audio_stats["bytes"] == recorder.audio_stats["bytes_sent_upstream"]


async def test_close_mid_recording_leaves_nothing(local_server, no_task_leaks):
    rec = SonioxRecorder(url=local_server.url)
    msg(rec, {"type": "start", "session": "s1", "view": "v1"})
    msg(rec, {"type": "chunk", "session": "s1", "seq": 0}, [AUDIO[:300]])
    await asyncio.sleep(0.05)
    rec.close()
    await asyncio.wait_for(local_server.sessions[0].done.wait(), 5)
    await no_task_leaks()


def test_key_never_in_widget_state_or_repr(local_server):
    secret = "sk-super-secret-123456"
    rec = SonioxRecorder(url=local_server.url, api_key=secret)
    state = json.dumps(rec.get_state(), default=str)
    assert secret not in state and secret not in repr(rec)
    assert not any("key" in name for name in rec.keys)
    rec.close()


def test_repr_names_the_saved_transcript_when_no_recording_ran_yet(local_server):
    rec = SonioxRecorder(url=local_server.url)
    # What a front end restoring a saved notebook's widget state sends.
    rec.set_state({"saved_transcript": {"segments": [{"text": "kept from last time"}]}})
    assert "kept from last time" in repr(rec)
    rec.close()


def test_bad_options_fail_at_construction():
    with pytest.raises(Exception, match="unknown option"):
        SonioxRecorder(url="ws://127.0.0.1:9/x", langage_hints=["en"])


async def test_bytes_per_update_do_not_grow_with_the_transcript(no_task_leaks):
    """A long session: the 3000th update costs what the 10th did (deltas, not snapshots)."""
    engine = ScriptedEngine(bytes_per_word=10)
    async with LocalSonioxServer(engine) as server:
        rec = SonioxRecorder(url=server.url)
        views = Views(rec)
        audio = bytes(range(256)) * 120  # 3072 words
        record(rec, audio, step=10)
        await rec.wait_until_idle(timeout=60)
        sizes = [len(json.dumps(m)) for m in views.of("delta")]
        assert len(rec.final_text) >= 15000 and len(sizes) > 1000
        # Same shape late as early; only the digits of rev and base_rev grow.
        assert max(sizes[-100:-1]) <= max(sizes[10:110]) + 8
        msg(rec, {"type": "snapshot_request"})
        assert len(json.dumps(views.messages[-1])) > 15000  # a snapshot is whole, once
        rec.close()
    await no_task_leaks()


async def test_comm_messages_from_another_thread_run_on_the_widget_loop(recorder, engine,
                                                                       local_server):
    """ipykernel 7 may deliver comm messages on a subshell thread: they must be handed to
    the loop the widget was made on, in order, with their buffers copied."""
    import threading

    loop = asyncio.get_running_loop()
    handled_on = []
    original = recorder._on_front_end_message

    def spy(content, buffers):
        handled_on.append(asyncio.get_running_loop() is loop)
        original(content, buffers)

    recorder._on_front_end_message = spy
    chunks = [AUDIO[i : i + 250] for i in range(0, len(AUDIO), 250)]

    def comm(content, buffers=()):
        recorder._handle_msg({"content": {"data": {"method": "custom", "content": content}},
                              "buffers": list(buffers)})

    def subshell():
        comm({"type": "start", "session": "t", "view": "v"})
        for seq, chunk in enumerate(chunks):
            buf = bytearray(chunk)
            comm({"type": "chunk", "session": "t", "seq": seq}, [memoryview(buf)])
            buf[:] = b"\0" * len(buf)  # the kernel reusing its buffer must not matter
        comm({"type": "stop", "session": "t", "chunks": len(chunks)})

    thread = threading.Thread(target=subshell)
    thread.start()
    await asyncio.to_thread(thread.join, 10)
    await asyncio.sleep(0.1)
    await recorder.wait_until_idle(timeout=10)
    assert handled_on and all(handled_on)
    assert bytes(local_server.sessions[0].audio) == AUDIO
    assert recorder.final_text == engine.text_for(AUDIO)


async def test_no_key_and_soniox_asked_for_shows_what_to_do():
    rec = SonioxRecorder(engine="soniox")
    views = Views(rec)
    assert rec.status == "error" and "SONIOX_API_KEY" in rec.error
    assert rec.engine_label == "no engine"
    msg(rec, {"type": "start", "session": "s1", "view": "v1"})
    rejected = views.of("rejected")
    assert rejected and "SONIOX_API_KEY" in rejected[0]["reason"]
    assert rec.active_view == "" and not rec.is_busy
    with pytest.raises(Exception, match="SONIOX_API_KEY"):
        rec.feed(b"audio")
    rec.close()


async def test_closing_at_once_after_the_first_chunk_ends_everything(local_server,
                                                                     no_task_leaks):
    """Regression: a recording closed before its task ever ran left the widget busy."""
    rec = SonioxRecorder(url=local_server.url)
    rec.feed(AUDIO)
    rec.close()  # same cell, before the loop ran anything
    with pytest.raises(Exception, match="closed"):
        await rec.wait_until_idle(timeout=5)
    assert not rec.is_busy
    await no_task_leaks()


async def test_start_then_abort_at_once_frees_the_recorder(recorder, local_server):
    """A browser that remembers 'microphone denied' aborts right after its start."""
    msg(recorder, {"type": "start", "session": "s1", "view": "v1"})
    msg(recorder, {"type": "abort", "session": "s1", "kind": "mic-denied",
                   "message": "Microphone permission was denied."})
    with pytest.raises(Exception, match="denied"):
        await recorder.wait_until_idle(timeout=5)
    assert recorder.status == "error" and not recorder.is_busy
    record(recorder, AUDIO, session="s2", view="v1")  # the next click records
    await recorder.wait_until_idle(timeout=10)
    assert recorder.status == "idle"


async def test_an_observer_that_raises_does_not_end_the_recording(recorder, engine, caplog):
    calls = []

    def flaky(change):
        calls.append(change["new"])
        if len(calls) == 1:
            raise KeyError("oops")

    recorder.observe(flaky, names="final_text")
    record(recorder, AUDIO)
    await recorder.wait_until_idle(timeout=10)
    assert recorder.status == "idle" and recorder.final_text == engine.text_for(AUDIO)
    assert len(calls) > 1 and "observing the transcript failed" in caplog.text


async def test_controls_called_from_another_thread_run_on_the_widget_loop(recorder, engine):
    """A button callback on a subshell thread calls rec.stop(): handed to the loop."""
    import threading

    recorder.feed(AUDIO)
    thread = threading.Thread(target=recorder.stop)
    thread.start()
    await asyncio.to_thread(thread.join, 5)
    await recorder.wait_until_idle(timeout=3)  # promptly, not at the next timer
    assert recorder.status == "idle" and recorder.final_text == engine.text_for(AUDIO)


async def test_a_view_that_can_never_record_says_why_in_rec_error(recorder, local_server):
    advice = ("This page is not a secure context, so the browser offers no microphone: "
              "open this notebook over https or on localhost.")
    msg(recorder, {"type": "unavailable", "kind": "insecure-context", "message": advice})
    assert recorder.error == advice and recorder.status == "idle"  # Python can still record
    recorder.feed(AUDIO)
    recorder.stop()
    await recorder.wait_until_idle(timeout=10)
    assert recorder.error == "" and recorder.final_text  # a recording clears it
