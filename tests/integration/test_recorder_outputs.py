"""What the widget gives Python code: translation apart, utterances, audio as it goes.

Real sockets: the local server with the scripted engine, or a stand-in that speaks
Soniox's translation replies; recordings are pushed through the widget's own path.
"""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
from websockets.asyncio.server import ServerConnection

from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.recorder import SonioxRecorder
from tests import standin
from tests.speech import write_wav

AUDIO = bytes(range(256)) * 20


class Views:
    def __init__(self, rec: SonioxRecorder) -> None:
        self.messages: list[dict] = []
        rec.send = lambda msg, buffers=None: self.messages.append(msg)

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]


def translating_server():
    """Soniox's one-way translation: original tokens, then their translation."""
    def tok(text, status, final=True, start=None, lang="en"):
        t = {"text": text, "is_final": final, "translation_status": status, "language": lang}
        if start is not None:
            t.update(start_ms=start, end_ms=start + 300, confidence=0.9)
        return t

    async def run(ws: ServerConnection) -> None:
        await standin.read_start(ws)
        await ws.send(json.dumps({"tokens": [tok("Hello", "original", start=0),
                                             tok(" world.", "original", start=400),
                                             tok(" Bon", "translation", False, lang="fr")]}))
        await ws.send(json.dumps({"tokens": [tok("<end>", None),
                                             tok("Bonjour", "translation", lang="fr"),
                                             tok(" le monde.", "translation", lang="fr")]}))
        async for msg in ws:
            if msg in ("", b""):
                await ws.send(json.dumps({"tokens": [], "finished": True}))
                await ws.close()
                return
    return run


async def test_translation_is_kept_apart_in_traits_and_views(no_task_leaks):
    async with standin.StandIn(translating_server()) as server:
        rec = SonioxRecorder(url=server.url, translation={"type": "one_way",
                                                          "target_language": "fr"})
        views = Views(rec)
        seen = []
        rec.observe(lambda c: seen.append(c["new"]), names="nonfinal_translation_text")
        rec.feed(AUDIO)
        rec.stop()
        await rec.wait_until_idle(timeout=10)
        assert rec.final_text == "Hello world."
        assert rec.translation_text == "Bonjour le monde."
        assert " Bon" in seen and rec.nonfinal_translation_text == ""
        assert rec.transcript.translations == {"fr": "Bonjour le monde."}
        assert all(t.get("translation_status") != "translation" for t in rec.tokens)
        sent = "".join(d.get("translation", "") for d in views.of("delta"))
        assert sent == "Bonjour le monde."  # the view got it as its own line
        views.messages.clear()
        rec._handle_msg({"content": {"data": {"method": "custom", "content": {
            "type": "snapshot_request"}}}, "buffers": []})
        assert views.of("snapshot")[0]["translation"] == "Bonjour le monde."
        assert [u["text"] for u in rec.utterances] == ["Hello world."]
        assert rec.utterances[0]["translation"] == "Bonjour le monde."
        rec.close()
    await no_task_leaks()


async def test_each_utterance_fires_once(no_task_leaks):
    engine = ScriptedEngine(bytes_per_word=100, words_per_utterance=3)
    async with LocalSonioxServer(engine) as server:
        rec = SonioxRecorder(url=server.url, enable_endpoint_detection=True)
        got, trait_lengths = [], []
        rec.on_utterance(got.append)
        rec.observe(lambda c: trait_lengths.append(len(c["new"])), names="utterances")
        rec.feed(AUDIO[:1200])  # 12 words: four utterances of three
        rec.stop()
        await rec.wait_until_idle(timeout=10)
        words = engine.text_for(AUDIO[:1200]).split()
        assert [u.text for u in got] == [" ".join(words[i : i + 3]) for i in range(0, 12, 3)]
        assert [u["text"] for u in rec.utterances] == [u.text for u in got]
        assert trait_lengths == sorted(set(trait_lengths))  # only ever grows
        assert all(u.start_ms < u.end_ms for u in got)
        rec.close()
    await no_task_leaks()


async def test_on_audio_gets_bytes_and_samples_and_a_failing_callback_is_harmless(
        tmp_path, caplog, no_task_leaks):
    caplog.set_level(logging.WARNING)
    rate = 16000
    tone = (np.sin(2 * np.pi * 440 * np.arange(rate) / rate) * 0.3 * 32767).astype("<i2")
    path = tmp_path / "tone.wav"
    write_wav(path, tone.tobytes(), rate)
    async with LocalSonioxServer(ScriptedEngine(bytes_per_word=1000)) as server:
        rec = SonioxRecorder(url=server.url)
        chunks, samples = [], []
        rec.on_audio(chunks.append)
        rec.on_audio(samples.append, pcm=True)

        def broken(_):
            raise RuntimeError("analysis bug")

        rec.on_audio(broken)
        await rec.transcribe_file(path, realtime=False)
        assert b"".join(chunks) == path.read_bytes()  # every chunk, in order
        for _ in range(100):  # the decoder thread flushes after the end: bounded wait
            if sum(len(s) for s in samples) >= rate:
                break
            await asyncio.sleep(0.02)
        pcm = np.concatenate(samples)
        assert abs(len(pcm) - rate) <= 16 and pcm.dtype == np.float32
        assert rec.status == "idle" and rec.error == ""  # the broken callback harmed nothing
        reports = [r for r in caplog.records if "on_audio callback" in r.getMessage()]
        assert len(reports) == 1 and "analysis bug" in caplog.text  # once, not per chunk
        rec.on_audio(broken, remove=True)
        rec.close()
    await no_task_leaks()
