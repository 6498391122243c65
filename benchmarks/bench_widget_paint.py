"""What one transcript update and the level meter cost the widget's view, in a real browser.

    .venv/bin/python benchmarks/bench_widget_paint.py           # 3 rounds (~3 min on 2 cores)
    .venv/bin/python benchmarks/bench_widget_paint.py --quick   # 1 round (~40 s)
    .venv/bin/python benchmarks/bench_widget_paint.py --against REV   # another baseline

Two front ends side by side in one headless Chromium (Debian's /usr/bin/chromium, fresh
profile): the current ``soniox_widget/static/widget.js`` (+ widget.css) and the same files
at git revision REV (default ``1f1bfd3^``, the view before deltas were painted
incrementally), read with ``git show``. Both are driven through the public anywidget entry,
``render({model, el})``, with a fake model whose ``msg:custom`` listeners get the messages
the kernel sends: built here by the kernel's own code (Soniox replies parsed by
``protocol.parse_reply``, folded by ``Transcript``, turned into ``view_messages.delta`` /
``snapshot`` as ``SonioxRecorder`` does). Pages are served from 127.0.0.1 only, with
cross-origin isolation so ``performance.now()`` has microsecond resolution.

Paint: the page holds ``--host-nodes`` other elements (JupyterLab pages have thousands,
and a layout covers them all), receives a snapshot of N - D/2 final tokens, then D deltas
(one new final word and the next word's non-final start each), one per animation frame.
Per delta it times the view's message handler alone, and the handler plus a forced layout
read (``document.body.offsetHeight``) right after it: the layout the update leaves for the
browser's next frame (an update that reads layout itself pays it inside the handler).
At N = 64 and 5000 tokens, one speaker and a speaker change every 20 tokens.

Meter: the Record button is clicked (fake microphone, nothing sent back), and the page's
main-thread time (CDP ``Performance.getMetrics``: TaskDuration, ScriptDuration, layout and
style) is taken over 10 s of the recording, after 1 s to settle.

Rounds alternate the order of the two front ends. Prints markdown tables with
baseline / current ratios (above 1: the current view is cheaper).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import local_http

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soniox_widget import view_messages as vm  # noqa: E402
from soniox_widget.protocol import parse_reply  # noqa: E402
from soniox_widget.transcript import Transcript, segments_of  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [  # as in tests/e2e/conftest.py
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
MEDIA_FLAGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
STATIC = "soniox_widget/static"
DEFAULT_BASELINE = "1f1bfd3^"
SIZES = (64, 5000)
SPEAKER_MODES = (0, 20)  # 0: one speaker; n: the speaker changes every n tokens
METER_KEYS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")

# The harness page: loads one front end, renders it with a fake model, and either plays
# the paint scenario (messages.json) or waits for the meter run. Results go to
# window.result (read by Playwright); nothing leaves 127.0.0.1.
PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/{version}/widget.css"></head>
<body><div id="host"></div><div id="root"></div>
<script type="module">
const params = new URLSearchParams(location.search);
const mod = await import("/{version}/widget.js");
const host = document.getElementById("host");
for (let i = 0; i < Number(params.get("hostNodes") || 0); i++) {{
  const d = document.createElement("div");
  d.textContent = "cell output line " + i;
  host.append(d);
}}
const traits = {{ status: params.get("status"), saved_transcript: {{}}, error: "",
  active_view: "", engine_label: "", engine_kind: "", device: "", device_id: "",
  timeslice_ms: 120, audio_bits_per_second: 32000 }};
const listeners = {{}};
const model = {{ get: (k) => traits[k], set(k, v) {{ traits[k] = v; }}, save_changes() {{}},
  send() {{}}, on(e, cb) {{ (listeners[e] ||= []).push(cb); }},
  off(e, cb) {{ listeners[e] = (listeners[e] || []).filter((f) => f !== cb); }} }};
mod.default.render({{ model, el: document.getElementById("root") }});
const fire = (msg) => (listeners["msg:custom"] || []).forEach((cb) => cb(msg, []));
const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
window.clickRecord = () => document.querySelector(".soniox-button").click();
window.paintRun = async () => {{
  const {{ setup, measured }} = await (await fetch(params.get("messages"))).json();
  setup.forEach(fire);
  await frame(); await frame();
  const handler = [], withLayout = [];
  for (const msg of measured) {{
    const t0 = performance.now();
    fire(msg);
    const t1 = performance.now();
    document.body.offsetHeight;  // the layout this update leaves for the next frame
    const t2 = performance.now();
    handler.push(t1 - t0);
    withLayout.push(t2 - t0);
    await frame();
  }}
  const shown = document.querySelector(".soniox-recorder").textContent;
  return {{ handler, withLayout, isolated: self.crossOriginIsolated,
    lastWordShown: shown.includes(measured.at(-1).final.at(-1).text.trim()) }};
}};
window.ready = true;
</script></body></html>
"""


# -- what the kernel sends ---------------------------------------------------------------

def _token(i: int, speaker_every: int, *, final: bool, partial: bool = False) -> dict:
    speaker = str(1 + (i // speaker_every) % 3) if speaker_every else "1"
    text = f" word{i}"
    return {"text": text[:4] if partial else text, "is_final": final,
            "speaker": speaker, "language": "en"}


def kernel_messages(size: int, deltas: int, speaker_every: int) -> dict[str, list[dict]]:
    """A snapshot of ``size - deltas // 2`` final tokens, then ``deltas`` deltas of one
    final word each (and the next word's non-final start), as ``SonioxRecorder`` builds
    them from Soniox replies."""
    t = Transcript()
    first = max(1, size - deltas // 2)
    t.apply(parse_reply({"tokens": [_token(i, speaker_every, final=True)
                                    for i in range(first)]}))
    rev = 1
    setup = [vm.snapshot(rev, t.segments(), segments_of(t.nonfinal_tokens))]
    measured = []
    for i in range(first, first + deltas):
        reply = {"tokens": [_token(i, speaker_every, final=True),
                            _token(i + 1, speaker_every, final=False, partial=True)]}
        delta = t.apply(parse_reply(reply))
        measured.append(vm.delta(rev + 1, rev, segments_of(delta.final_tokens),
                                 segments_of(t.nonfinal_tokens)))
        rev += 1
    return {"setup": setup, "measured": measured}


# -- serving -----------------------------------------------------------------------------

def git_file(rev: str, path: str) -> bytes:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True,
                          capture_output=True).stdout


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, tuple[bytes, str]] = {}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        body, kind = self.files.get(path, (b"", ""))
        self.send_response(200 if kind else 404)
        self.send_header("Content-Type", kind or "text/plain")
        self.send_header("Content-Length", str(len(body)))
        # Cross-origin isolation: performance.now() at 5 us instead of 100 us.
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(files: dict[str, tuple[bytes, str]]):
    """These files over HTTP on 127.0.0.1 (a context manager yielding the port)."""
    return local_http.serving(type("Handler", (_Handler,), {"files": files}))


def site(baseline: str, deltas: int) -> dict[str, tuple[bytes, str]]:
    js, css, html = "text/javascript", "text/css", "text/html; charset=utf-8"
    files = {
        "/current/widget.js": ((ROOT / STATIC / "widget.js").read_bytes(), js),
        "/current/widget.css": ((ROOT / STATIC / "widget.css").read_bytes(), css),
        "/baseline/widget.js": (git_file(baseline, f"{STATIC}/widget.js"), js),
        "/baseline/widget.css": (git_file(baseline, f"{STATIC}/widget.css"), css),
    }
    for version in ("current", "baseline"):
        files[f"/{version}.html"] = (PAGE.format(version=version).encode(), html)
    for size in SIZES:
        for every in SPEAKER_MODES:
            messages = kernel_messages(size, deltas, every)
            files[f"/messages-{size}-{every}.json"] = (json.dumps(messages).encode(),
                                                       "application/json")
    return files


# -- measuring ---------------------------------------------------------------------------

def open_page(context, port: int, version: str, query: str):
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/{version}.html?{query}", timeout=60_000)
    page.wait_for_function("window.ready === true", timeout=60_000)
    return page


def paint_round(context, port: int, version: str, size: int, every: int,
                host_nodes: int) -> dict:
    query = f"status=recording&hostNodes={host_nodes}&messages=/messages-{size}-{every}.json"
    page = open_page(context, port, version, query)
    try:
        return page.evaluate("window.paintRun()")
    finally:
        page.close()


def meter_round(context, port: int, version: str, seconds: float) -> dict[str, float]:
    page = open_page(context, port, version, "status=idle&hostNodes=0")
    try:
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.evaluate("window.clickRecord()")
        page.wait_for_function(
            "!document.querySelector('.soniox-meter').hidden &&"
            " document.querySelector('.soniox-elapsed').textContent !== '00:00'",
            timeout=30_000)
        time.sleep(1.0)
        before = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        time.sleep(seconds)
        after = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        out = {k: after[k] - before[k] for k in (*METER_KEYS, "LayoutCount")}
        out["recording"] = page.evaluate(
            "document.querySelector('.soniox-elapsed').textContent")
        return out
    finally:
        page.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ratio(base: float, cur: float) -> str:
    return f"{base / cur:.1f}x" if cur > 0 else "∞"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, fewer deltas")
    parser.add_argument("--against", default=DEFAULT_BASELINE, metavar="REV",
                        help=f"git revision of the baseline front end ({DEFAULT_BASELINE})")
    parser.add_argument("--host-nodes", type=int, default=3000,
                        help="other elements on the page (default 3000)")
    args = parser.parse_args()
    rounds, deltas, meter_s = (1, 60, 10.0) if args.quick else (3, 200, 10.0)
    versions = ("baseline", "current")

    from playwright.sync_api import sync_playwright

    paint: dict[tuple, list[float]] = {}
    checks: list[str] = []
    meter: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-paint-") as tmp, \
            serve(site(args.against, deltas)) as port, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(Path(tmp) / "profile"), executable_path=CHROMIUM, headless=True,
            args=[*CHROMIUM_FLAGS, *MEDIA_FLAGS], viewport={"width": 1200, "height": 900})
        try:
            for r in range(rounds):
                order = versions if r % 2 == 0 else versions[::-1]
                print(f"round {r + 1}/{rounds}", file=sys.stderr, flush=True)
                for size in SIZES:
                    for every in SPEAKER_MODES:
                        for version in order:
                            res = paint_round(context, port, version, size, every,
                                              args.host_nodes)
                            if not res["isolated"]:
                                checks.append("page not cross-origin isolated: 100 us timer")
                            if not res["lastWordShown"]:
                                checks.append(f"{version} did not show the last word "
                                              f"({size} tokens, speakers {every})")
                            for kind in ("handler", "withLayout"):
                                paint.setdefault((version, size, every, kind), []).extend(
                                    res[kind])
                for version in order:
                    res = meter_round(context, port, version, meter_s)
                    if res.pop("recording") in ("", "00:00"):
                        checks.append(f"{version}: the recording did not run")
                    for k, v in res.items():
                        meter.setdefault((version, k), []).append(v)
        finally:
            context.close()

    for problem in sorted(set(checks)):
        print(f"WARNING: {problem}", file=sys.stderr)
    label = "quick" if args.quick else "full"
    print(f"\n#### Widget view: paint cost per transcript delta ({label}: {rounds} round(s) "
          f"x {deltas} deltas per case, {args.host_nodes} other nodes on the page, "
          f"headless Chromium; baseline = {args.against})\n")
    print("| tokens | speakers | handler p50 baseline | current | ratio "
          "| handler p95 baseline | current | ratio "
          "| + layout p50 baseline | current | ratio | + layout p95 baseline | current | ratio |")
    print("|---" * 14 + "|")
    for size in SIZES:
        for every in SPEAKER_MODES:
            cells = [str(size), f"change every {every}" if every else "one"]
            for kind in ("handler", "withLayout"):
                for q in (0.5, 0.95):
                    b = pct(paint[("baseline", size, every, kind)], q)
                    c = pct(paint[("current", size, every, kind)], q)
                    cells += [f"{b:.3f} ms", f"{c:.3f} ms", ratio(b, c)]
            print("| " + " | ".join(cells) + " |")
    print(f"\n#### Widget view: level meter, main thread over {meter_s:.0f} s of a recording "
          f"(median of {rounds}, CDP Performance.getMetrics)\n")
    print("| metric | baseline | current | ratio |")
    print("|---|---|---|---|")
    for k in (*METER_KEYS, "LayoutCount"):
        b = statistics.median(meter[("baseline", k)])
        c = statistics.median(meter[("current", k)])
        if k == "LayoutCount":
            print(f"| {k} | {b:.0f} | {c:.0f} | {ratio(b, c)} |")
        else:
            print(f"| {k} | {b * 1000:.1f} ms | {c * 1000:.1f} ms | {ratio(b, c)} |")


if __name__ == "__main__":
    main()
