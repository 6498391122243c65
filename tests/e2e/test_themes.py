"""Every text of the widget keeps WCAG AA contrast (4.5:1) in the hosts' light and dark
themes (issue 13), with screenshots in test-artifacts/.

JupyterLab itself (Light and Dark), and the same module on plain pages that set the
theme variables of VS Code's notebook webviews and of marimo (their real values), so
the colours follow each host without that host running here. marimo itself is tested
in tests/e2e/test_marimo.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, chromium, open_notebook, run_cell, serve_directory

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parents[2] / "soniox_widget" / "static"
OUT = ".jp-OutputArea-output"
AA = 4.5

# The contrast of every visible text node of the widget against what is drawn behind it
# (ancestors' backgrounds composited, translucent colours too).
CONTRAST_JS = """
(root) => {
  const rgba = (s) => { const v = (s.match(/[\\d.]+/g) || []).map(Number);
    return v.length === 3 ? [...v, 1] : v; };
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const over = (fg, bg) => [0, 1, 2].map((i) => fg[i] * fg[3] + bg[i] * (1 - fg[3]));
  const backdrop = (el) => {
    const layers = [];
    for (let n = el; n && n.nodeType === 1; n = n.parentElement || n.getRootNode().host) {
      const c = rgba(getComputedStyle(n).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] === 1) break;
    }
    let bg = [255, 255, 255];
    for (const c of layers.reverse()) bg = over(c, bg);
    return bg;
  };
  const ratio = (a, b) => (Math.max(lum(a), lum(b)) + 0.05) / (Math.min(lum(a), lum(b)) + 0.05);
  const out = {};
  for (const el of root.querySelectorAll("*")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length || el.closest("[hidden]")) continue;
    if (el.closest("button:disabled")) continue;  // WCAG exempts inactive controls
    const bg = backdrop(el);
    const r = ratio(over(rgba(getComputedStyle(el).color), bg), bg);
    const key = el.className || el.tagName.toLowerCase();
    out[key] = Math.min(out[key] ?? 99, Math.round(r * 100) / 100);
  }
  out._background = backdrop(root);
  out._theme = root.dataset.theme;
  return out;
}
"""

# Everything the widget can show at once: an error, a notice, final and non-final words,
# a speaker, a language, a translation, the engine badge.
FILL_JS = """
(root) => {
  const q = (s) => root.querySelector(s);
  const span = (cls, text) => Object.assign(document.createElement("span"),
    {className: cls, textContent: text});
  q(".soniox-final").append(span("soniox-speaker", "Speaker 1"),
    span("soniox-language", "en"), span("soniox-segment", "Final words. "));
  q(".soniox-nonfinal").append(span("soniox-segment", "not final yet"));
  q(".soniox-placeholder").hidden = true;
  q(".soniox-translation-final").textContent = "Die Übersetzung";
  q(".soniox-translation").hidden = false;
  q(".soniox-notice").textContent = "A notice about the input.";
  q(".soniox-notice").hidden = false;
  q(".soniox-device-row").hidden = false;
  const opt = document.createElement("option"); opt.textContent = "Fake Audio Input 1";
  q(".soniox-device").append(opt);
}
"""


def _check(result: dict, where: str) -> None:
    texts = {k: v for k, v in result.items() if not k.startswith("_")}
    for needed in ("soniox-status", "soniox-badge", "soniox-button-label", "soniox-error",
                   "soniox-segment", "soniox-speaker", "soniox-language", "soniox-notice",
                   "soniox-translation-final", "soniox-device-label"):
        assert needed in texts, (where, needed, texts)
    low = {k: v for k, v in texts.items() if v < AA}
    assert not low, (where, low, result)


# -- JupyterLab ---------------------------------------------------------------------------

ERROR_CELL = ("from soniox_widget import SonioxRecorder\nrec = SonioxRecorder(engine='local')\n"
              "rec.error = 'Cannot reach the speech service. Click Record to try again.'\n"
              "rec.status = 'error'\nrec")


def test_jupyterlab_light_and_dark(lab, speech_wav, tmp_path):
    wav, _ = speech_wav
    name = lab.write_notebook("themes.ipynb", [ERROR_CELL])
    with chromium(wav, tmp=tmp_path) as context:
        page = open_notebook(context, lab, name)
        run_cell(page, 0)
        # Once the kernel has answered the view: a later repaint would undo FILL_JS.
        root = page.wait_for_selector(f"{OUT} .soniox-recorder[data-kernel='present']",
                                      timeout=60_000)
        root.evaluate(FILL_JS)
        page.wait_for_selector(f"{OUT} .soniox-error:not([hidden])", timeout=10_000)
        light = root.evaluate(CONTRAST_JS)
        root.screenshot(path=str(ARTIFACTS / "theme-jupyterlab-light.png"))
        page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme',"
                      " {theme: 'JupyterLab Dark'})")
        page.wait_for_function(
            f"() => document.querySelector('{OUT} .soniox-recorder').dataset.theme === 'dark'",
            timeout=30_000)
        # JupyterLab shows its splash over the page while it switches themes.
        page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=30_000)
        dark = root.evaluate(CONTRAST_JS)
        root.screenshot(path=str(ARTIFACTS / "theme-jupyterlab-dark.png"))
        page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme',"
                      " {theme: 'JupyterLab Light'})")
        page.wait_for_function(
            f"() => document.querySelector('{OUT} .soniox-recorder').dataset.theme === 'light'",
            timeout=30_000)
    assert light["_theme"] == "light" and light["_background"] == [255, 255, 255]
    assert dark["_theme"] == "dark" and sum(dark["_background"]) < 3 * 60
    _check(light, "JupyterLab Light")
    _check(dark, "JupyterLab Dark")


# -- other hosts' theme variables ------------------------------------------------------------

# Values as the hosts ship them: VS Code's Dark Modern / Light Modern notebook webviews,
# marimo 0.25's light and dark themes (class .dark on <html>).
HOSTS = {
    "vscode-dark": ("body", "vscode-dark", {
        "--vscode-editor-background": "#1f1f1f", "--vscode-editor-foreground": "#cccccc",
        "--vscode-button-background": "#0078d4", "--vscode-button-foreground": "#ffffff",
        "--vscode-panel-border": "#2b2b2b", "--vscode-font-family": "system-ui"}),
    "vscode-light": ("body", "vscode-light", {
        "--vscode-editor-background": "#ffffff", "--vscode-editor-foreground": "#3b3b3b",
        "--vscode-button-background": "#005fb8", "--vscode-button-foreground": "#ffffff",
        "--vscode-panel-border": "#e5e5e5", "--vscode-font-family": "system-ui"}),
    "marimo-dark": ("html", "dark", {
        "--background": "#181c1a", "--foreground": "#eceeed", "--border": "#3b403e"}),
    "marimo-light": ("html", "light", {
        "--background": "#fff", "--foreground": "#0f172a", "--border": "#e2e8f0"}),
}

PAGE = """<!doctype html><html class="{html_class}"><head>
<link rel="stylesheet" href="widget.css"><style>:root {{ {variables} }}
body {{ background: var(--vscode-editor-background, var(--background)); }}</style></head>
<body class="{body_class}"><div id="root"></div><script type="module">
const values = {{status: "error", error: "Cannot reach the speech service.",
  engine_label: "local engine (offline)", engine_kind: "local", active_view: "",
  saved_transcript: {{}}, device: "", device_id: ""}};
const model = {{ get: (k) => values[k], set: (k, v) => {{ values[k] = v; }}, on() {{}},
  off() {{}}, send() {{}}, save_changes() {{}} }};
const widget = (await import("./widget.js")).default;
widget.render({{model, el: document.getElementById("root")}});
window.rendered = true;
</script></body></html>"""


@pytest.fixture(scope="module")
def host_pages(tmp_path_factory) -> Iterator[int]:
    site = tmp_path_factory.mktemp("themes")
    for name in ("widget.js", "widget.css"):
        shutil.copy(STATIC / name, site / name)
    for host, (where, cls, variables) in HOSTS.items():
        (site / f"{host}.html").write_text(PAGE.format(
            html_class=cls if where == "html" else "",
            body_class=cls if where == "body" else "",
            variables=" ".join(f"{k}: {v};" for k, v in variables.items())))
    with serve_directory(site) as port:
        yield port


@pytest.mark.parametrize("host", list(HOSTS))
def test_host_theme_variables(host_pages, speech_wav, tmp_path, host):
    wav, _ = speech_wav
    with chromium(wav, tmp=tmp_path) as context:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{host_pages}/{host}.html", timeout=30_000)
        page.wait_for_function("() => window.rendered === true", timeout=10_000)
        root = page.wait_for_selector(".soniox-recorder")
        root.evaluate(FILL_JS)
        result = root.evaluate(CONTRAST_JS)
        root.screenshot(path=str(ARTIFACTS / f"theme-{host}.png"))
    dark = host.endswith("dark")
    assert result["_theme"] == ("dark" if dark else "light"), result
    # The widget takes the host's background, not a white box of its own.
    expected = {"vscode-dark": [31, 31, 31], "marimo-dark": [24, 28, 26]}.get(host,
                                                                             [255, 255, 255])
    assert result["_background"] == expected, result
    _check(result, host)
