"""Transcript latency of the notebook widget against the guide's page, in a real browser.

    .venv/bin/python benchmarks/bench_widget_latency.py           # 4 rounds of 15 s (~7 min)
    .venv/bin/python benchmarks/bench_widget_latency.py --quick   # 2 rounds of 6 s (~3 min)
    .venv/bin/python benchmarks/bench_widget_latency.py --hops    # + where each chunk's time goes

Four systems, measured side by side in one run, in one headless Chromium (Debian's
/usr/bin/chromium) with a fake microphone, against the same echo upstream:

- guide: the guide's page and proxy, run unchanged from ``ROOT.parent/"shared"/"seed"``
  (the page is served as it is; its hard-coded ws://localhost:3001/ is pointed at this
  run's proxy port by a WebSocket wrapper in the page);
- widget as installed: ``SonioxRecorder(url=<echo>)`` in JupyterLab, with this package's
  two server extensions (soniox_widget.jupyter_nodelay: TCP_NODELAY on kernel WebSockets;
  soniox_widget.jupyter_quiet_status: no busy status shown for audio chunks);
- the same with quiet_status off (the page flips busy/idle, and its favicon, per chunk);
- the same on a plain Jupyter server (both extensions off: Nagle's algorithm too).

``--only-widget`` measures the guide and the widget as installed only.

The echo upstream (a websockets server in its own process, ``--upstream``) answers every
audio frame at once with one final token naming how many audio bytes it has received so
far (`` b1234``). In the page, a MediaRecorder wrapper stamps each chunk's emission
(``performance.now()`` in its ``dataavailable``) with the running byte count, and a
MutationObserver stamps the moment the transcript first shows a token covering that
byte: the same clock, no clock sync. A byte count rather than a frame number keeps the
match right if a path merges or splits chunks.

chunk -> text: every chunk emitted before Stop was clicked, except each recording's first
(it waits for the connection to the upstream; that is in "click -> first text").
Rounds alternate between the systems, with one unmeasured warm-up recording each.
Prints a markdown table with ratios to the guide's page, and a second one splitting the
same chunks in three legs seen from the page: chunk -> on the WebSocket (reading the
Blob, the front end's message), -> its answer arrives (everything outside the page:
Jupyter server, kernel, upstream; or the guide's proxy), answer -> text on the page
(the page's own handling and rendering).

With ``--hops`` the first widget's kernel (a probe added to the notebook cell) and its
Jupyter server (``hop_stamps.py``, a server extension used only here) stamp each chunk on
the wall clock too, so its time splits into legs across the three processes; the report
adds p50/p90/p99 per leg, and for the slowest 5 % of chunks what else ran meanwhile: the
kernel's garbage collections and event-loop stalls, the server's HTTP requests and
stalls. That is how the busy/idle favicon requests were found (issue 11).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import echo_upstream
import local_http
from echo_upstream import free_port

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [  # as in tests/e2e/conftest.py
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
NODELAY_EXTENSION = "soniox_widget.jupyter_nodelay"
QUIET_EXTENSION = "soniox_widget.jupyter_quiet_status"
GUIDE_WS = "ws://localhost:3001/"


# -- the echo upstream (its own process) ------------------------------------------------

def byte_count_reply(_frame: bytes, received: int) -> str:
    """One final token naming how many audio bytes the upstream has so far."""
    return f'{{"tokens":[{{"text":" b{received}","is_final":true}}]}}'


# -- processes and servers ----------------------------------------------------------------

def wait_until(ready, proc: subprocess.Popen, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.2)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Processes:
    """Every child process of the run; all are stopped at the end, whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict[str, str], log: Path | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        out = open(log, "w") if log else subprocess.DEVNULL
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def clean_env() -> dict[str, str]:
    """No real key or upstream reaches the systems under test."""
    env = {k: v for k, v in os.environ.items() if k not in ("SONIOX_API_KEY", "SONIOX_WS_URL")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@dataclass
class Lab:
    port: int
    token: str
    root: Path
    log: Path

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{sep}token={self.token}"


def start_lab(procs: Processes, root: Path, nodelay: bool, quiet: bool,
              server_hops: Path | None = None) -> Lab:
    """JupyterLab on 127.0.0.1 with this package's server extensions on or off in its own
    config (and with ``server_hops``, ``hop_stamps.py`` stamping widget messages there)."""
    root.mkdir(parents=True)
    config_dir = root / ".jupyter-config"
    config_dir.mkdir()
    extensions = {NODELAY_EXTENSION: nodelay, QUIET_EXTENSION: quiet}
    env = clean_env()
    if server_hops is not None:
        extensions["hop_stamps"] = True
        env["PYTHONPATH"] += os.pathsep + str(Path(__file__).resolve().parent)
        env["SONIOX_BENCH_SERVER_HOPS"] = str(server_hops)
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": extensions}}))
    env["JUPYTER_CONFIG_DIR"] = str(config_dir)
    lab = Lab(free_port(), secrets.token_hex(16), root, root / "jupyter.log")
    proc = procs.start(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={lab.port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={lab.token}",
         f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.allow_root=True", "--LabApp.extension_manager=readonly",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env, log=lab.log, cwd=root)
    wait_until(lambda: port_open(lab.port), proc, "JupyterLab")
    deadline = time.monotonic() + 30
    while "Jupyter Server" not in lab.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = lab.log.read_text()
    if (f"{NODELAY_EXTENSION}: TCP_NODELAY on" in log) != nodelay or \
            (f"{QUIET_EXTENSION}: the page is not shown" in log) != quiet:
        raise SystemExit(f"JupyterLab (nodelay={nodelay}, quiet={quiet}) says otherwise; "
                         f"see {lab.log}")
    return lab


def write_mic_wav(path: Path, seconds: float = 8.0, rate: int = 48000) -> Path:
    """A fake microphone signal with speech-like energy (so Opus chunks have real sizes):
    a few harmonics whose loudness rises and falls at syllable rate, plus some noise."""
    import random

    rng = random.Random(11)
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        envelope = 0.5 + 0.5 * math.sin(2 * math.pi * 4 * t)
        voice = sum(math.sin(2 * math.pi * f * t) / k
                    for k, f in enumerate((140, 280, 420, 700), start=1))
        x = 0.25 * envelope * voice + 0.02 * (rng.random() - 0.5)
        frames += int(max(-1.0, min(1.0, x)) * 32767).to_bytes(2, "little", signed=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path


# -- in the page ----------------------------------------------------------------------------

# Installed before the page's own scripts. Each MediaRecorder is one round: its chunks as
# [running byte count, emitted at, first shown at]. The observer reads the last token of
# the transcript element, which names the bytes the upstream had when it answered; after a
# click it waits until the last recording's text is gone (both pages clear it on start).
PAGE_PROBE = r"""
(() => {
  const B = window.__bench = { rounds: [], clickAt: null, stopAt: null, firstTextAt: null,
                               cleared: true, selector: __SELECTOR__ };
  const wsFrom = __WS_FROM__, wsTo = __WS_TO__;
  const current = () => B.rounds[B.rounds.length - 1];
  const text = (data) => typeof data === "string" ? data
    : new TextDecoder().decode(data instanceof ArrayBuffer ? data : data.buffer || data);
  // Where the time goes: when a chunk leaves on a WebSocket (the guide's page sends the
  // bytes alone, in order; the widget sends a comm message with "chunk" and its "seq"),
  // and when a message naming its bytes arrives, before the page's own handler runs.
  if (window.WebSocket) {
    const Plain = window.WebSocket;
    window.WebSocket = class extends Plain {
      constructor(url, protocols) {
        super(url === wsFrom ? wsTo : url, protocols);
        this.addEventListener("message", (e) => {
          const round = current();
          if (!round || B.clickAt === null || e.data instanceof Blob) return;
          let upto = -1;
          for (const m of text(e.data).matchAll(/ b(\d+)/g)) upto = Math.max(upto, +m[1]);
          if (upto < 0) return;
          const now = performance.now();
          for (const c of round.chunks) if (c[0] <= upto && c[4] === null) c[4] = now;
        });
      }
      send(data) {
        const round = current();
        if (round && typeof data !== "string" && data.byteLength > 0) {
          const now = performance.now();
          if (wsFrom) {
            const c = round.chunks.find((c) => c[3] === null);
            if (c) c[3] = now;
          } else {
            const head = text(data.slice ? data.slice(0, 4096) : data);
            const m = /"type":\s*"chunk"[^}]*"seq":\s*(\d+)|"seq":\s*(\d+)[^}]*"type":\s*"chunk"/
              .exec(head);
            const c = m && round.chunks[+(m[1] || m[2])];
            if (c && c[3] === null) c[3] = now;
          }
        }
        return super.send(data);
      }
    };
  }
  const Recorder = window.MediaRecorder;
  if (Recorder) {
    window.MediaRecorder = class extends Recorder {
      constructor(...args) {
        super(...args);
        const round = { chunks: [], bytes: 0, seen: 0 };
        B.rounds.push(round);
        this.addEventListener("dataavailable", (e) => {
          if (!e.data || e.data.size === 0) return;
          round.bytes += e.data.size;
          // bytes so far, emitted, shown, left on the socket, answer arrived
          round.chunks.push([round.bytes, performance.now(), null, null, null]);
        });
      }
    };
  }
  const shown = () => {
    const el = document.querySelector(B.selector);
    if (!el) return;
    const m = /b(\d+)\s*$/.exec(el.textContent);
    if (!m) { B.cleared = true; return; }
    if (!B.cleared) return;  // still the last recording's text
    const now = performance.now(), upto = Number(m[1]);
    if (B.firstTextAt === null && B.clickAt !== null) B.firstTextAt = now;
    const round = B.rounds[B.rounds.length - 1];
    if (!round) return;
    while (round.seen < round.chunks.length && round.chunks[round.seen][0] <= upto) {
      round.chunks[round.seen][2] = now;
      round.seen++;
    }
  };
  new MutationObserver(shown).observe(document,
    { subtree: true, childList: true, characterData: true });
})();
"""

# With --hops, the widget's kernel stamps (wall clock, ms) when each chunk's comm message
# reaches the widget, when the upstream's answer naming its bytes reaches the recorder, and
# when the view message carrying it is handed to the comm (before and after the send).
# The page stamps the same chunk on the same clock (performance.timeOrigin + now), so
# each chunk's time splits into legs across the processes. Written at each recording's end.
KERNEL_PROBE = r"""
import json as _json, re as _re, time as _time
import gc as _gc
_hops = {"in": {}, "reply": [], "send": [], "events": []}
_gc_start = {}
def _on_gc(phase, info):
    if phase == "start":
        _gc_start["t"] = _time.time() * 1000
    elif info["generation"] == 2 or _time.time() * 1000 - _gc_start.get("t", 0) > 2:
        _hops["events"].append(("kernel gc%d" % info["generation"], _gc_start.get("t", 0),
                                _time.time() * 1000 - _gc_start.get("t", 0)))
_gc.callbacks.append(_on_gc)
import hop_stamps as _hop_stamps
_hop_stamps.watch_loop(lambda at, late: _hops["events"].append(("kernel loop late", at, late)))
_receive = rec._receive_from_front_end
def _stamp_in(widget, content, buffers):
    if isinstance(content, dict) and content.get("type") == "chunk":
        _hops["in"][content.get("seq")] = _time.time() * 1000
    _receive(widget, content, buffers)
rec.on_msg(_receive, remove=True)
rec.on_msg(_stamp_in)
_upto = lambda text: max((int(m) for m in _re.findall(r" b(\d+)", text)), default=-1)
_apply = rec._apply
def _stamp_reply(reply):
    _hops["reply"].append((_upto(" ".join(t.text for t in reply.tokens)), _time.time() * 1000))
    _apply(reply)
rec._apply = _stamp_reply
_send = rec.send
def _stamp_send(content, buffers=None):
    before = _time.time() * 1000
    _send(content, buffers)
    _hops["send"].append((_upto(_json.dumps(content)), before, _time.time() * 1000))
rec.send = _stamp_send
def _dump(change):
    if change["new"] == "idle":
        with open(__HOPS__, "w") as f:
            _json.dump(_hops, f)
        for _v in _hops.values():
            _v.clear()
rec.observe(_dump, names="status")
"""

CLICK = """(sel) => {
  const B = window.__bench;
  B.clickAt = performance.now(); B.firstTextAt = null; B.stopAt = null; B.cleared = false;
  document.querySelector(sel).click();
}"""
STOP = """(sel) => { window.__bench.stopAt = performance.now();
                     document.querySelector(sel).click(); }"""
RESULT = """() => { const B = window.__bench; const r = B.rounds[B.rounds.length - 1];
  return { clickAt: B.clickAt, stopAt: B.stopAt, firstTextAt: B.firstTextAt,
           timeOrigin: performance.timeOrigin,
           rounds: B.rounds.length, chunks: r ? r.chunks : [] }; }"""


@dataclass
class System:
    name: str
    page: object
    button: str
    idle: str | None  # a selector that appears when a recording has ended
    latencies: list[float] = field(default_factory=list)
    to_socket: list[float] = field(default_factory=list)  # emitted -> left on a WebSocket
    round_trip: list[float] = field(default_factory=list)  # left -> answer arrived
    to_text: list[float] = field(default_factory=list)  # answer arrived -> shown
    first_text: list[float] = field(default_factory=list)
    missing: int = 0
    chunks: int = 0
    hops: Path | None = None  # the kernel's stamps (--hops), read after each round
    server_hops: Path | None = None  # the Jupyter server's (hop_stamps.py), the same
    legs: dict[str, list[float]] = field(default_factory=dict)
    slowest: list[tuple[float, str]] = field(default_factory=list)  # (total, largest leg)
    notes: list[tuple[float, str, float, list[str]]] = field(default_factory=list)

    def record(self, seconds: float, measured: bool) -> None:
        page = self.page
        page.bring_to_front()
        if self.server_hops is not None:
            self.server_hops.write_text("")  # only this round's stamps
        before = page.evaluate("() => window.__bench.rounds.length")
        page.evaluate(CLICK, self.button)
        page.wait_for_function(f"() => window.__bench.rounds.length > {before}",
                               timeout=30_000)
        page.wait_for_timeout(seconds * 1000)
        page.evaluate(STOP, self.button)
        if self.idle:
            page.wait_for_selector(self.idle, timeout=30_000)
        page.wait_for_timeout(1000)  # the page's last answers, and a quiet gap
        if not measured:
            return
        r = page.evaluate(RESULT)
        if r["firstTextAt"] is not None:
            self.first_text.append(r["firstTextAt"] - r["clickAt"])
        for i, (_, emitted, shown, sent, arrived) in enumerate(r["chunks"]):
            if i == 0 or emitted >= r["stopAt"]:
                continue
            self.chunks += 1
            if shown is None:
                self.missing += 1
                continue
            self.latencies.append(shown - emitted)
            if sent is not None and arrived is not None and emitted <= sent <= arrived <= shown:
                self.to_socket.append(sent - emitted)
                self.round_trip.append(arrived - sent)
                self.to_text.append(shown - arrived)
        if self.hops is not None:
            server: list[dict] = []
            if self.server_hops is not None and self.server_hops.exists():
                lines = self.server_hops.read_text().splitlines()
                server = [json.loads(line) for line in lines if line.strip()]
            self._split(r, json.loads(self.hops.read_text()), server)

    def _split(self, r: dict, hops: dict, server: list[dict]) -> None:
        """Each chunk's time in legs across the page, the Jupyter server and the kernel."""
        origin = r["timeOrigin"]
        arrived_in = {int(k): v for k, v in hops["in"].items()}
        server_in = {s["in"]: s["t"] for s in server if "in" in s}
        server_out = [(s["out"], s["t"]) for s in server if "out" in s]
        # (what, start, duration) on the wall clock, to line up with the slowest chunks
        events = [(name, start, ms) for name, start, ms in hops.get("events", [])]
        events += [(f"server {s['http']}", s["t"] - s["ms"], s["ms"]) for s in server
                   if "http" in s and not s["http"].endswith("/channels")]
        events += [("server loop late", s["t"] - s["lag"], s["lag"]) for s in server
                   if "lag" in s]

        def first(stamps: list, upto: int) -> list | None:
            return next((s for s in stamps if s[0] >= upto), None)

        for i, (upto, emitted, shown, sent, arrived) in enumerate(r["chunks"]):
            if i == 0 or emitted >= r["stopAt"] or None in (shown, sent, arrived):
                continue
            k_in, reply, send = arrived_in.get(i), first(hops["reply"], upto), \
                first(hops["send"], upto)
            if k_in is None or reply is None or send is None:
                continue
            s_in, s_out = server_in.get(i), first(server_out, upto)
            legs = {"page → kernel (comm message in)": k_in - (origin + sent)}
            if server and s_in is not None and s_out is not None:
                legs = {"page → Jupyter server": s_in - (origin + sent),
                        "Jupyter server → kernel (comm message in)": k_in - s_in}
            legs |= {
                "kernel → upstream → kernel (answer in)": reply[1] - k_in,
                "answer → view message handed to the comm": send[1] - reply[1],
                "comm send call": send[2] - send[1],
            }
            if server and s_in is not None and s_out is not None:
                legs |= {"kernel → Jupyter server (IOPub)": s_out[1] - send[2],
                         "Jupyter server → page (message arrives)": origin + arrived - s_out[1]}
            else:
                legs["kernel → page (view message arrives)"] = origin + arrived - send[2]
            legs["page handles and draws it"] = shown - arrived
            for name, value in legs.items():
                self.legs.setdefault(name, []).append(value)
            largest = max(legs, key=legs.__getitem__)
            start, end = origin + emitted, origin + shown
            during = sorted({f"{name} {ms:.0f} ms" for name, at, ms in events
                             if at < end and at + ms > start})
            self.slowest.append((shown - emitted, largest))
            self.notes.append((shown - emitted, largest, legs[largest], during))


def guide_system(context, page_port: int, proxy_port: int) -> System:
    page = context.new_page()
    page.add_init_script(script=PAGE_PROBE.replace("__SELECTOR__", json.dumps("#final"))
                         .replace("__WS_FROM__", json.dumps(GUIDE_WS))
                         .replace("__WS_TO__", json.dumps(f"ws://127.0.0.1:{proxy_port}/")))
    page.goto(f"http://127.0.0.1:{page_port}/seed_client.html")
    page.wait_for_selector("#trigger")
    # The guide's page has no "done" state: Start shows again at once, and the page
    # gets no more text after the proxy relays the upstream's finished reply.
    return System("guide's page → guide's proxy", page, "#trigger", None)


def widget_system(context, lab: Lab, echo_port: int, name: str,
                  hops: Path | None = None, server_hops: Path | None = None) -> System:
    import nbformat

    nb = nbformat.v4.new_notebook()
    source = ("from soniox_widget import SonioxRecorder\n"
              f"rec = SonioxRecorder(url='ws://127.0.0.1:{echo_port}/transcribe-websocket')\n")
    if hops is not None:
        source += KERNEL_PROBE.replace("__HOPS__", repr(str(hops)))
    nb.cells = [nbformat.v4.new_code_cell(source + "rec")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, lab.root / "bench.ipynb")
    out = ".jp-OutputArea-output"
    page = context.new_page()
    page.add_init_script(script=PAGE_PROBE.replace("__SELECTOR__",
                                                   json.dumps(f"{out} .soniox-final"))
                         .replace("__WS_FROM__", "null").replace("__WS_TO__", "null"))
    page.goto(lab.url("/lab/tree/bench.ipynb?reset"), timeout=90_000)
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " return !!(w && w.sessionContext && w.sessionContext.session &&"
        " w.sessionContext.session.kernel &&"
        " w.sessionContext.session.kernel.connectionStatus === 'connected'); }",
        timeout=120_000)
    page.evaluate("""async () => {
        const panel = window.jupyterapp.shell.currentWidget;
        panel.content.activeCellIndex = 0;
        await window.jupyterapp.commands.execute('notebook:run-cell'); }""")
    page.wait_for_selector(f"{out} .soniox-recorder[data-status='idle']", timeout=120_000)
    return System(name, page, f"{out} .soniox-button",
                  f"{out} .soniox-recorder[data-status='idle']", hops=hops,
                  server_hops=server_hops)


# -- report ------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def fmt(x: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def report(systems: list[System], rounds: int, seconds: float) -> None:
    guide = systems[0]
    g50, g99 = pct(guide.latencies, 50), pct(guide.latencies, 99)
    print(f"\n#### Widget transcript latency ({rounds} rounds of {seconds:g} s per system, "
          "echo upstream, headless Chromium, fake microphone)\n")
    print("| system | chunks | chunk → text p50 | p99 | p50 vs guide | p99 vs guide "
          "| click → first text (median) | chunks never shown |")
    print("|---|---|---|---|---|---|---|---|")
    for s in systems:
        p50, p99 = pct(s.latencies, 50), pct(s.latencies, 99)
        print(f"| {s.name} | {s.chunks} | {fmt(p50)} ms | {fmt(p99)} ms | "
              f"{fmt(p50 / g50)}x | {fmt(p99 / g99)}x | {fmt(pct(s.first_text, 50), 0)} ms "
              f"| {s.missing} |")
    print("\nWhere the time goes (medians over the same chunks; the page's WebSocket is "
          "wrapped to see when a chunk leaves and when its answer arrives):\n")
    print("| system | chunk → on the WebSocket | → answer arrives (server, kernel, upstream) "
          "| answer → text on the page |")
    print("|---|---|---|---|")
    for s in systems:
        print(f"| {s.name} | {fmt(pct(s.to_socket, 50))} ms | {fmt(pct(s.round_trip, 50))} ms "
              f"| {fmt(pct(s.to_text, 50))} ms |")
    print()
    for s in systems:
        if not s.legs:
            continue
        print(f"Legs of each chunk, {s.name} (--hops: page and kernel stamps on the wall "
              "clock):\n")
        print("| leg | p50 | p90 | p99 | max | largest leg of the slowest 5 % |")
        print("|---|---|---|---|---|---|")
        slow = sorted(s.slowest, reverse=True)[:max(1, len(s.slowest) // 20)]
        for name, values in s.legs.items():
            count = sum(1 for _, leg in slow if leg == name)
            print(f"| {name} | {fmt(pct(values, 50), 2)} ms | {fmt(pct(values, 90), 2)} ms | "
                  f"{fmt(pct(values, 99), 2)} ms | {fmt(max(values), 2)} ms | "
                  f"{count} of {len(slow)} |")
        print("\nThe slowest 5 % of chunks, and what else ran meanwhile (kernel GC and "
              "event-loop stalls over 3 ms, the Jupyter server's HTTP requests and stalls):\n")
        for total, leg, ms, during in sorted(s.notes, reverse=True)[:len(slow)]:
            print(f"- {total:.1f} ms, most in {leg} ({ms:.1f} ms): "
                  f"{'; '.join(during) or 'nothing recorded'}")
        during_any = sum(1 for *_, d in s.notes if d)
        print(f"\n(of all {len(s.notes)} chunks, {during_any} overlapped such an event)\n")


# -- main -------------------------------------------------------------------------------------

def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 rounds of 6 s per system")
    p.add_argument("--rounds", type=int, help="rounds per system (default 4; --quick 2)")
    p.add_argument("--seconds", type=float, help="length of a round (default 15; --quick 6)")
    p.add_argument("--hops", action="store_true",
                   help="also stamp each chunk in the kernel and split its time in legs")
    p.add_argument("--only-widget", action="store_true",
                   help="only the widget as installed (no variants with extensions off)")
    p.add_argument("--upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.upstream:
        asyncio.run(echo_upstream.run(args.upstream, byte_count_reply))
        return
    rounds = args.rounds or (2 if args.quick else 4)
    seconds = args.seconds or (6.0 if args.quick else 15.0)
    if not (SEED / "seed_client.html").exists() or not Path(CHROMIUM).exists():
        raise SystemExit(f"needs {SEED}/seed_client.html, seed_proxy.py and {CHROMIUM}")
    signal.signal(signal.SIGTERM, _interrupt)
    from playwright.sync_api import sync_playwright

    procs = Processes()
    with contextlib.ExitStack() as stack, \
            tempfile.TemporaryDirectory(prefix="bench-widget-") as tmp_name:
        stack.callback(procs.stop_all)
        tmp = Path(tmp_name)
        echo_port, proxy_port = free_port(), free_port()
        echo = procs.start([sys.executable, str(Path(__file__).resolve()), "--upstream",
                            str(echo_port)], clean_env())
        wait_until(lambda: port_open(echo_port), echo, "the echo upstream")
        seed_env = {**clean_env(), "SONIOX_WS_URL": f"ws://127.0.0.1:{echo_port}/",
                    "SONIOX_API_KEY": "bench-no-key", "PORT": str(proxy_port)}
        proxy = procs.start([sys.executable, str(SEED / "seed_proxy.py")], seed_env, cwd=tmp)
        wait_until(lambda: port_open(proxy_port), proxy, "the guide's proxy")
        # The guide's page, served as it is from the seed folder.
        page_port = stack.enter_context(local_http.serving(
            functools.partial(local_http.QuietHandler, directory=str(SEED))))
        server_hops = tmp / "hops-server.jsonl" if args.hops else None
        variants = [("widget (as installed: both server extensions)", True, True)]
        if not args.only_widget:
            variants += [("widget, busy/idle shown per chunk (quiet_status off)", True, False),
                         ("widget, plain Jupyter server (both extensions off)", False, False)]
        labs = [start_lab(procs, tmp / f"lab-{i}", nodelay, quiet,
                          server_hops if i == 0 else None)
                for i, (_, nodelay, quiet) in enumerate(variants)]
        wav = write_mic_wav(tmp / "mic.wav")

        pw = stack.enter_context(sync_playwright())
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=[*CHROMIUM_FLAGS, "--use-fake-device-for-media-stream",
                  "--use-fake-ui-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
                  "--autoplay-policy=no-user-gesture-required"])
        stack.callback(browser.close)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        systems = [guide_system(context, page_port, proxy_port)]
        for i, ((name, _, _), lab) in enumerate(zip(variants, labs, strict=True)):
            hops = tmp / "hops-kernel.json" if args.hops and i == 0 else None
            systems.append(widget_system(context, lab, echo_port, name, hops=hops,
                                         server_hops=server_hops if hops else None))
        for s in systems:
            print(f"warm-up: {s.name}", file=sys.stderr)
            s.record(2.0, measured=False)
        for r in range(rounds):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            for s in order:
                print(f"round {r + 1}/{rounds}: {s.name}", file=sys.stderr)
                s.record(seconds, measured=True)
        report(systems, rounds, seconds)


if __name__ == "__main__":
    main()
