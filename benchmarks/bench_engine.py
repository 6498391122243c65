"""Benchmark of the offline engine's live transcript on people speaking, before and now.

    .venv/bin/python benchmarks/bench_engine.py             # every clip, before vs now (~15 min)
    .venv/bin/python benchmarks/bench_engine.py --quick     # three short clips (~5 min)
    .venv/bin/python benchmarks/bench_engine.py --rev REV   # "before" = the engine at git REV
    .venv/bin/python benchmarks/bench_engine.py --now-only

Each policy runs as a real local server process (``python -m soniox_widget.local``): "now"
from this tree, "before" from ``git archive REV`` (default a12998d, the engine before
issue 23). Every recording in tests/data/speech (people reading, talking, a sentence said
twice; see its README) is sent to each at real-time pace in 120 ms webm/opus pieces, as
the widget sends a microphone, and judged against what was said where that is known,
else against the whole-file decode of the same audio (Whisper's full window, beam 5: what
the model can do). Printed, as markdown, before and now side by side:

- per clip: word error rate of the file decode and of each live run, phrases written more
  often than said and than the file decode writes them (word triples in surplus), first
  non-final and final latency (median, from the end of a word's audio);
- real-time streams at once (the phone call, 1 to 5 at once, stopping at the first count
  that falls behind): final latency and the most audio left waiting; a stream keeps up
  while at most 3 s waits;
- words invented after the speech, over 2 s of low noise after a clip.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from echo_upstream import free_port  # noqa: E402
from server_processes import Processes, extract_package  # noqa: E402

from soniox_widget.audio import decode_file  # noqa: E402
from soniox_widget.errors import SonioxError  # noqa: E402
from soniox_widget.local.whisper_engine import WhisperEngine  # noqa: E402
from tests import human_speech, noise, speech  # noqa: E402

BEFORE = "a12998d"  # the engine before issue 23
QUICK_CLIPS = ("jfk_ask_not", "ill_disposed_twice", "sense_and_sensibility_reading")
CONCURRENCY_CLIP = "phone_call_two_voices"
#: Goals of issue 23 (median, one stream).
NONFINAL_GOAL_S = 0.7
FINAL_GOAL_S = 1.5
WER_MARGIN_GOAL = 0.03
#: A real-time stream keeps up when the audio waiting for recognition stays under this.
MAX_WAITING_S = 3.0
#: A word that starts this long after the speech ended was invented.
INVENTED_AFTER_S = 0.3


@dataclass(frozen=True)
class Audio:
    """A clip encoded like the browser's recorder, and what it is judged against."""

    name: str
    data: bytes
    seconds: float
    said: str          # the reference, or the file decode's text
    file_wer: float    # the file decode against ``said`` (0 when it is the reference)
    whole: str = ""    # the file decode's text
    speech_end: float = 0.0


@dataclass
class Run:
    wer: dict[str, float] = field(default_factory=dict)
    repeats: dict[str, int] = field(default_factory=dict)
    nonfinal: dict[str, list[float]] = field(default_factory=dict)
    final: dict[str, list[float]] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    streams: list[tuple[int, float, float]] = field(default_factory=list)
    invented: dict[str, int] = field(default_factory=dict)


async def stream_live(url: str, audio: Audio):
    return await human_speech.stream_live(url, audio.data, audio.seconds)


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


def waiting(events) -> float:
    """The most audio (s) that had been sent at real-time pace but not yet recognised."""
    return max((at - reply.total_audio_proc_ms / 1000 for at, reply in events
                if reply.total_audio_proc_ms and not reply.finished), default=0.0)


def prepare(quick: bool, tmp: Path) -> tuple[list[Audio], Audio, list[Audio]]:
    """The clips, the concurrency clip, and clips followed by low noise."""
    engine = WhisperEngine()
    clips = human_speech.clips(*QUICK_CLIPS) if quick else human_speech.clips()
    out = []
    for clip in clips:
        whole = human_speech.file_decode(engine, clip.path)
        said = clip.reference or whole
        out.append(Audio(clip.name, speech.encode(clip.path), clip.seconds, said,
                         speech.word_error_rate(said, whole), whole))
    concurrent, = [a for a in out if a.name == CONCURRENCY_CLIP] or [
        Audio(CONCURRENCY_CLIP, speech.encode(c.path), c.seconds, "", 0.0)
        for c in human_speech.clips(CONCURRENCY_CLIP)]
    # JFK's sentence, then 2 s of low noise (the same noise under the speech).
    jfk, = human_speech.clips("jfk_ask_not")
    samples = decode_file(jfk.path)
    loud = np.nonzero(np.abs(samples) > 0.02)[0]
    end = float(loud[-1]) / 16_000 if len(loud) else jfk.seconds
    pcm = noise.int16(samples).tobytes()
    noisy = []
    total = len(samples) / 16_000 + 2.0
    for kind, sound in (("pink noise at -45 dBFS", noise.pink_noise(total, 16_000, -45.0)),
                        ("room tone at -48 dBFS", noise.room_tone(total, 16_000, -48.0))):
        wav = speech.write_wav(tmp / f"jfk_{kind[:4]}.wav", noise.speech_then(pcm, sound))
        noisy.append(Audio(kind, speech.encode(wav), total, jfk.reference or "", 0.0,
                           speech_end=end))
    asyncio.run(engine.aclose())
    return out, concurrent, noisy


async def measure_clips(url: str, clips: list[Audio], r: Run) -> None:
    for audio in clips:
        try:
            t, events = await stream_live(url, audio)
        except SonioxError as exc:
            r.text[audio.name] = f"(failed: {exc})"
            r.wer[audio.name], r.repeats[audio.name] = float("nan"), 0
            r.nonfinal[audio.name] = r.final[audio.name] = []
            continue
        r.text[audio.name] = t.final_text
        r.wer[audio.name] = speech.word_error_rate(audio.said, t.final_text)
        r.repeats[audio.name] = human_speech.extra_repeats(t.final_text, audio.said,
                                                          audio.whole)
        r.nonfinal[audio.name], r.final[audio.name] = latencies(events)
        print(f"  {audio.name}: WER {r.wer[audio.name]:.3f}", file=sys.stderr)


async def measure_streams(url: str, concurrent: Audio, most_streams: int, r: Run) -> None:
    for n in range(1, most_streams + 1):
        runs = await asyncio.gather(*[stream_live(url, concurrent) for _ in range(n)],
                                    return_exceptions=True)
        done = [x for x in runs if not isinstance(x, BaseException)]
        finals = [x for _t, e in done for x in latencies(e)[1]]
        behind = max(waiting(e) for _t, e in done) if len(done) == n else float("inf")
        r.streams.append((n, statistics.median(finals) if finals else float("nan"), behind))
        print(f"  {n} at once: waiting {behind:.2f} s", file=sys.stderr)
        if behind > MAX_WAITING_S:
            break  # more streams would only fall further behind


async def measure_noise(url: str, noisy: list[Audio], r: Run) -> None:
    for audio in noisy:
        try:
            t, _events = await stream_live(url, audio)
        except SonioxError:
            r.invented[audio.name] = -1  # did not finish
            continue
        r.invented[audio.name] = sum(
            1 for tok in t.final_tokens
            if tok.start_ms is not None and tok.start_ms / 1000 > audio.speech_end
            + INVENTED_AFTER_S)


def measure(procs: Processes, root: Path, clips: list[Audio], concurrent: Audio,
            noisy: list[Audio], most_streams: int) -> Run:
    """Each part against a fresh server process, so one part's backlog never slows the
    next."""
    r = Run()
    for part in (lambda url: measure_clips(url, clips, r),
                 lambda url: measure_streams(url, concurrent, most_streams, r),
                 lambda url: measure_noise(url, noisy, r)):
        url, proc = run_server(procs, root)
        try:
            asyncio.run(part(url))
        finally:
            procs.stop(proc)
    return r


def run_server(procs: Processes, root: Path) -> tuple[str, object]:
    port = free_port()
    proc = procs.start([sys.executable, "-m", "soniox_widget.local", "--port", str(port)],
                       {"HF_HUB_OFFLINE": "1"}, port, root=root)
    return f"ws://127.0.0.1:{port}/transcribe-websocket", proc


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(runs: dict[str, Run], clips: list[Audio], concurrent: Audio,
           noisy: list[Audio], quick: bool) -> None:
    names = list(runs)
    total = sum(a.seconds for a in clips)
    print(f"\n#### Offline engine, live on people speaking ({'quick' if quick else 'full'}: "
          f"{len(clips)} clips, {total:.0f} s; 120 ms webm/opus pieces at real-time pace; "
          "faster-whisper tiny.en int8, 2 CPU threads; "
          + ", ".join(f"{n}: {'this tree' if n == 'now' else 'git ' + n.split()[-1]}"
                      for n in names) + ")\n")
    print("| clip | seconds | WER file decode | " + " | ".join(
        f"WER live {n} | repeated {n} | non-final / final {n}" for n in names) + " |")
    print("|---|---|---|" + "---|---|---|" * len(names))
    for a in clips:
        cells = []
        for n in names:
            r = runs[n]
            cells += [f"{r.wer[a.name]:.3f}", f"{r.repeats[a.name]}",
                      f"{med(r.nonfinal[a.name]):.2f} / {med(r.final[a.name]):.2f} s"]
        print(f"| {a.name} | {a.seconds:.1f} | {a.file_wer:.3f} | " + " | ".join(cells) + " |")
    print("\nWER against what was said; for clips without a transcript (the two dialogues) "
          "against the file decode, whose WER is then 0 by definition.")
    for n in names:
        r = runs[n]
        worst = max((r.wer[a.name] - a.file_wer for a in clips if r.wer[a.name] == r.wer[a.name]),
                    default=float("nan"))
        nf = med([x for v in r.nonfinal.values() for x in v])
        f = med([x for v in r.final.values() for x in v])
        print(f"\n{n}: live WER - file WER at most **{worst:+.3f}** (goal ≤ "
              f"+{WER_MARGIN_GOAL}); phrases repeated {sum(r.repeats.values())}; "
              f"first non-final {nf:.2f} s (goal ≤ {NONFINAL_GOAL_S}), final {f:.2f} s "
              f"(goal ≤ {FINAL_GOAL_S}), medians over all words.")
    print(f"\n| real-time streams at once ({concurrent.name}, {concurrent.seconds:.0f} s) | "
          + " | ".join(f"{n}: final median / most audio waiting" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for k in range(1, max(len(runs[n].streams) for n in names) + 1):
        cells = []
        for n in names:
            if k > len(runs[n].streams):
                cells.append("not tried (fell behind with fewer)")
                continue
            _k, final, behind = runs[n].streams[k - 1]
            if behind == float("inf"):
                cells.append(f"{final:.2f} s / - (a stream did not finish within 120 s)")
                continue
            verdict = "keeps up" if behind <= MAX_WAITING_S else "falls behind"
            cells.append(f"{final:.2f} s / {behind:.2f} s ({verdict})")
        print(f"| {k} | " + " | ".join(cells) + " |")
    print("\n| words invented after the speech (jfk_ask_not, then 2 s of) | "
          + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for a in noisy:
        print(f"| {a.name} | " + " | ".join(
            str(v) if (v := runs[n].invented[a.name]) >= 0 else "did not finish"
            for n in names) + " |")
    print("\nThe texts:\n")
    for a in clips:
        print(f"- **{a.name}** said: {a.said}")
        for n in names:
            print(f"  - {n}: {runs[n].text[a.name]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rev", default=BEFORE,
                        help=f"the 'before' engine's git revision (default {BEFORE})")
    parser.add_argument("--now-only", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="soniox-bench-"))
    clips, concurrent, noisy = prepare(args.quick, tmp)
    most = 3 if args.quick else 5
    procs = Processes()
    runs: dict[str, Run] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench_engine_rev_") as old_root:
            roots = {"now": ROOT}
            if not args.now_only:
                extract_package(args.rev, Path(old_root))
                roots = {f"before {args.rev}": Path(old_root), **roots}
            for name, root in roots.items():
                began = time.perf_counter()
                print(f"{name} ...", file=sys.stderr)
                runs[name] = measure(procs, root, clips, concurrent, noisy, most)
                print(f"[{name}: {time.perf_counter() - began:.0f} s]", file=sys.stderr)
    finally:
        procs.stop_all()
    report(runs, clips, concurrent, noisy, args.quick)


if __name__ == "__main__":
    main()
