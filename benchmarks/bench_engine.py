"""Benchmark of the offline engine, through the real local server over 127.0.0.1.

    .venv/bin/python benchmarks/bench_engine.py            # full run (~5 min on 2 cores)
    .venv/bin/python benchmarks/bench_engine.py --quick    # fewer sentences and voices

Prints markdown tables: real-time factor, concurrent real-time streams, latency from the
end of a word to its first non-final and its final token, and word error rate of the
streamed recognition against the same audio transcribed offline in one piece.
Speech is made at run time by espeak-ng from benchmarks/sentences.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soniox_widget import SonioxConfig, Transcript, UpstreamSession  # noqa: E402
from soniox_widget.audio import decode_file  # noqa: E402
from soniox_widget.local import LocalSonioxServer  # noqa: E402
from soniox_widget.local.agreement import new_words  # noqa: E402
from soniox_widget.local.whisper_engine import WhisperEngine  # noqa: E402
from tests import speech  # noqa: E402

CHUNK_S = 0.12
VOICES = [("en-us", 150), ("en-gb-x-rp", 140), ("en-us", 175), ("en-gb-x-rp", 165)]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def stream_file(url: str, data: bytes, seconds: float, realtime: bool):
    """Stream encoded audio in 120 ms pieces; return transcript and timed replies."""
    pieces = speech.chunks(data, seconds, CHUNK_S)
    events: list[tuple[float, object]] = []
    t = Transcript()
    async with UpstreamSession(SonioxConfig(), url=url, finish_timeout=120) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def feed():
            for i, piece in enumerate(pieces):
                session.send_audio(piece)
                if realtime:
                    await asyncio.sleep(max(0.0, start + (i + 1) * CHUNK_S - loop.time()))
            session.end()

        feeder = asyncio.create_task(feed())
        async for reply in session.replies():
            events.append((loop.time() - start, reply))
            t.apply(reply)
        await feeder
        sent_done = len(pieces) * CHUNK_S if realtime else 0.0
    return t, events, start, sent_done


def latencies(events) -> tuple[list[float], list[float]]:
    """Seconds from the end of each final word (audio time = wall time when paced) to its
    first appearance as non-final and as final."""
    first_seen: dict[tuple[str, int], float] = {}
    to_nonfinal, to_final = [], []
    for at, reply in events:
        for tok in reply.tokens:
            if tok.is_special or tok.start_ms is None:
                continue
            key = (tok.text.strip().lower(), tok.start_ms // 300)
            if not tok.is_final:
                first_seen.setdefault(key, at)
            else:
                end_s = tok.end_ms / 1000
                seen = min((v for (w, b), v in first_seen.items()
                            if w == key[0] and abs(b - key[1]) <= 1), default=at)
                to_nonfinal.append(max(0.0, seen - end_s))
                to_final.append(max(0.0, at - end_s))
    return to_nonfinal, to_final


def offline_text(engine: WhisperEngine, wav: Path) -> str:
    audio = decode_file(wav)
    words = engine.transcribe(audio, 0.0, "", engine.settings.final_beam_size)
    return "".join(w.text for w in new_words(words, []))


async def main(quick: bool) -> None:
    sentences = (ROOT / "benchmarks" / "sentences.txt").read_text().split("\n")
    sentences = [s for s in sentences if s.strip()]
    voices = VOICES[:2] if quick else VOICES
    if quick:
        sentences = sentences[:6]
    tmp = Path(tempfile.mkdtemp(prefix="soniox-bench-"))
    engine = WhisperEngine()
    engine.model()  # load once, outside the measurements

    # Passages of three sentences each, as 48 kHz speech, encoded like a browser would.
    passages = []
    for v, (voice, wpm) in enumerate(voices):
        for i in range(0, len(sentences), 3):
            text = " ".join(sentences[i : i + 3])
            wav = speech.make_speech_wav(text, tmp / f"p{v}_{i}.wav", voice=voice, wpm=wpm,
                                         lead_silence_s=0.3, tail_silence_s=1.0)
            passages.append((voice, wpm, text, wav, speech.encode(wav),
                             speech.duration(wav)))

    async with LocalSonioxServer(engine) as server:
        # 1. WER, streamed (as fast as the engine goes) vs offline in one piece; and RTF.
        wer_rows: dict[tuple[str, int], list[tuple[float, float]]] = {}
        audio_s = busy_s = 0.0
        for voice, wpm, text, wav, data, seconds in passages:
            began = time.perf_counter()
            t, _events, _start, _ = await stream_file(server.url, data, seconds, False)
            busy_s += time.perf_counter() - began
            audio_s += seconds
            streamed = speech.word_error_rate(text, t.final_text)
            offline = speech.word_error_rate(text, offline_text(engine, wav))
            wer_rows.setdefault((voice, wpm), []).append((streamed, offline))

        # 2. Latency at real-time pace, one stream.
        to_nf, to_f = [], []
        for _voice, _wpm, _text, _wav, data, seconds in passages[: 3 if quick else 6]:
            _t, events, _start, _ = await stream_file(server.url, data, seconds, True)
            a, b = latencies(events)
            to_nf += a
            to_f += b

        # 3. Concurrent real-time streams: does the finish lag stay bounded?
        concurrency = []
        _v, _w, _text, _wav, data, seconds = max(passages, key=lambda p: p[5])
        for n in (1, 2, 3) if quick else (1, 2, 3, 4):
            began = time.perf_counter()
            results = await asyncio.gather(*[
                stream_file(server.url, data, seconds, True) for _ in range(n)])
            wall = time.perf_counter() - began
            lags = [e[-1][0] - sent for _t, e, _s, sent in results]
            concurrency.append((n, seconds, wall, max(lags)))

    print("\n## Offline engine benchmark (faster-whisper tiny.en int8, "
          f"{engine.cpu_threads} threads, step {engine.settings.step_s} s, "
          f"beam {engine.settings.beam_size} while streaming, "
          f"{engine.settings.final_beam_size} offline and at the end)\n")
    print("| measure | value |\n|---|---|")
    print(f"| audio streamed | {audio_s:.0f} s in {len(passages)} passages |")
    print(f"| real-time factor, one stream as fast as possible | {busy_s / audio_s:.2f} |")
    print(f"| first non-final after the word ends: median / p95 | "
          f"{statistics.median(to_nf):.2f} s / {pct(to_nf, 0.95):.2f} s (target ≤ 1.0 s) |")
    print(f"| final after the word ends: median / p95 | "
          f"{statistics.median(to_f):.2f} s / {pct(to_f, 0.95):.2f} s (target ≤ 2.5 s) |")
    print("\n| concurrent real-time streams | audio | wall time | worst lag after the end |")
    print("|---|---|---|---|")
    for n, seconds, wall, lag in concurrency:
        verdict = "keeps up" if lag < 3.0 else "falls behind"
        print(f"| {n} | {seconds:.1f} s each | {wall:.1f} s | {lag:.2f} s ({verdict}) |")
    print("\n| voice | wpm | passages | WER streamed (120 ms webm/opus) | WER offline, one piece |")
    print("|---|---|---|---|---|")
    all_s, all_o = [], []
    for (voice, wpm), rows in wer_rows.items():
        s = statistics.mean(r[0] for r in rows)
        o = statistics.mean(r[1] for r in rows)
        all_s += [r[0] for r in rows]
        all_o += [r[1] for r in rows]
        print(f"| {voice} | {wpm} | {len(rows)} | {s:.3f} | {o:.3f} |")
    print(f"| **all** | | {len(all_s)} | **{statistics.mean(all_s):.3f}** | "
          f"**{statistics.mean(all_o):.3f}** |")
    await engine.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
