"""The offline engine's live policy on people speaking, without the clock: fast, nearly repeatable.

    .venv/bin/python benchmarks/lockstep.py                       # every clip
    .venv/bin/python benchmarks/lockstep.py jfk_ask_not sonnet1_reading
    .venv/bin/python benchmarks/lockstep.py --set settle_s=1.0 --set beam_size=2

Each clip is encoded as 48 kHz webm/opus (as Chromium's MediaRecorder does), decoded back
to 16 kHz samples, and handed to a :class:`WhisperStream` one step at a time: every step
waits for the one before to finish, so the stream decodes exactly the steps a live stream
that keeps up decodes, whatever else the machine is doing. What it cannot show is a stream
that falls behind (``bench_engine.py`` measures that, at real-time pace over a socket).
A clip run alone gives the same text every time; in a run of all clips one clip once came
out differently (a different word probability, amplified by the policy), so read single
differences of a word or two as noise.

Prints, per clip: WER of the whole-file decode and of the live final text against what was
said (or against the file decode where nothing is known), word triples in surplus, and the
final latency in audio time (how much audio had been given to the stream when each word
became final, after the word's end: the policy's own delay, without decode time).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soniox_widget import SonioxConfig, Transcript  # noqa: E402
from soniox_widget.audio import decode_bytes  # noqa: E402
from soniox_widget.local.agreement import TrimPolicy  # noqa: E402
from soniox_widget.local.engine import EngineUpdate  # noqa: E402
from soniox_widget.local.whisper_engine import WhisperEngine, WhisperSettings  # noqa: E402
from soniox_widget.protocol import Reply  # noqa: E402
from tests import human_speech, speech  # noqa: E402


@dataclasses.dataclass
class Result:
    text: str
    wer: float
    file_wer: float
    repeats: int
    final_delay: list[float]
    decode_s: float
    decodes: int


async def run_clip(engine: WhisperEngine, samples: np.ndarray) -> tuple[Transcript,
                                                                        list[float]]:
    """The stream fed one step at a time; the transcript and each final word's delay."""
    config = SonioxConfig(audio_format="pcm_s16le", sample_rate=16000, num_channels=1,
                          enable_endpoint_detection=True)
    stream = engine.open_stream(config)
    step = round(engine.settings.step_s * 16000)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    fed = [0.0]
    delays: list[float] = []
    t = Transcript()

    async def consume() -> None:
        async for update in stream.updates():
            reply = as_reply(update)
            for tok in reply.tokens:
                if tok.is_final and tok.end_ms is not None and not tok.is_special:
                    delays.append(max(0.0, fed[0] - tok.end_ms / 1000))
            t.apply(reply)

    consumer = asyncio.create_task(consume())
    try:
        for i in range(0, len(pcm), 2 * step):
            await stream.push_audio(pcm[i : i + 2 * step])
            fed[0] = min(len(samples), i // 2 + step) / 16000
            await idle(stream, engine)
        await stream.end()
        await consumer
    finally:
        await stream.aclose()
    return t, delays


async def idle(stream, engine: WhisperEngine, limit_s: float = 120.0) -> None:
    """Until the stream has taken the audio given and its decode is done (bounded)."""
    deadline = time.monotonic() + limit_s
    await asyncio.sleep(0)
    while stream._pending or engine.queue_depth:
        if time.monotonic() > deadline:
            raise TimeoutError("the stream did not take its audio")
        await asyncio.sleep(0.002)


def as_reply(update: EngineUpdate) -> Reply:
    tokens = [*update.final, *update.nonfinal]
    return Reply(tokens=tuple(tokens), final_audio_proc_ms=update.final_audio_proc_ms,
                 total_audio_proc_ms=update.total_audio_proc_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", help="clip names (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a WhisperSettings field (Python literal), e.g. settle_s=1.0")
    parser.add_argument("--texts", action="store_true", help="print the texts")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        overrides[name] = eval(value, {"None": None, "TrimPolicy": TrimPolicy})  # own flag
    engine = WhisperEngine(settings=WhisperSettings(**overrides))
    results = {}
    for clip in human_speech.clips(*args.clips):
        whole = human_speech.file_decode(engine, clip.path)
        said = clip.reference or whole
        samples = decode_bytes(speech.encode(clip.path))
        before = engine.decode_seconds, engine.decodes
        t, delays = asyncio.run(run_clip(engine, samples))
        text = t.final_text
        results[clip.name] = r = Result(
            text, speech.word_error_rate(said, text), speech.word_error_rate(said, whole),
            human_speech.extra_repeats(text, said, whole), delays,
            engine.decode_seconds - before[0], engine.decodes - before[1])
        print(f"{clip.name:36s} file {r.file_wer:.3f} live {r.wer:.3f} "
              f"(+{r.wer - r.file_wer:+.3f}) rep {r.repeats} "
              f"final {statistics.median(delays) if delays else 0:.2f} s  "
              f"decode {r.decode_s / max(1, r.decodes):.3f} s x{r.decodes}", flush=True)
        if args.texts:
            print(f"   said: {said}\n   file: {whole}\n   live: {text}", flush=True)
    gaps = [r.wer - r.file_wer for r in results.values()]
    delays = [d for r in results.values() for d in r.final_delay]
    print(f"most live-file {max(gaps):+.3f}, mean {statistics.mean(gaps):+.3f}, "
          f"repeats {sum(r.repeats for r in results.values())}, "
          f"final delay median {statistics.median(delays):.2f} s")


if __name__ == "__main__":
    main()
