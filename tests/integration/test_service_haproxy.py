"""Both servers behind a real HAProxy on 127.0.0.1: sessions spread across replicas,
and a replica killed (SIGKILL) or drained (SIGTERM) mid-session loses no word.

The replicas are real processes (``python -m soniox_widget.local --engine scripted``,
``soniox-proxy``) started the way the README shows, with ``/readyz`` health checks. The
recorders are the package's own client (``UpstreamSession``, the code under the widget
and ``transcribe_file``): on a dropped connection or a 503 it resumes on a new
connection, which HAProxy sends to a live replica, and resends the audio whose words
were not final yet. Each transcript is compared with an uninterrupted run of the same
audio, word for word and on one clock.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from soniox_widget import SonioxConfig, Transcript, UpstreamSession
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.session import ReconnectPolicy, SessionState
from tests.haproxy import HAProxy, ServerProcess, free_port, haproxy_available

pytestmark = pytest.mark.skipif(not haproxy_available(),
                                reason="needs Debian's haproxy (scripts/setup.sh --test)")

PCM = SonioxConfig(audio_format="pcm_s16le", sample_rate=16000, num_channels=1)
MS_PER_WORD = 100
BYTES_PER_WORD = 32 * MS_PER_WORD  # words fall on 100 ms of 16 kHz s16le mono
WORDS = 90  # per recording, in three parts: before the kill, before the drain, after
ENGINE = ScriptedEngine(bytes_per_word=BYTES_PER_WORD, ms_per_word=MS_PER_WORD)
SCRIPTED = ["--engine", "scripted", "--bytes-per-word", str(BYTES_PER_WORD),
            "--ms-per-word", str(MS_PER_WORD)]
POLICY = ReconnectPolicy(base_delay=0.1, max_delay=0.5, window=30)
TOKEN = "hub-token-for-tests"


def pcm_audio(seed: int) -> bytes:
    rnd = random.Random(seed)
    return bytes(rnd.getrandbits(8) for _ in range(WORDS * BYTES_PER_WORD))


class Recorder:
    """One recording in three parts; between parts it waits at a gate the test opens
    (the audio stops meanwhile, as when a speaker pauses: keepalives hold the session)."""

    def __init__(self, url: str, audio: bytes, key: str | None = None) -> None:
        self.url = url
        self.audio = audio
        self.key = key
        self.transcript = Transcript()
        self.session: UpstreamSession | None = None
        self.at_gate = [asyncio.Event(), asyncio.Event()]

    async def run(self, gates: list[asyncio.Event]) -> None:
        third = len(self.audio) // 3 // BYTES_PER_WORD * BYTES_PER_WORD
        parts = [self.audio[:third], self.audio[third : 2 * third], self.audio[2 * third :]]
        async with UpstreamSession(PCM, url=self.url, api_key=self.key,
                                   reconnect=POLICY) as session:
            self.session = session
            reader = asyncio.ensure_future(self._read(session))
            try:
                for i, part in enumerate(parts):
                    for at in range(0, len(part), 1600):
                        session.send_audio(part[at : at + 1600])
                        await asyncio.sleep(0.005)
                    if i < len(gates):
                        self.at_gate[i].set()
                        await gates[i].wait()
                session.end()
                await reader
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, session: UpstreamSession) -> None:
        async for reply in session.replies():
            self.transcript.apply(reply)


async def uninterrupted(url: str, audio: bytes, key: str | None = None) -> Transcript:
    """The same audio in one session with no fault (the reference)."""
    recorder = Recorder(url, audio, key)
    await recorder.run([])
    return recorder.transcript


def assert_same_words_on_one_clock(got: Transcript, reference: Transcript) -> None:
    assert got.final_text == reference.final_text
    assert [t.start_ms for t in got.final_tokens] == [
        t.start_ms for t in reference.final_tokens]


async def all_set(events: list[asyncio.Event], timeout: float = 60.0) -> None:
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout)


def starts_after_drain(events: list[dict]) -> list[dict]:
    kinds = [e["event"] for e in events]
    assert "drain" in kinds, kinds
    return [e for e in events[kinds.index("drain"):] if e["event"] == "session_start"]


async def test_local_engines_behind_haproxy_survive_a_kill_and_a_drain(tmp_path,
                                                                      no_task_leaks):
    names = ["e1", "e2", "e3"]
    engines = {name: ServerProcess("soniox_widget.local",
                                   [*SCRIPTED, "--port", "0", "--drain-seconds", "1"],
                                   tmp_path / f"{name}.log") for name in names}
    try:
        await asyncio.gather(*(e.start() for e in engines.values()))
        async with HAProxy({n: e.port for n, e in engines.items()}, tmp_path) as balancer:
            await balancer.wait_status(dict.fromkeys(names, "UP"))
            url = balancer.url()
            recorders = [Recorder(url, pcm_audio(seed)) for seed in range(6)]
            gates = [asyncio.Event(), asyncio.Event()]
            runs = asyncio.gather(*(r.run(gates) for r in recorders))
            try:
                await all_set([r.at_gate[0] for r in recorders])
                # leastconn spread the six sessions over the three replicas.
                for engine in engines.values():
                    assert any(e["event"] == "session_start" for e in engine.events())
                engines["e1"].kill()
                await engines["e1"].wait()
                gates[0].set()
                await all_set([r.at_gate[1] for r in recorders])
                engines["e2"].drain()
                assert await engines["e2"].wait() == 0  # drained, then exited
                gates[1].set()
                await asyncio.wait_for(runs, 120)
            finally:
                for gate in gates:
                    gate.set()
                await asyncio.gather(runs, return_exceptions=True)
            reference = await uninterrupted(url, recorders[0].audio)
    finally:
        await asyncio.gather(*(e.stop() for e in engines.values()))

    # The killed and the drained replicas' sessions resumed elsewhere.
    assert_whole_and_resumed(recorders, reference, ENGINE, engines["e2"].events(), 3)
    await no_task_leaks()


def assert_whole_and_resumed(recorders, reference, engine: ScriptedEngine,
                             drained: list[dict], resumed: int) -> None:
    """Every session finished with the words and clock of an uninterrupted run, at least
    ``resumed`` of them on a new connection, and the drained replica (``drained``: its
    log events) took no session after its drain and ended some as drained."""
    assert_same_words_on_one_clock(recorders[0].transcript, reference)
    for recorder in recorders:
        assert recorder.session is not None
        assert recorder.session.state is SessionState.FINISHED
        assert recorder.transcript.final_text == engine.text_for(recorder.audio)
        starts = [t.start_ms for t in recorder.transcript.final_tokens]
        assert starts == [i * MS_PER_WORD + 40 for i in range(WORDS)]
    assert sum(r.session.connections for r in recorders) >= len(recorders) + resumed
    assert starts_after_drain(drained) == []  # no new session on a draining replica
    assert {e["reason"] for e in drained if e["event"] == "session_end"} >= {"drained"}


async def test_proxies_behind_haproxy_survive_a_kill_and_a_drain(tmp_path, no_task_leaks):
    engine = ScriptedEngine(bytes_per_word=BYTES_PER_WORD, ms_per_word=MS_PER_WORD)
    async with LocalSonioxServer(engine) as upstream:  # the stand-in for Soniox
        env = {**os.environ, "SONIOX_WS_URL": upstream.url, "SONIOX_API_KEY": ""}
        ports = {"p1": free_port(), "p2": free_port()}

        def proxy(name: str) -> ServerProcess:
            return ServerProcess("soniox_widget.proxy",
                                 ["--port", str(ports[name]), "--token", TOKEN,
                                  "--drain-seconds", "1"], tmp_path / f"{name}.log", env)

        proxies = {name: proxy(name) for name in ports}
        replacement: ServerProcess | None = None
        try:
            await asyncio.gather(*(p.start() for p in proxies.values()))
            async with HAProxy(ports, tmp_path) as balancer:
                await balancer.wait_status({"p1": "UP", "p2": "UP"})
                url = balancer.url()
                recorders = [Recorder(url, pcm_audio(seed), TOKEN) for seed in range(4)]
                gates = [asyncio.Event(), asyncio.Event()]
                runs = asyncio.gather(*(r.run(gates) for r in recorders))
                try:
                    await all_set([r.at_gate[0] for r in recorders])
                    for p in proxies.values():
                        assert any(e["event"] == "session_start" for e in p.events())
                    proxies["p1"].kill()
                    await proxies["p1"].wait()
                    # A rolling restart: p1 comes back on its port before p2 drains.
                    replacement = await proxy("p1").start()
                    await balancer.wait_status({"p1": "UP"})
                    gates[0].set()
                    await all_set([r.at_gate[1] for r in recorders])
                    proxies["p2"].drain()
                    assert await proxies["p2"].wait() == 0
                    gates[1].set()
                    await asyncio.wait_for(runs, 120)
                finally:
                    for gate in gates:
                        gate.set()
                    await asyncio.gather(runs, return_exceptions=True)
                reference = await uninterrupted(url, recorders[0].audio, TOKEN)
        finally:
            stopping = [p.stop() for p in proxies.values()]
            if replacement is not None:
                stopping.append(replacement.stop())
            await asyncio.gather(*stopping)

    assert_whole_and_resumed(recorders, reference, engine, proxies["p2"].events(), 2)
    # The key the recorders used (the proxy's token) is in no log line.
    for p in [*proxies.values(), replacement]:
        assert p is not None and TOKEN not in p.log.read_text()
    await no_task_leaks()
