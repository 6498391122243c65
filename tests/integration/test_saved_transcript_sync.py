"""The saved transcript and the chosen input, as the browser and the kernel exchange them.

Contract (marimo re-runs cells reading ``mo.ui.anywidget(rec).value`` only on changes
that come from the browser): when a recording ends the kernel sets ``saved_transcript``
before the status, and the view that drove the recording sets the same value again
from the browser. These tests drive the widget's comm entry point (``_handle_msg``) with
real message shapes and watch what the comm sends back to the views.
"""

from __future__ import annotations

import pytest

from soniox_widget.recorder import SonioxRecorder
from tests.integration.test_recorder import AUDIO, msg, record


class Wire:
    """Everything the widget's comm sends to the browser, in order."""

    def __init__(self, rec: SonioxRecorder) -> None:
        self.sent: list[dict] = []
        rec.comm.send = lambda data=None, metadata=None, buffers=None: self.sent.append(data)

    def updates(self, method: str = "update") -> list[dict]:
        return [m["state"] for m in self.sent if m.get("method") == method]


def browser_update(rec: SonioxRecorder, **state) -> None:
    """A trait change made in the browser (model.set + save_changes), as the comm delivers it."""
    rec._handle_msg({"content": {"data": {"method": "update", "state": state,
                                          "buffer_paths": []}}, "buffers": []})


@pytest.fixture
def recorder(local_server):
    rec = SonioxRecorder(url=local_server.url)
    yield rec
    rec.close()


async def test_the_saved_transcript_reaches_the_views_before_the_idle_status(recorder, engine):
    wire = Wire(recorder)
    record(recorder, AUDIO)
    await recorder.wait_until_idle(timeout=10)
    expected = engine.text_for(AUDIO)
    assert recorder.saved_transcript["text"] == recorder.final_text == expected
    updates = wire.updates()
    saved_at = next(i for i, u in enumerate(updates) if "saved_transcript" in u)
    idle_at = max(i for i, u in enumerate(updates) if u.get("status") == "idle")
    assert saved_at < idle_at
    assert updates[saved_at]["saved_transcript"]["text"] == expected


async def test_the_views_copy_changes_nothing_and_sends_nothing_back(recorder, engine):
    record(recorder, AUDIO)
    await recorder.wait_until_idle(timeout=10)
    saved = dict(recorder.saved_transcript)
    wire = Wire(recorder)
    changes = []
    recorder.observe(changes.append, names="saved_transcript")
    browser_update(recorder, saved_transcript=saved)
    assert recorder.saved_transcript == saved
    assert changes == []  # no observer fires: nothing to echo, no loop
    assert wire.updates() == []  # the kernel does not send it back as a change


async def test_a_new_recording_keeps_the_last_finished_one_until_it_ends(recorder, engine):
    record(recorder, AUDIO, session="s1")
    await recorder.wait_until_idle(timeout=10)
    first = dict(recorder.saved_transcript)
    other = AUDIO[:1200]
    msg(recorder, {"type": "start", "session": "s2", "view": "v1", "mime_type": "audio/webm"})
    # The view's copy of the first recording arrives while the second is running.
    browser_update(recorder, saved_transcript=first)
    assert recorder.saved_transcript == first and recorder.final_text == ""
    msg(recorder, {"type": "chunk", "session": "s2", "seq": 0}, [other])
    msg(recorder, {"type": "stop", "session": "s2", "chunks": 1})
    await recorder.wait_until_idle(timeout=10)
    assert recorder.saved_transcript["text"] == engine.text_for(other) == recorder.final_text


async def test_a_view_cannot_inflate_the_saved_notebook(recorder):
    from soniox_widget.view_messages import SAVED_TEXT_LIMIT

    huge = {"segments": [{"text": "x" * (SAVED_TEXT_LIMIT + 500)}], "translation": ""}
    browser_update(recorder, saved_transcript=huge)
    assert len(recorder.saved_transcript["text"]) == SAVED_TEXT_LIMIT
    assert recorder.saved_transcript["truncated"] is True


async def test_the_input_chosen_in_a_view_is_readable_from_python(recorder):
    assert (recorder.device, recorder.device_id) == ("", "")
    browser_update(recorder, device="USB Headset", device_id="abc123")
    assert (recorder.device, recorder.device_id) == ("USB Headset", "abc123")
    browser_update(recorder, device="", device_id="")
    assert recorder.device == ""
