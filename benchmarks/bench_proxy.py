"""Benchmark of the standalone proxy against the guide's proxy, over 127.0.0.1.

    .venv/bin/python benchmarks/bench_proxy.py            # full run (~3 minutes)
    .venv/bin/python benchmarks/bench_proxy.py --quick    # ~1 minute
    .venv/bin/python benchmarks/bench_proxy.py --deflate  # also ours with deflate
    .venv/bin/python benchmarks/bench_proxy.py --reply-tokens 25  # Soniox-like replies
    .venv/bin/python benchmarks/bench_proxy.py --quick --only ours --profile ours.prof
    .venv/bin/python benchmarks/bench_proxy.py --quick --rev d48cdc6  # before vs now

Paths, measured one after the other in one run against the same instant-echo upstream (a
small websockets server in its own process, started from this file with ``--upstream``):

- direct: clients speak to the upstream themselves (they send the start message);
- guide: the guide's proxy, run unchanged from ``ROOT.parent / "shared" / "seed"``;
- ours: ``python -m soniox_widget.proxy`` as shipped (both legs on
  ``soniox_widget.transport``, websockets' sans-I/O core driven from asyncio callbacks;
  loopback, no token, no permessage-deflate, uvloop when installed), with
  ``--idle-timeout 0``;
- ours-asyncio: the same on asyncio's own event loop (``--loop asyncio``);
- ours-deflate (with ``--deflate``): the same with ``--compression deflate``;
- bare (with ``--bare``): ``bare_relay.py``, a featureless relay on websockets' sans-I/O
  core: the floor under ours, which runs on the same core with every feature kept;
- ours at REV (with ``--rev REV``): the proxy as it was at git revision REV (its
  ``soniox_widget`` package from ``git archive``, run the same way), for a before/after
  in one run.

Each proxy runs in its own process. The upstream answers every binary frame at once with
one small JSON reply naming it (with ``--reply-tokens N``: a Soniox-like reply of N tokens
with times and confidence, words final in every third), and the empty frame with
``{"tokens":[],"finished":true}``.
The clients offer permessage-deflate (websockets' default, as browsers do); the guide's
proxy accepts it and offers it upstream, this project's does not unless asked.

Scenario A (saturation): 4 clients send 2.5 kB frames unpaced, with at most WINDOW frames
awaiting their reply per client, for a fixed time; replies per second.
Scenario B (real time): 50 clients send one 2.5 kB frame every 120 ms; latency from sending
a frame to receiving its reply, p50 and p99.
Every client first sends one warm-up frame and waits for its reply, so connecting to the
upstream is not counted in the rates or latencies. The proxy's CPU (user + sys, from
/proc/PID/stat) is counted from before the clients connect until they have all closed.

Prints one markdown table, each proxy's numbers with their ratio to the guide's.
On a shared 2-core machine the client, the upstream and the proxy compete for the cores:
saturation msg/s measures the whole set-up and swings between runs; CPU per message is
the steadiest column.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import echo_upstream
from echo_upstream import free_port
from server_processes import Processes, cpu_seconds, extract_package
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed" / "seed_proxy.py"  # run from there, never copied
FRAME_BYTES = 2500
PACE_S = 0.12
WINDOW = 4  # frames in flight per client in scenario A
SAT_CLIENTS = 4
RT_CLIENTS = 50
START_MESSAGE = json.dumps({"api_key": "bench-key", "audio_format": "auto",
                            "model": "stt-rt-preview"})
PATHS = ["direct", "guide", "ours", "ours-asyncio", "ours-deflate", "bare", "ours-rev"]
# How each of this project's variants is started (besides port, limits and no idle timeout).
VARIANTS = {
    "ours": [],  # as shipped: no deflate, uvloop when installed
    "ours-asyncio": ["--loop", "asyncio"],
    "ours-deflate": ["--compression", "deflate"],
}


# -- the instant-echo upstream (its own process) ------------------------------------------

def soniox_like_reply(seq: int, tokens: int) -> str:
    """A reply shaped like Soniox's: ``tokens`` tokens with times and confidence, the
    first naming frame ``seq``; only every third reply makes words final (most replies
    only update the non-final words)."""
    final = seq % 3 == 0
    words = [{"text": f" f{seq}", "start_ms": seq * 120, "end_ms": seq * 120 + 100,
              "confidence": 0.97, "is_final": final}]
    words += [{"text": " word", "start_ms": seq * 120 + 100 + 10 * i,
               "end_ms": seq * 120 + 110 + 10 * i, "confidence": 0.91, "is_final": False}
              for i in range(tokens - 1)]
    progress = {"final_audio_proc_ms": seq * 120, "total_audio_proc_ms": seq * 120 + 120}
    return json.dumps({"tokens": words, **progress})


def frame_reply(tokens: int) -> echo_upstream.Reply:
    """The reply to an audio frame: its number (the frame's first 4 bytes) in one small
    final token, or in a Soniox-like reply of ``tokens`` tokens."""
    def reply(frame: bytes, _received: int) -> str:
        seq = struct.unpack_from(">I", frame)[0]
        if tokens > 1:
            return soniox_like_reply(seq, tokens)
        return f'{{"tokens":[{{"text":" f{seq}","is_final":true}}]}}'
    return reply


# -- processes ------------------------------------------------------------------------------

# -- clients --------------------------------------------------------------------------------

@dataclass
class Client:
    url: str
    send_start: bool
    payload: bytes
    sent: dict[int, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    received: int = 0
    last_reply: float = 0.0
    finished: bool = False
    inflight: asyncio.Semaphore | None = None
    got: dict[int, asyncio.Event] = field(default_factory=dict)

    def frame(self, seq: int) -> bytes:
        return struct.pack(">I", seq) + self.payload

    async def reader(self, ws) -> None:
        async for message in ws:
            now = time.perf_counter()
            reply = json.loads(message)
            if reply.get("finished"):
                self.finished = True
                return
            if reply.get("error_code"):
                raise RuntimeError(f"error reply: {reply}")
            for token in reply.get("tokens", []):
                if not token["text"].startswith(" f"):
                    continue  # a filler word of a Soniox-like reply
                seq = int(token["text"][2:])
                sent_at = self.sent.pop(seq, None)
                if sent_at is None:
                    continue
                self.received += 1
                self.last_reply = now
                if seq > 0:
                    self.latencies.append(now - sent_at)
                if self.inflight is not None:
                    self.inflight.release()
                event = self.got.pop(seq, None)
                if event is not None:
                    event.set()

    async def send(self, ws, seq: int) -> None:
        self.sent[seq] = time.perf_counter()
        await ws.send(self.frame(seq))


async def run_clients(url: str, send_start: bool, n_clients: int, seconds: float,
                      paced: bool, proxy_pid: int | None) -> dict[str, float]:
    payload = os.urandom(FRAME_BYTES - 4)  # encoded audio does not compress either
    clients = [Client(url, send_start, payload) for _ in range(n_clients)]
    warmed = 0
    all_warm = asyncio.Event()
    go: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    stop_at = [0.0]

    async def one(client: Client, offset: float) -> int:
        nonlocal warmed
        async with connect(url, max_size=2**24, open_timeout=20, close_timeout=5) as ws:
            if send_start:
                await ws.send(START_MESSAGE)
            reader = asyncio.create_task(client.reader(ws))
            try:
                # warm-up: the upstream connection is open once this frame came back
                client.got[0] = asyncio.Event()
                await client.send(ws, 0)
                await asyncio.wait_for(client.got[0].wait(), 30)
                warmed += 1
                if warmed == n_clients:
                    all_warm.set()
                t0 = await go
                sent = 0
                if paced:
                    next_at = t0 + offset
                    while next_at < stop_at[0]:
                        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                        sent += 1
                        await client.send(ws, sent)
                        next_at += PACE_S
                else:
                    client.inflight = asyncio.Semaphore(WINDOW)
                    while time.perf_counter() < stop_at[0]:
                        await asyncio.wait_for(client.inflight.acquire(), 30)
                        sent += 1
                        await client.send(ws, sent)
                await ws.send(b"")
                await asyncio.wait_for(reader, 30)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
        return sent

    cpu0 = cpu_seconds(proxy_pid) if proxy_pid else 0.0
    tasks = [asyncio.create_task(one(c, i * PACE_S / n_clients)) for i, c in enumerate(clients)]
    try:
        await asyncio.wait_for(all_warm.wait(), 60)
        t0 = time.perf_counter()
        stop_at[0] = t0 + seconds
        go.set_result(t0)
        sent = await asyncio.wait_for(asyncio.gather(*tasks), seconds + 90)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = max(c.last_reply for c in clients) - t0  # until the last frame's reply
    cpu = (cpu_seconds(proxy_pid) - cpu0) if proxy_pid else float("nan")
    lat = sorted(x for c in clients for x in c.latencies)
    received = sum(c.received for c in clients) - n_clients  # not the warm-up frames
    return {
        "sent": sum(sent),
        "received": received,
        "missing": sum(sent) - received,
        "unfinished": sum(not c.finished for c in clients),
        "rate": received / elapsed,
        "p50": pct(lat, 0.50) * 1000 if lat else float("nan"),
        "p99": pct(lat, 0.99) * 1000 if lat else float("nan"),
        "cpu": cpu,
    }


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


# -- the run ---------------------------------------------------------------------------------

def fmt(x: float, digits: int = 1) -> str:
    return "—" if x != x else f"{x:,.{digits}f}"  # x != x: nan


async def measure(url: str, send_start: bool, pid: int | None, sat_s: float, rt_s: float
                  ) -> tuple[dict[str, float], dict[str, float]]:
    a = await run_clients(url, send_start, SAT_CLIENTS, sat_s, paced=False, proxy_pid=pid)
    await asyncio.sleep(0.5)
    b = await run_clients(url, send_start, RT_CLIENTS, rt_s, paced=True, proxy_pid=pid)
    return a, b


# The proxy's main under cProfile with a CPU clock: on a shared 2-core machine wall time
# would also count the moments the proxy was not running at all.
_PROFILED = """\
import cProfile, runpy, sys, time
profile = cProfile.Profile(time.process_time)
sys.argv[0] = "soniox-proxy"
profile.enable()
try:
    runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
finally:
    profile.disable()
    profile.dump_stats({out!r})
"""


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="5 s saturation, 6 s real time")
    p.add_argument("--only", action="append", choices=PATHS,
                   help="measure only these paths (repeatable; default: all three)")
    p.add_argument("--deflate", action="store_true",
                   help="also measure this project's proxy with --compression deflate")
    p.add_argument("--bare", action="store_true",
                   help="also measure benchmarks/bare_relay.py, a featureless relay on "
                   "websockets' sans-I/O core (what the library costs without its asyncio "
                   "layer)")
    p.add_argument("--profile", metavar="FILE", type=Path,
                   help="run this project's proxy under cProfile and write its stats here "
                   "(read them with: python -m pstats FILE)")
    p.add_argument("--reply-tokens", type=int, default=1, metavar="N",
                   help="answer each frame with a Soniox-like reply of N tokens (times, "
                   "confidence; words final in every third reply) instead of one small "
                   "token (default 1)")
    p.add_argument("--rev", metavar="REV",
                   help="also measure the proxy as it was at this git revision (e.g. the "
                   "commit before a change), in the same run")
    p.add_argument("--upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    paths = set(args.only or ["direct", "guide", "ours", "ours-asyncio"])
    if args.deflate:
        paths.add("ours-deflate")
    if args.bare:
        paths.add("bare")
    if args.rev:
        paths.add("ours-rev")
    if args.upstream is not None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(echo_upstream.run(args.upstream, frame_reply(args.reply_tokens)))
        return
    sat_s, rt_s = (5.0, 6.0) if args.quick else (15.0, 20.0)

    # SIGTERM ends the run like Ctrl-C does, so the subprocesses are stopped either way.
    signal.signal(signal.SIGTERM, _interrupt)
    procs = Processes()
    results: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
    try:
        up_port = free_port()
        procs.start([sys.executable, __file__, "--upstream", str(up_port),
                     "--reply-tokens", str(args.reply_tokens)], {}, up_port)
        upstream_url = f"ws://127.0.0.1:{up_port}/transcribe-websocket"
        env = {"SONIOX_WS_URL": upstream_url, "SONIOX_API_KEY": "bench-key"}

        if "direct" in paths:
            print("direct ...", file=sys.stderr)
            results["direct"] = asyncio.run(measure(upstream_url, True, None, sat_s, rt_s))

        if "guide" in paths:
            port = free_port()
            seed = procs.start([sys.executable, str(SEED)], {**env, "PORT": str(port)}, port)
            print("guide's proxy ...", file=sys.stderr)
            results["guide"] = asyncio.run(
                measure(f"ws://127.0.0.1:{port}/", False, seed.pid, sat_s, rt_s))
            procs.stop(seed)

        if "bare" in paths:
            port = free_port()
            bare = procs.start([sys.executable, str(ROOT / "benchmarks" / "bare_relay.py")],
                               {**env, "PORT": str(port)}, port)
            print("bare relay ...", file=sys.stderr)
            results["bare"] = asyncio.run(
                measure(f"ws://127.0.0.1:{port}/", False, bare.pid, sat_s, rt_s))
            procs.stop(bare)

        for key, options in VARIANTS.items():
            if key not in paths:
                continue
            port = free_port()
            profile = ["-c", _PROFILED.format(out=str(args.profile.resolve()))] \
                if args.profile and key == "ours" else ["-m"]
            ours = procs.start([sys.executable, *profile, "soniox_widget.proxy",
                                "--port", str(port), "--max-sessions", str(RT_CLIENTS * 2),
                                "--idle-timeout", "0", *options], env, port)
            print(f"{key} ...", file=sys.stderr)
            results[key] = asyncio.run(
                measure(f"ws://127.0.0.1:{port}/ws", False, ours.pid, sat_s, rt_s))
            procs.stop(ours)

        if "ours-rev" in paths:
            with tempfile.TemporaryDirectory(prefix="bench_proxy_rev_") as old_root:
                extract_package(args.rev, Path(old_root))
                port = free_port()
                old = procs.start([sys.executable, "-m", "soniox_widget.proxy",
                                   "--port", str(port), "--max-sessions", str(RT_CLIENTS * 2),
                                   "--idle-timeout", "0"], env, port, root=Path(old_root))
                print(f"ours at {args.rev} ...", file=sys.stderr)
                results["ours-rev"] = asyncio.run(
                    measure(f"ws://127.0.0.1:{port}/ws", False, old.pid, sat_s, rt_s))
                procs.stop(old)
    finally:
        procs.stop_all()
    report(results, sat_s, rt_s, args.quick, args.reply_tokens, args.rev)


def report(results, sat_s: float, rt_s: float, quick: bool, reply_tokens: int,
           rev: str | None = None) -> None:
    names = {"direct": "direct to upstream", "guide": "guide's proxy (seed_proxy.py)",
             "ours": "soniox_widget.proxy", "ours-asyncio": "soniox_widget.proxy --loop asyncio",
             "ours-deflate": "soniox_widget.proxy --compression deflate",
             "bare": "bare sans-I/O relay, no features (bare_relay.py)",
             "ours-rev": f"soniox_widget.proxy at {rev}"}
    print(f"#### Proxy benchmark ({'--quick' if quick else 'full'}: saturation "
          f"{SAT_CLIENTS} clients x {sat_s:g} s, window {WINDOW}; {RT_CLIENTS} clients at one "
          f"{FRAME_BYTES} B frame per {PACE_S * 1000:g} ms x {rt_s:g} s; replies of "
          f"{reply_tokens} token{'s' if reply_tokens > 1 else ''})\n")
    print("| path | saturation msg/s (A) | p50 at 50 streams, ms (B) | p99 at 50 streams, ms (B) "
          "| proxy CPU µs per message (A) | proxy CPU s for the same work (B) "
          "| lost replies (A / B) |")
    print("|---|---|---|---|---|---|---|")
    guide = results.get("guide")

    def cell(value: float, ref: float | None, digits: int) -> str:
        # "x guide" beside each proxy's number: the ratio measured in this very run.
        if ref is None or not ref or value != value:
            return fmt(value, digits)
        return f"{fmt(value, digits)} ({value / ref:.2f}x guide)"

    def per_msg(a: dict[str, float]) -> float:
        return a["cpu"] / a["received"] * 1e6 if a["received"] else float("nan")

    for key, (a, b) in results.items():
        ga, gb = guide if guide is not None and key not in ("direct", "guide") \
            else (None, None)
        print(f"| {names[key]} | {cell(a['rate'], ga and ga['rate'], 0)}"
              f" | {cell(b['p50'], gb and gb['p50'], 2)} | {cell(b['p99'], gb and gb['p99'], 2)}"
              f" | {cell(per_msg(a), ga and per_msg(ga), 0)}"
              f" | {cell(b['cpu'], gb and gb['cpu'], 2)}"
              f" | {a['missing'] + a['unfinished']:g} / {b['missing'] + b['unfinished']:g} |")
    any_b = next(iter(results.values()))[1]
    print(f"\nB: {int(any_b['sent'])} frames per path; "
          "lost replies counts frames without a reply plus clients without `finished`.")


if __name__ == "__main__":
    main()
