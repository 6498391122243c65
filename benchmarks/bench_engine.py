"""Benchmark of the offline engine, through the real local server over 127.0.0.1.

    .venv/bin/python benchmarks/bench_engine.py            # full run (~20 min on 2 cores)
    .venv/bin/python benchmarks/bench_engine.py --quick    # fewer sentences and voices (~5 min)
    .venv/bin/python benchmarks/bench_engine.py --now-only # skip the "before" policy

Runs the engine's streaming policy before issue 11 (``WhisperSettings.before_issue_11()``:
0.8 s steps over full 30 s Whisper windows) and the current one side by side on the same
speech, and prints one markdown table with both and their ratio: real-time factor,
latency from the end of a word to its first non-final and its final token, how many
real-time streams keep up at once, words invented after the speech over low noise, and
word error rate of the streamed recognition (the same audio decoded offline in one piece,
with Whisper's full window and beam 5, is the reference for what the model can do).
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soniox_widget import SonioxConfig, Transcript, UpstreamSession  # noqa: E402
from soniox_widget.audio import decode_file  # noqa: E402
from soniox_widget.local import LocalSonioxServer  # noqa: E402
from soniox_widget.local.whisper_engine import WhisperEngine, WhisperSettings  # noqa: E402
from tests import noise, speech  # noqa: E402

CHUNK_S = 0.12
VOICES = [("en-us", 150), ("en-gb-x-rp", 140), ("en-us", 175), ("en-gb-x-rp", 165)]
#: Latency goals of issue 11 (median, one stream).
NONFINAL_GOAL_S = 0.7
FINAL_GOAL_S = 1.5
#: A real-time stream keeps up when the audio waiting for recognition stays under this:
#: one that falls behind sees its backlog grow for as long as it lasts (33 s here).
MAX_WAITING_S = 3.0
#: A word that starts this long after the speech ended was invented.
INVENTED_AFTER_S = 0.3


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
    """The whole file in one offline decode: Whisper's full window, beam 5, as many
    windows as it takes (faster-whisper's own way)."""
    words = engine.model().transcribe(decode_file(wav), beam_size=5, pad_s=None,
                                      one_window=False)
    return "".join(w.text for w in words)


@dataclass
class Speech:
    """The benchmark's audio, made once and shared by both policies."""

    passages: list[tuple[str, int, str, Path, bytes, float]]
    long_data: bytes
    long_seconds: float
    noisy: list[tuple[str, str, float, bytes, float]]  # kind, text, speech end, data, s
    offline: dict[Path, str] = field(default_factory=dict)


def make_speech(quick: bool, tmp: Path) -> Speech:
    sentences = [s for s in (ROOT / "benchmarks" / "sentences.txt").read_text().split("\n")
                 if s.strip()]
    voices = VOICES[:2] if quick else VOICES
    if quick:
        sentences = sentences[:6]
    # Passages of three sentences each, as 48 kHz speech, encoded like a browser would.
    passages = []
    for v, (voice, wpm) in enumerate(voices):
        for i in range(0, len(sentences), 3):
            text = " ".join(sentences[i : i + 3])
            wav = speech.make_speech_wav(text, tmp / f"p{v}_{i}.wav", voice=voice, wpm=wpm,
                                         lead_silence_s=0.3, tail_silence_s=1.0)
            passages.append((voice, wpm, text, wav, speech.encode(wav),
                             speech.duration(wav)))
    # A stream that falls behind shows a lag that grows with its length: a long one.
    long = join_wavs([p[3] for p in passages[: 1 if quick else 3]], tmp / "long.wav")
    # Single sentences followed by 2 s of low noise (the same noise under the speech).
    noisy = []
    for i, text in enumerate(sentences[: 6 if quick else 12]):
        wav = speech.make_speech_wav(text, tmp / f"s{i}.wav", lead_silence_s=0.3,
                                     tail_silence_s=0.0)
        pcm, rate = speech.pcm16(wav)
        x = np.frombuffer(pcm, "<i2")
        end = float(np.nonzero(np.abs(x) > 300)[0][-1]) / rate
        total = len(x) / rate + 2.0
        for kind, sound in (("pink noise at -45 dBFS", noise.pink_noise(total, rate, -45.0)),
                            ("room tone at -48 dBFS", noise.room_tone(total, rate, -48.0))):
            out = speech.write_wav(tmp / f"s{i}_{kind[:4]}.wav", noise.speech_then(pcm, sound),
                                   rate)
            noisy.append((kind, text, end, speech.encode(out), total))
    return Speech(passages, speech.encode(long), speech.duration(long), noisy)


@dataclass(frozen=True)
class Policy:
    settings: WhisperSettings
    cpu_threads: int = 2
    num_workers: int = 1


@dataclass
class Result:
    rtf: float = 0.0
    nonfinal: list[float] = field(default_factory=list)
    final: list[float] = field(default_factory=list)
    wer: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    paced_wer: list[float] = field(default_factory=list)
    concurrency: list[tuple[int, float, float, float]] = field(default_factory=list)
    invented: dict[str, list[int]] = field(default_factory=dict)
    noisy_wer: list[float] = field(default_factory=list)


async def measure(policy: Policy, audio: Speech, quick: bool) -> Result:
    engine = WhisperEngine(settings=policy.settings, cpu_threads=policy.cpu_threads,
                           num_workers=policy.num_workers)
    engine.model()  # load once, outside the measurements
    r = Result()
    try:
        async with LocalSonioxServer(engine) as server:
            # 1. WER, streamed as fast as the engine takes it; and the real-time factor.
            audio_s = busy_s = 0.0
            for voice, wpm, text, wav, data, seconds in audio.passages:
                began = time.perf_counter()
                t, _events, _start, _ = await stream_file(server.url, data, seconds, False)
                busy_s += time.perf_counter() - began
                audio_s += seconds
                r.wer.setdefault((voice, wpm), []).append(
                    speech.word_error_rate(text, t.final_text))
                if wav not in audio.offline:
                    audio.offline[wav] = offline_text(engine, wav)
            r.rtf = busy_s / audio_s

            # 2. Latency at real-time pace, one stream.
            for _voice, _wpm, text, _wav, data, seconds in audio.passages[: 3 if quick else 6]:
                t, events, _start, _ = await stream_file(server.url, data, seconds, True)
                a, b = latencies(events)
                r.nonfinal += a
                r.final += b
                r.paced_wer.append(speech.word_error_rate(text, t.final_text))

            # 3. Words after the speech, over low noise (as fast as the engine takes it).
            for kind, text, end, data, seconds in audio.noisy:
                t, _e, _s, _ = await stream_file(server.url, data, seconds, False)
                after = [tok for tok in t.final_tokens
                         if tok.start_ms is not None
                         and tok.start_ms / 1000 > end + INVENTED_AFTER_S]
                r.invented.setdefault(kind, []).append(len(after))
                r.noisy_wer.append(speech.word_error_rate(text, t.final_text))

            # 4. Concurrent real-time streams.
            for n in (1, 2, 3, 4) if quick else (1, 2, 3, 4, 5, 6):
                results = await asyncio.gather(*[
                    stream_file(server.url, audio.long_data, audio.long_seconds, True)
                    for _ in range(n)])
                finals = [x for _t, e, _s, _sent in results for x in latencies(e)[1]]
                behind = max(processing_lag(e) for _t, e, _s, _sent in results)
                after = max(e[-1][0] - sent for _t, e, _s, sent in results)
                r.concurrency.append((n, statistics.median(finals), behind, after))
    finally:
        await engine.aclose()
    return r


def keeps_up(behind: float) -> bool:
    return behind <= MAX_WAITING_S


def streams_that_keep_up(r: Result) -> int:
    """The most streams at once with every smaller number keeping up as well."""
    most = 0
    for n, _final, behind, _after in r.concurrency:
        if not keeps_up(behind):
            break
        most = n
    return most


def report(results: dict[str, Result], policies: dict[str, Policy], audio: Speech,
           quick: bool) -> None:
    names = list(results)
    cols = " | ".join(names)
    ratio = len(names) == 2
    head = f"| measure | {cols} |" + (f" {names[1]} / {names[0]} |" if ratio else "")
    rule = "|---|" + "---|" * len(names) + ("---|" if ratio else "")

    def row(label: str, values: list[float], fmt: str = "{:.2f}", unit: str = "") -> None:
        cells = " | ".join(fmt.format(v) + unit for v in values)
        extra = ""
        if ratio:
            extra = f" {values[1] / values[0]:.2f}x |" if values[0] else " n/a |"
        print(f"| {label} | {cells} |{extra}")

    audio_s = sum(p[5] for p in audio.passages)
    print(f"\n#### Offline engine benchmark ({'quick' if quick else 'full'}: "
          f"{audio_s:.0f} s in {len(audio.passages)} passages; faster-whisper tiny.en "
          "int8, greedy while streaming, beam 5 at the end; "
          + "; ".join(f"{n}: {p.cpu_threads} CPU threads, {p.num_workers} decoder workers"
                      for n, p in policies.items()) + ")\n")
    print(head)
    print(rule)
    rs = [results[n] for n in names]
    row("real-time factor, one stream as fast as possible", [r.rtf for r in rs])
    row(f"first non-final after the word ends, median (goal ≤ {NONFINAL_GOAL_S} s)",
        [statistics.median(r.nonfinal) for r in rs], unit=" s")
    row("first non-final after the word ends, p95", [pct(r.nonfinal, 0.95) for r in rs],
        unit=" s")
    row(f"final after the word ends, median (goal ≤ {FINAL_GOAL_S} s)",
        [statistics.median(r.final) for r in rs], unit=" s")
    row("final after the word ends, p95", [pct(r.final, 0.95) for r in rs], unit=" s")
    row("real-time streams that keep up at once (of "
        f"{len(rs[0].concurrency)} tried)",
        [streams_that_keep_up(r) for r in rs],
        fmt="{:d}")
    for kind in rs[0].invented:
        row(f"words invented after the speech, {kind} (in {len(rs[0].invented[kind])} "
            "sentences)", [sum(r.invented[kind]) for r in rs], fmt="{:d}")
    for voice, wpm in rs[0].wer:
        row(f"WER streamed, {voice} {wpm} wpm ({len(rs[0].wer[(voice, wpm)])} passages)",
            [statistics.mean(r.wer[(voice, wpm)]) for r in rs], fmt="{:.3f}")
    row("**WER streamed, all passages**",
        [statistics.mean(x for v in r.wer.values() for x in v) for r in rs], fmt="{:.3f}")
    row(f"WER streamed at real-time pace ({len(rs[0].paced_wer)} passages)",
        [statistics.mean(r.paced_wer) for r in rs], fmt="{:.3f}")
    row(f"WER streamed, sentences + 2 s of noise ({len(rs[0].noisy_wer)})",
        [statistics.mean(r.noisy_wer) for r in rs], fmt="{:.3f}")
    offline = statistics.mean(speech.word_error_rate(p[2], audio.offline[p[3]])
                              for p in audio.passages)
    print(f"\nWER of the same passages decoded offline in one piece (Whisper's full window, "
          f"beam 5): {offline:.3f}.")
    print("\n| real-time streams at once | " + " | ".join(
        f"{n}: final median / most audio waiting / `finished` after the end" for n in names)
        + " |")
    print("|---|" + "---|" * len(names))
    for i, (n, *_rest) in enumerate(rs[0].concurrency):
        cells = []
        for r in rs:
            _n, final, behind, after = r.concurrency[i]
            verdict = "keeps up" if keeps_up(behind) else "falls behind"
            cells.append(f"{final:.2f} s / {behind:.2f} s / {after:.2f} s ({verdict})")
        print(f"| {n} | " + " | ".join(cells) + " |")
    print(f"\nA stream keeps up when at most {MAX_WAITING_S} s of its audio ever waits for "
          f"recognition ({audio.long_seconds:.1f} s streams, 120 ms webm/opus pieces at "
          "real-time pace); the final latency shows what that costs in words' delay.")


async def main(quick: bool, now_only: bool, threads: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="soniox-bench-"))
    audio = make_speech(quick, tmp)
    policies = {"now": Policy(WhisperSettings())}
    if threads:
        policies = {"now, 2 threads x 1 worker": Policy(WhisperSettings(), 2, 1),
                    "now, 1 thread x 2 workers": Policy(WhisperSettings(), 1, 2)}
    elif not now_only:
        policies = {"before (issue 11)": Policy(WhisperSettings.before_issue_11()),
                    **policies}
    results = {}
    for name, policy in policies.items():
        began = time.perf_counter()
        results[name] = await measure(policy, audio, quick)
        print(f"[{name}: measured in {time.perf_counter() - began:.0f} s]", file=sys.stderr)
    report(results, policies, audio, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--now-only", action="store_true",
                        help="measure the current policy only (no side-by-side ratio)")
    parser.add_argument("--threads", action="store_true",
                        help="compare the current policy with 2 threads x 1 worker and 1 thread "
                        "x 2 workers instead")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.now_only, args.threads))
