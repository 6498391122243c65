"""The fault table: every fault, through every front door, has one expected outcome.

Front doors: ``transcribe_file`` (via ``transcribe_file_async``), the widget's comm
path (a view's start/chunk/stop messages), and the standalone proxy (a WebSocket
client). Faults: the connection cut by a relay mid-stream; the service answering
503, 500 or 408 (restart the request) or 400, 401, 402, 429 (a retry cannot fix it);
the service sending garbage. For each pair the outcome is checked: the transcript
continues (no error, every word of both halves) or a clear error says which code;
how many upstream sessions were opened; that the kept audio is whole; and that no
task is left over. Real sockets on 127.0.0.1, the project's own local server.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from soniox_widget import SonioxConfig, SonioxError, transcribe_file_async
from soniox_widget.backend import choose_backend
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.protocol import parse_reply
from soniox_widget.proxy import ProxyServer
from soniox_widget.recorder import SonioxRecorder
from soniox_widget.session import ReconnectPolicy
from soniox_widget.transcript import Transcript
from tests import standin
from tests.faults import FaultyRelay
from tests.speech import write_wav

WORDS = 40
BYTES_PER_WORD = 3200            # 100 ms of 16 kHz s16 mono
PCM = SonioxConfig(audio_format="pcm_s16le", sample_rate=16000, num_channels=1)
FAST = ReconnectPolicy(base_delay=0.02, max_delay=0.1, window=10)
CUT_AFTER = WORDS * BYTES_PER_WORD // 2


@dataclass(frozen=True)
class Fault:
    name: str
    continues: bool            # True: one transcript; False: a clear error
    code: int | None = None    # the error code the service sends (None: a network cut)


FAULTS = [
    Fault("cut", True),
    Fault("503", True, 503),
    Fault("500", True, 500),
    Fault("408", True, 408),
    Fault("400", False, 400),
    Fault("401", False, 401),
    Fault("402", False, 402),
    Fault("429", False, 429),
    Fault("garbage", False),
]
DOORS = ["transcribe_file", "widget", "proxy"]


def speechless_pcm() -> bytes:
    # Random (so the connection's compression cannot shrink it and the relay's byte
    # count means audio) and fixed (so every run names the same words).
    return random.Random(5).randbytes(WORDS * BYTES_PER_WORD)


@pytest.fixture
def wav_file(tmp_path) -> Path:
    path = tmp_path / "audio.wav"
    write_wav(path, speechless_pcm(), 16000)
    return path


@dataclass
class Outcome:
    text: str = ""
    error: SonioxError | str | None = None
    sessions: int = 0
    kept: int | None = None      # audio bytes the front door kept (the widget)


async def through_transcribe_file(url: str, wav: Path) -> Outcome:
    out = Outcome()
    try:
        t = await transcribe_file_async(wav, url=url, realtime=False, reconnect=FAST)
        out.text = t.final_text
    except SonioxError as exc:
        out.error = exc
    return out


async def through_widget(url: str, wav: Path) -> Outcome:
    rec = SonioxRecorder(url=url, reconnect=FAST)
    data = await asyncio.to_thread(wav.read_bytes)
    comm = rec._handle_msg  # the comm's entry point: messages of the real shape

    def send(content, buffers=()):
        comm({"content": {"data": {"method": "custom", "content": content}},
              "buffers": [memoryview(b) for b in buffers]})

    send({"type": "start", "session": "s", "view": "v", "mime_type": "audio/wav"})
    step = 1600
    for seq, i in enumerate(range(0, len(data), step)):
        if not rec.is_busy:
            break  # failed: the kernel told the view to stop
        send({"type": "chunk", "session": "s", "seq": seq}, [data[i : i + step]])
        await asyncio.sleep(0.001)
    if rec.is_busy:
        send({"type": "stop", "session": "s", "chunks": -(-len(data) // step)})
    out = Outcome()
    try:
        await rec.wait_until_idle(timeout=30)
    except SonioxError as exc:
        out.error = exc
        assert rec.status == "error" and rec.error
    else:
        assert rec.status == "idle" and rec.error == ""
    out.text = rec.final_text
    out.kept = len(rec.last_audio)
    rec.close()
    return out


async def through_proxy(url: str, wav: Path) -> Outcome:
    audio = speechless_pcm()
    out = Outcome()
    t = Transcript()
    async with ProxyServer(choose_backend(url=url), PCM, port=0) as proxy, \
            connect(proxy.ws_url) as ws:
        async def feed():
            try:
                for i in range(0, len(audio), 1600):
                    await ws.send(audio[i : i + 1600])
                    await asyncio.sleep(0.001)
                await ws.send(b"")
            except Exception:  # the proxy ended the session: the reader says why
                pass

        feeder = asyncio.create_task(feed())
        async for message in ws:
            data = json.loads(message)
            if "error_code" in data:
                out.error = f"{data['error_code']}: {data['error_message']}"
                break
            t.apply(parse_reply(data))
        await feeder
    out.text = t.final_text
    return out


RUN = {"transcribe_file": through_transcribe_file, "widget": through_widget,
       "proxy": through_proxy}


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_fault_table(door, fault, wav_file, no_task_leaks):
    engine = ScriptedEngine(
        bytes_per_word=BYTES_PER_WORD, ms_per_word=100,
        fail_after_bytes=CUT_AFTER if fault.code else None, fail_code=fault.code or 503,
        fail_message=f"scripted failure {fault.code}")
    if fault.name == "garbage":
        async with standin.StandIn(standin.answers_garbage()) as server:
            out = await RUN[door](server.url, wav_file)
            out.sessions = server.connections
    else:
        async with LocalSonioxServer(engine) as server, FaultyRelay(server.port) as relay:
            if fault.name == "cut":
                relay.drop_after(CUT_AFTER)
            out = await RUN[door](relay.url(), wav_file)
            out.sessions = len(server.sessions)
            assert relay.drops == (1 if fault.name == "cut" else 0)

    if fault.continues:
        assert out.error is None, out.error
        # Every word of both halves (a container is resumed as PCM; the wav header
        # shifts the first session's word blocks, so count words, not compare text).
        assert len(out.text.split()) >= WORDS - 2, out.text
        # A cut: one reconnect. A restart code: the scripted service fails every
        # session after the same amount of audio, so a few (bounded) restarts.
        assert 2 <= out.sessions <= (2 if fault.name == "cut" else 5)
    else:
        assert out.error is not None
        if fault.code is not None:
            assert str(fault.code) in str(out.error)
        assert out.sessions == 1  # no retry, no new session
    if out.kept is not None:
        assert out.kept == wav_file.stat().st_size or not fault.continues
    await no_task_leaks()
