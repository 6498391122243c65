"""Why Record cannot use the microphone, told right (issue 13).

Real hosts: JupyterLab opened over plain http on a non-localhost name (no secure context),
a browser that denies the permission, and a cross-origin iframe without
``allow="microphone"`` (what VS Code's notebook webviews are) loading the widget's module.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    Lab,
    chromium,
    jupyter_server,
    open_notebook,
    read_result,
    run_cell,
    serve_directory,
)

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parents[2] / "soniox_widget" / "static"
HOST = "lab.test"  # resolved to 127.0.0.1 by Chromium only: not a secure context
INSECURE_TEXT = "This page is not a secure context"
POLICY_TEXT = "This front end does not allow microphone access"
DENIED_TEXT = "Microphone permission was denied"
RECORDER_CELL = "from soniox_widget import SonioxRecorder\nrec = SonioxRecorder()\nrec"
OUT = ".jp-OutputArea-output"


def browser(wav: Path, tmp: Path, *extra: str, fake_ui: bool = True):
    """conftest's Chromium (same flags, fake microphone) with extra command-line flags."""
    return chromium(wav, fake_ui=fake_ui, tmp=tmp, extra_args=extra)


@pytest.fixture(scope="module")
def named_lab(tmp_path_factory) -> Iterator[Lab]:
    """A JupyterLab that also answers to Host: lab.test (a Jupyter server refuses a
    non-local Host by default). conftest's server reads its config from the scratch
    JUPYTER_CONFIG_DIR, so the setting goes there."""
    root = tmp_path_factory.mktemp("named-lab")
    config = root / ".jupyter-config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"local_hostnames": ["localhost", HOST]}}))
    with jupyter_server(root, "lab") as server:
        yield server


def on_host(lab: Lab, host: str) -> Lab:
    """The same server, its URLs on another host name."""
    named = copy.copy(lab)
    named.url = lambda path: (f"http://{host}:{lab.port}{path}"  # type: ignore[method-assign]
                              f"{'&' if '?' in path else '?'}token={lab.token}")
    return named


def test_insecure_context_says_so_at_render(named_lab, speech_wav, tmp_path):
    wav, _ = speech_wav
    name = named_lab.write_notebook("insecure.ipynb", [
        RECORDER_CELL,
        "import json\njson.dump({'error': rec.error, 'status': rec.status},"
        " open('insecure.json', 'w'))",
    ])
    lab = on_host(named_lab, HOST)
    with browser(wav, tmp_path, f"--host-resolver-rules=MAP {HOST} 127.0.0.1") as context:
        page = open_notebook(context, lab, name)
        assert page.evaluate("() => [window.isSecureContext, !!navigator.mediaDevices]") \
            == [False, False]
        run_cell(page, 0)
        root = page.wait_for_selector(f"{OUT} .soniox-recorder", timeout=60_000)
        page.wait_for_selector(f"{OUT} .soniox-error:not([hidden])", timeout=10_000)
        shown = page.inner_text(f"{OUT} .soniox-error")
        assert INSECURE_TEXT in shown and "https or on localhost" in shown
        assert root.get_attribute("data-mic-unavailable") == "insecure-context"
        assert page.is_disabled(f"{OUT} .soniox-button")
        assert "permission was denied" not in page.inner_text(OUT).lower()
        assert shown.count(INSECURE_TEXT) == 1  # the kernel's copy is not shown twice
        run_cell(page, 1)
        result = read_result(named_lab, "insecure.json")
    # The kernel knows why too: the same advice in rec.error, and it can still record.
    assert result == {"error": shown.strip(), "status": "idle"}


def test_denied_permission_still_gives_the_denied_advice(lab, speech_wav, tmp_path):
    wav, _ = speech_wav
    name = lab.write_notebook("denied-advice.ipynb", [
        RECORDER_CELL,
        "import json\njson.dump({'error': rec.error, 'status': rec.status},"
        " open('denied-advice.json', 'w'))",
    ])
    with browser(wav, tmp_path, fake_ui=False) as context:
        page = open_notebook(context, lab, name)
        context.clear_permissions()
        run_cell(page, 0)
        root = page.wait_for_selector(f"{OUT} .soniox-recorder", timeout=60_000)
        assert not page.is_disabled(f"{OUT} .soniox-button")
        assert root.get_attribute("data-mic-unavailable") is None
        page.click(f"{OUT} .soniox-button")
        page.wait_for_selector(f"{OUT} .soniox-recorder[data-status='error']", timeout=60_000)
        shown = page.inner_text(f"{OUT} .soniox-error")
        run_cell(page, 1)
        result = read_result(lab, "denied-advice.json")
    assert DENIED_TEXT in shown and "site settings" in shown
    assert INSECURE_TEXT not in shown and POLICY_TEXT not in shown
    assert result["error"] == shown.strip() and result["status"] == "error"


# Contrast in light and dark themes: tests/e2e/test_themes.py and test_dark_themes.py.


# -- permissions policy: a cross-origin iframe without allow="microphone" ----------------

INNER_HTML = """<!doctype html><html><head><link rel="stylesheet" href="widget.css"></head>
<body><div id="root"></div><script type="module">
const values = {status: "idle", error: "", engine_label: "", active_view: ""};
window.sent = [];
const listeners = {};
const model = {
  get: (k) => values[k], set: (k, v) => { values[k] = v; },
  on: (event, callback) => { (listeners[event] ||= []).push(callback); }, off() {},
  send: (msg) => {
    window.sent.push(msg);
    // As the kernel does: it takes the recording (names this view), and only then the
    // view asks for the microphone.
    if (msg.type === "start") {
      values.active_view = msg.view;
      (listeners["change:active_view"] || []).forEach((callback) => callback());
    }
  },
  save_changes() {},
};
// ?late: the policy cannot be read at render (as in a browser without the API), only
// when getUserMedia fails; the widget must still name the policy, not a denial.
const late = location.search.includes("late");
const hidden = ["featurePolicy", "permissionsPolicy"];
if (late) hidden.forEach((k) => Object.defineProperty(document, k, {value: undefined,
  configurable: true}));
const widget = (await import("./widget.js")).default;
widget.render({model, el: document.getElementById("root")});
if (late) hidden.forEach((k) => delete document[k]);
window.rendered = true;
</script></body></html>"""


@pytest.fixture(scope="module")
def static_site(tmp_path_factory) -> Iterator[tuple[int, Path]]:
    """The package's widget.js on 127.0.0.1; pages embed it from localhost (another
    origin, both secure contexts), with and without allow="microphone"."""
    site = tmp_path_factory.mktemp("site")
    for name in ("widget.js", "widget.css"):
        shutil.copy(STATIC / name, site / name)
    (site / "inner.html").write_text(INNER_HTML)
    with serve_directory(site) as port:
        for page, allow, query in (("outer", "", ""),
                                   ("outer-allow", ' allow="microphone"', ""),
                                   ("outer-late", "", "?late")):
            (site / f"{page}.html").write_text(
                f'<!doctype html><iframe{allow} width="800" height="300" '
                f'src="http://localhost:{port}/inner.html{query}"></iframe>')
        yield port, site


def _widget_frame(context, port: int, page_name: str):
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/{page_name}", timeout=30_000)
    frame = page.wait_for_selector("iframe", timeout=10_000).content_frame()
    frame.wait_for_function("() => window.rendered === true", timeout=10_000)
    return frame


def test_iframe_without_microphone_permission_is_told_at_render(static_site, speech_wav,
                                                                 tmp_path):
    port, _ = static_site
    wav, _ = speech_wav
    with browser(wav, tmp_path) as context:
        frame = _widget_frame(context, port, "outer.html")
        assert frame.evaluate("() => document.featurePolicy.allowsFeature('microphone')") \
            is False
        shown = frame.inner_text(".soniox-error")
        assert POLICY_TEXT in shown and "rec.transcribe_file()" in shown
        assert frame.get_attribute(".soniox-recorder", "data-mic-unavailable") \
            == "blocked-by-policy"
        assert frame.is_disabled(".soniox-button")
        assert "permission was denied" not in frame.inner_text(".soniox-recorder").lower()

        # The same module where the host allows the microphone: Record works as before.
        frame = _widget_frame(context, port, "outer-allow.html")
        assert frame.is_hidden(".soniox-error")
        assert frame.get_attribute(".soniox-recorder", "data-mic-unavailable") is None
        frame.click(".soniox-button")
        frame.wait_for_function("() => window.sent.some((m) => m.type === 'chunk')",
                                timeout=15_000)
        assert not frame.evaluate("() => window.sent.some((m) => m.type === 'abort')")


def test_policy_found_only_at_click_is_not_called_a_denial(static_site, speech_wav, tmp_path):
    """getUserMedia's NotAllowedError in a policy-blocked frame maps to the policy advice."""
    port, _ = static_site
    wav, _ = speech_wav
    with browser(wav, tmp_path) as context:
        frame = _widget_frame(context, port, "outer-late.html")
        assert frame.get_attribute(".soniox-recorder", "data-mic-unavailable") is None
        frame.click(".soniox-button")
        frame.wait_for_function("() => window.sent.some((m) => m.type === 'abort')",
                                timeout=15_000)
        sent = frame.evaluate("() => window.sent")
    abort = next(m for m in sent if m["type"] == "abort")
    assert [m["type"] for m in sent if m["type"] in ("start", "abort")] == ["start", "abort"]
    assert abort["kind"] == "blocked-by-policy" and POLICY_TEXT in abort["message"]
    assert abort["session"] == next(m for m in sent if m["type"] == "start")["session"]
