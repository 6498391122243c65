"""A producer that can wait waits while the service is not taking audio (issue 22.4).

Before, 18 MB pushed into a stalled upstream grew memory by 38 MB, and after the
reconnect only the last 60 s were resent: everything before was never transcribed.
"""

from __future__ import annotations

import asyncio

from soniox_widget import SonioxRecorder, Transcript, UpstreamSession
from soniox_widget.local import LocalSonioxServer, ScriptedEngine
from soniox_widget.session import ReconnectPolicy
from tests.faults import FaultyRelay
from tests.integration.test_reconnect import (
    BYTES_PER_WORD,
    FAST,
    MS_PER_WORD,
    PCM,
    assert_continuous,
    pcm_audio,
)

STEP = 1600  # 50 ms of 16 kHz s16le
#: Keeps trying through an outage of a second or so.
PATIENT = ReconnectPolicy(max_attempts=30, base_delay=0.05, max_delay=0.1, window=10)


async def wait_until(predicate, limit: float = 10.0) -> None:
    for _ in range(round(limit / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never came true")


async def test_write_audio_waits_while_the_service_is_away_and_loses_nothing(no_task_leaks):
    engine = ScriptedEngine(bytes_per_word=BYTES_PER_WORD, ms_per_word=MS_PER_WORD)
    audio = pcm_audio(80)  # 160 chunks
    async with LocalSonioxServer(engine) as server, FaultyRelay(server.port) as relay:
        async with UpstreamSession(PCM, url=relay.url(), reconnect=PATIENT) as session:
            transcript = Transcript()
            sent = 0

            async def produce() -> None:
                nonlocal sent
                for i in range(0, len(audio), STEP):
                    await session.write_audio(audio[i:i + STEP])
                    sent = i + STEP
                    await asyncio.sleep(0.01)  # a source that takes its time
                session.end()

            async def read() -> None:
                async for reply in session.replies():
                    transcript.apply(reply)

            reader = asyncio.create_task(read())
            producer = asyncio.create_task(produce())
            await wait_until(lambda: sent >= len(audio) // 3)
            relay.refuse_new()       # the service goes away ...
            await relay.drop()
            await wait_until(lambda: session.state.value == "reconnecting")
            at_drop = session.bytes_queued
            await asyncio.sleep(0.5)  # ... for a while: the producer must be waiting
            assert session.bytes_queued - at_drop <= STEP, "audio piled up while away"
            assert not producer.done()
            relay.refuse_new(False)  # ... and comes back
            await asyncio.wait_for(producer, 20)
            await asyncio.wait_for(reader, 20)
    assert relay.refused >= 1 and session.connections >= 2
    assert transcript.final_text == engine.text_for(audio)
    assert_continuous(transcript)
    await no_task_leaks()


async def test_write_audio_waits_on_a_stalled_connection():
    """The service stops reading: once the sockets' buffers are full the producer
    waits, instead of the queue growing with everything it has."""
    engine = ScriptedEngine(bytes_per_word=BYTES_PER_WORD, ms_per_word=MS_PER_WORD)
    chunk = bytes(64 * 1024)
    total = 64 * 1024 * 1024  # far more than any socket buffer holds
    async with LocalSonioxServer(engine) as server, FaultyRelay(server.port) as relay:
        async with UpstreamSession(PCM, url=relay.url(), reconnect=FAST) as session:
            await session.wait_connected()
            relay.stall()
            fed = 0

            async def produce() -> None:
                nonlocal fed
                while fed < total:
                    await session.write_audio(chunk)
                    fed += len(chunk)

            producer = asyncio.create_task(produce())
            before = -1
            for _ in range(100):  # until the producer has stopped moving (bounded)
                await asyncio.sleep(0.1)
                if fed == before:
                    break
                before = fed
            held = fed
            await asyncio.sleep(0.3)
            assert fed == held and not producer.done(), "the producer never waited"
            assert fed < total // 4
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)


async def test_feed_async_on_the_recorder_waits_while_the_service_is_away():
    engine = ScriptedEngine(bytes_per_word=BYTES_PER_WORD, ms_per_word=MS_PER_WORD)
    audio = pcm_audio(60)
    async with LocalSonioxServer(engine) as server, FaultyRelay(server.port) as relay:
        rec = SonioxRecorder(url=relay.url(), reconnect=PATIENT)
        try:
            fed = 0

            async def produce() -> None:
                nonlocal fed
                for i in range(0, len(audio), STEP):
                    await rec.feed_async(audio[i:i + STEP], audio_format="pcm_s16le",
                                         sample_rate=16000, num_channels=1)
                    fed = i + STEP
                    await asyncio.sleep(0.01)
                rec.stop()

            producer = asyncio.create_task(produce())
            await wait_until(lambda: fed >= len(audio) // 3)
            relay.refuse_new()
            await relay.drop()
            await wait_until(lambda: rec.status == "reconnecting")
            at_drop = fed
            await asyncio.sleep(0.5)
            assert fed - at_drop <= STEP and not producer.done()
            relay.refuse_new(False)
            await asyncio.wait_for(producer, 20)
            await rec.wait_until_idle(timeout=20)
        finally:
            rec.close()
    assert rec.final_text == engine.text_for(audio)
