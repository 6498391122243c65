"""Benchmark of the offline engine, through the real local server over 127.0.0.1.

    .venv/bin/python benchmarks/bench_engine.py            # full run (~9 min on 2 cores)
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
import wave
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


def processing_lag(events) -> float:
    """The most audio (s) that had been sent at real-time pace but not yet recognised."""
    return max((at - reply.total_audio_proc_ms / 1000 for at, reply in events
                if reply.total_audio_proc_ms and not reply.finished), default=0.0)


def join_wavs(wavs: list[Path], out: Path) -> Path:
    parts = [speech.pcm16(w) for w in wavs]
    with wave.open(str(out), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(parts[0][1])
        f.writeframes(b"".join(raw for raw, _rate in parts))
    return out


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
        to_nf, to_f, paced_wer = [], [], []
        for _voice, _wpm, text, wav, data, seconds in passages[: 3 if quick else 6]:
            t, events, _start, _ = await stream_file(server.url, data, seconds, True)
            a, b = latencies(events)
            to_nf += a
            to_f += b
            paced_wer.append((speech.word_error_rate(text, t.final_text),
                              speech.word_error_rate(text, offline_text(engine, wav))))

        # 3. Concurrent real-time streams: does the finish lag stay bounded? A stream
        # that falls behind shows a lag that grows with its length, so use a long one.
        concurrency = []
        wav = join_wavs([p[3] for p in passages[: 1 if quick else 3]], tmp / "long.wav")
        data, seconds = speech.encode(wav), speech.duration(wav)
        for n in (1, 2, 3) if quick else (1, 2, 3, 4, 5):
            results = await asyncio.gather(*[
                stream_file(server.url, data, seconds, True) for _ in range(n)])
            finals = [x for _t, e, _s, _sent in results for x in latencies(e)[1]]
            behind = max(processing_lag(e) for _t, e, _s, _sent in results)
            after = max(e[-1][0] - sent for _t, e, _s, sent in results)
            concurrency.append((n, seconds, statistics.median(finals), behind, after))

    print("\n## Offline engine benchmark (faster-whisper tiny.en int8, "
          f"{engine.cpu_threads} threads, step {engine.settings.step_s} s "
          f"(up to {engine.settings.max_step_s} s to catch up), "
          f"beam {engine.settings.beam_size} while streaming, "
          f"{engine.settings.final_beam_size} offline and at the end)\n")
    print("| measure | value |\n|---|---|")
    print(f"| audio streamed | {audio_s:.0f} s in {len(passages)} passages |")
    print(f"| real-time factor, one stream as fast as possible | {busy_s / audio_s:.2f} |")
    print(f"| first non-final after the word ends: median / p95 | "
          f"{statistics.median(to_nf):.2f} s / {pct(to_nf, 0.95):.2f} s (target ≤ 1.0 s) |")
    print(f"| final after the word ends: median / p95 | "
          f"{statistics.median(to_f):.2f} s / {pct(to_f, 0.95):.2f} s (target ≤ 2.5 s) |")
    # Keeping up: the audio waiting for recognition stays under one catch-up step (plus
    # a decode or two); falling behind, it grows for as long as the stream lasts.
    bound = engine.settings.max_step_s + 2.0
    print("\n| concurrent real-time streams | audio | final after the word ends: median | "
          "most audio waiting for recognition | `finished` after the end | verdict |")
    print("|---|---|---|---|---|---|")
    for n, seconds, final, behind, after in concurrency:
        verdict = "keeps up" if behind <= bound else "falls behind"
        print(f"| {n} | {seconds:.1f} s each | {final:.2f} s | {behind:.2f} s | "
              f"{after:.2f} s | {verdict} |")
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
    print(f"| first passages, streamed at real-time pace | | {len(paced_wer)} | "
          f"{statistics.mean(r[0] for r in paced_wer):.3f} | "
          f"{statistics.mean(r[1] for r in paced_wer):.3f} |")
    await engine.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
