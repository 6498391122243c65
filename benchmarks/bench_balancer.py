"""Benchmark: local-engine replicas behind HAProxy, side by side in one run.

    .venv/bin/python benchmarks/bench_balancer.py            # streams 1..4, 300 pings (~4 min)
    .venv/bin/python benchmarks/bench_balancer.py --quick    # streams 1..2, 100 pings

Two tables, printed as markdown:

1. **Real-time streams kept** by one engine process vs two engine processes, each behind
   the same HAProxy configuration (tests/haproxy.py, as in the README): 1 to N people
   reading JFK's sentence at once at real-time pace, in 120 ms webm/opus pieces as the
   widget sends a microphone. A stream keeps up while at most 3 s of its audio waits for
   recognition (as in bench_engine.py). Also the engines' resident memory after the run
   and CPU seconds per second of audio: one shared engine against one model per kernel.
2. **HAProxy's added latency**: one scripted-engine process (no recognition cost), a
   word of PCM sent and the reply that makes the previous word final awaited, alternately
   straight to the engine and through HAProxy, so both see the same machine load.

Numbers depend on the machine: the table says how many cores it had.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server_processes import cpu_seconds  # noqa: E402

from soniox_widget import SonioxConfig, UpstreamSession  # noqa: E402
from tests import human_speech, speech  # noqa: E402
from tests.haproxy import HAProxy, ServerProcess  # noqa: E402

MAX_WAITING_S = 3.0
CLIP = "jfk_ask_not"
PCM = SonioxConfig(audio_format="pcm_s16le", sample_rate=16000, num_channels=1)
WORD_BYTES = 3200  # 100 ms of 16 kHz s16le mono per scripted word


def waiting(events) -> float:
    """The most audio (s) sent at real-time pace but not yet recognised."""
    return max((at - reply.total_audio_proc_ms / 1000 for at, reply in events
                if reply.total_audio_proc_ms and not reply.finished), default=0.0)


def final_latencies(events) -> list[float]:
    """Seconds from the end of each final word's audio to the reply that made it final."""
    return [max(0.0, at - tok.end_ms / 1000) for at, reply in events for tok in reply.tokens
            if tok.is_final and not tok.is_special and tok.end_ms is not None]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def streams_row(url: str, n: int, data: bytes, seconds: float) -> tuple[float, float]:
    """n streams at once: the most audio waiting (s), the median final latency (s)."""
    runs = await asyncio.gather(*[human_speech.stream_live(url, data, seconds)
                                  for _ in range(n)], return_exceptions=True)
    done = [events for r in runs if not isinstance(r, BaseException) for events in [r[1]]]
    if len(done) < n:
        return float("inf"), float("nan")
    finals = [x for events in done for x in final_latencies(events)]
    return max(waiting(e) for e in done), statistics.median(finals) if finals else float("nan")


async def measure_streams(tmp: Path, replicas: int, most: int, data: bytes,
                          seconds: float) -> dict:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SONIOX_")},
           "HF_HUB_OFFLINE": "1"}
    engines = [ServerProcess("soniox_widget.local", ["--port", "0", "--metrics"],
                             tmp / f"engine{replicas}_{i}.log", env)
               for i in range(replicas)]
    rows: list[tuple[int, float, float]] = []
    try:
        await asyncio.gather(*(e.start() for e in engines))
        pids = [e.pid for e in engines]
        servers = {f"e{i}": e.port for i, e in enumerate(engines)}
        workdir = tmp / f"haproxy{replicas}"
        workdir.mkdir()
        async with HAProxy(servers, workdir) as balancer:
            await balancer.wait_status(dict.fromkeys(servers, "UP"))
            await human_speech.stream_live(balancer.url(), data, seconds)  # loads the models
            cpu0 = sum(cpu_seconds(p) for p in pids)
            audio_s = 0.0
            for n in range(1, most + 1):
                behind, final = await streams_row(balancer.url(), n, data, seconds)
                rows.append((n, behind, final))
                audio_s += n * seconds
                print(f"  {replicas} engine(s), {n} at once: waiting {behind:.2f} s",
                      file=sys.stderr)
            cpu = sum(cpu_seconds(p) for p in pids) - cpu0
            memory = [rss_mb(p) for p in pids]
    finally:
        await asyncio.gather(*(e.stop() for e in engines))
    return {"rows": rows, "cpu_per_audio_s": cpu / audio_s, "rss_mb": memory}


async def ping(session: UpstreamSession, replies, word: bytes) -> float:
    """Send one word; seconds until the reply that makes the previous word final."""
    start = time.perf_counter()
    session.send_audio(word)
    async for reply in replies:
        if any(tok.is_final for tok in reply.tokens):
            return time.perf_counter() - start
    raise RuntimeError("the session ended")


async def measure_hop(tmp: Path, pings: int) -> dict[str, list[float]]:
    engine = ServerProcess("soniox_widget.local",
                           ["--port", "0", "--engine", "scripted",
                            "--bytes-per-word", str(WORD_BYTES), "--ms-per-word", "100"],
                           tmp / "scripted.log")
    times: dict[str, list[float]] = {"direct": [], "through HAProxy": []}
    try:
        await engine.start()
        workdir = tmp / "haproxy_hop"
        workdir.mkdir()
        async with HAProxy({"e0": engine.port}, workdir) as balancer:
            await balancer.wait_status({"e0": "UP"})
            urls = {"direct": f"ws://127.0.0.1:{engine.port}/transcribe-websocket",
                    "through HAProxy": balancer.url()}
            sessions = {name: UpstreamSession(PCM, url=url) for name, url in urls.items()}
            try:
                streams = {name: s.replies() for name, s in sessions.items()}
                for session in sessions.values():  # the first word is never final
                    session.send_audio(os.urandom(WORD_BYTES))
                    await session.wait_connected()
                for _ in range(pings):  # alternately, so both share the machine's load
                    for name, session in sessions.items():
                        times[name].append(await ping(session, streams[name],
                                                      os.urandom(WORD_BYTES)))
            finally:
                for session in sessions.values():
                    await session.aclose()
    finally:
        await engine.stop()
    return times


def ms(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


def report(streams: dict[int, dict], hop: dict[str, list[float]], seconds: float) -> None:
    print(f"\nMachine: {os.cpu_count()} cores. Clip: {CLIP} ({seconds:.1f} s), real-time "
          f"pace; a stream keeps up while at most {MAX_WAITING_S:g} s waits.\n")
    print("| streams at once | " + " | ".join(
        f"{r} engine{'s' if r > 1 else ''}: most waiting (s) / median final (s)"
        for r in streams) + " |")
    print("|---|" + "---|" * len(streams))
    most = max(len(v["rows"]) for v in streams.values())
    for i in range(most):
        cells = []
        for v in streams.values():
            _n, behind, final = v["rows"][i]
            mark = "" if behind <= MAX_WAITING_S else " (behind)"
            cells.append(f"{behind:.2f} / {final:.2f}{mark}")
        print(f"| {i + 1} | " + " | ".join(cells) + " |")
    for r, v in streams.items():
        kept = max((n for n, behind, _ in v["rows"] if behind <= MAX_WAITING_S), default=0)
        print(f"\n{r} engine process(es): {kept} stream(s) kept in real time; resident "
              f"memory {', '.join(f'{m:.0f} MB' for m in v['rss_mb'])}; "
              f"{v['cpu_per_audio_s']:.2f} CPU s per audio s")
    print("\n| path | median (ms) | p90 (ms) | pings |")
    print("|---|---|---|---|")
    for name, values in hop.items():
        print(f"| {name} | {statistics.median(values) * 1000:.2f} | {ms(values, 90):.2f} | "
              f"{len(values)} |")
    added = (statistics.median(hop["through HAProxy"]) - statistics.median(hop["direct"]))
    print(f"\nHAProxy adds {added * 1000:.2f} ms (median) from a word's audio to its reply.")


async def main_async(quick: bool) -> None:
    clip, = human_speech.clips(CLIP)
    data = speech.encode(clip.path)
    most = 2 if quick else 4
    with tempfile.TemporaryDirectory(prefix="bench_balancer_") as name:
        tmp = Path(name)
        hop = await measure_hop(tmp, 100 if quick else 300)
        streams = {1: await measure_streams(tmp, 1, most, data, clip.seconds),
                   2: await measure_streams(tmp, 2, most, data, clip.seconds)}
    report(streams, hop, clip.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main_async(parser.parse_args().quick))


if __name__ == "__main__":
    main()
