"""What the kernel and the front end (static/widget.js) must agree on, checked on both
sides: the status values, the saved transcript's shape and bound, one front-end source,
and demo notebooks that carry no copy of it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from soniox_widget import SonioxRecorder
from soniox_widget import view_messages as vm
from soniox_widget.transcript import Segment

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "soniox_widget" / "static"


def _node(code: str) -> object:
    """What ES module `code` prints (one JSON value), run by node."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    out = subprocess.run([node, "--input-type=module", "-e", code], capture_output=True,
                         text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def _js_export(name: str) -> object:
    return _node(f"import({json.dumps((STATIC / 'widget.js').as_uri())})"
                 f".then((m) => console.log(JSON.stringify(m.{name})))")


# Each front-end message builder (widget.js viewMessages), called with these arguments,
# and the message class view_messages.parse_view_message must make of its result.
PROBLEM = {"kind": "mic-denied", "message": "Microphone permission was denied."}
BUILDERS = {
    "start": (["s1", "v1", "audio/webm"], vm.Start("s1", "v1", "audio/webm")),
    "chunk": (["s1", 4], vm.Chunk("s1", 4, b"audio")),
    "stop": (["s1", 5], vm.Stop("s1", 5)),
    "abort": (["s1", PROBLEM], vm.Abort("s1", PROBLEM["kind"], PROBLEM["message"])),
    "pause": (["s1"], vm.Pause("s1")),
    "resume": (["s1"], vm.Resume("s1")),
    "heartbeat": (["s1"], vm.Heartbeat("s1")),
    "snapshotRequest": ([], vm.SnapshotRequest()),
    "unavailable": ([PROBLEM], vm.Unavailable(PROBLEM["kind"], PROBLEM["message"])),
    "viewError": (["TypeError: x"], vm.ViewError("TypeError: x")),
}
#: Messages the kernel takes that no widget view sends (the standalone proxy's page does).
NOT_FROM_THE_VIEW = {vm.Finalize}


def _js_messages() -> dict[str, object]:
    calls = {name: args for name, (args, _) in BUILDERS.items()}
    code = (f"import({json.dumps((STATIC / 'widget.js').as_uri())}).then((m) => {{"
            f" const calls = {json.dumps(calls)};"
            " const out = {builders: Object.keys(m.viewMessages).sort(), built: {}};"
            " for (const [name, args] of Object.entries(calls)) {"
            "   if (m.viewMessages[name]) out.built[name] = m.viewMessages[name](...args); }"
            " console.log(JSON.stringify(out)); })")
    return _node(code)


def test_every_message_the_view_builds_is_one_the_kernel_parses_to_the_same_values():
    out = _js_messages()
    assert out["builders"] == sorted(BUILDERS)
    for name, (_, expected) in BUILDERS.items():
        buffers = [b"audio"] if name == "chunk" else []
        assert vm.parse_view_message(out["built"][name], buffers) == expected, name
    # Every kind of view message the kernel knows has a builder on the front end.
    kernel_kinds = set(vm.ViewMessage.__args__) - NOT_FROM_THE_VIEW
    assert {type(expected) for _, expected in BUILDERS.values()} == kernel_kinds


def test_the_front_end_knows_the_same_statuses_as_the_kernel():
    assert tuple(_js_export("KERNEL_STATUSES")) == vm.STATUSES
    assert set(vm.BUSY) < set(vm.STATUSES)


async def test_the_status_trait_takes_only_those_statuses():
    import traitlets

    rec = SonioxRecorder(engine="local")
    for status in vm.STATUSES:
        rec.status = status
    with pytest.raises(traitlets.TraitError):
        rec.status = "listening"
    rec.close()


def test_the_widget_loads_its_module_and_css_from_the_package():
    # anywidget reads the files itself (and reloads them on change in dev mode).
    assert str(SonioxRecorder._esm) == (STATIC / "widget.js").read_text()
    assert str(SonioxRecorder._css) == (STATIC / "widget.css").read_text()
    assert not (ROOT / "js").exists(), "one front-end source: no js/ copy"


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")),
                         ids=lambda p: p.name)
def test_demo_notebooks_carry_no_copy_of_the_front_end(notebook):
    text = notebook.read_text()
    nb = json.loads(text)
    assert "widgets" not in nb["metadata"]
    assert "_esm" not in text and "export default { render }" not in text


async def test_the_engine_kind_is_explicit():
    rec = SonioxRecorder(engine="local")
    assert rec.engine_kind == "local"
    rec.close()
    rec = SonioxRecorder(url="ws://127.0.0.1:9/x")
    assert rec.engine_kind == "server"
    rec.close()


# -- saved_transcript ------------------------------------------------------------------------


def test_saved_transcript_has_the_final_text_segments_and_translation():
    saved = vm.saved_transcript([Segment("Hello ", "1"), Segment("there.", "2")], "Hallo")
    assert saved == {"text": "Hello there.", "translation": "Hallo",
                     "segments": [{"text": "Hello ", "speaker": "1", "language": None},
                                  {"text": "there.", "speaker": "2", "language": None}]}


def test_saved_transcript_keeps_the_end_of_a_long_recording():
    segments = [Segment("a" * 30), Segment("b" * 30), Segment("c" * 30)]
    saved = vm.saved_transcript(segments, "t" * 100, limit=50)
    assert saved["text"] == "b" * 20 + "c" * 30
    assert [s["text"] for s in saved["segments"]] == ["b" * 20, "c" * 30]
    assert saved["translation"] == "t" * 50
    assert saved["truncated"] is True


def test_bounding_is_idempotent_so_an_echo_changes_nothing():
    saved = vm.saved_transcript([Segment("x" * 70)], "y", limit=50)
    assert vm.bound_saved_transcript(saved, limit=50) == saved
    assert vm.bound_saved_transcript({}) == {}


@pytest.mark.parametrize("value", [[1, 2], "text", {"segments": "no"},
                                   {"segments": [{"text": 3}, "x", {"text": "ok"}]}])
async def test_a_malformed_saved_transcript_from_a_view_is_cleaned(value):
    rec = SonioxRecorder(engine="local")
    rec.saved_transcript = value if isinstance(value, dict) else {"segments": value}
    assert set(rec.saved_transcript) <= {"text", "segments", "translation", "truncated"}
    assert all(isinstance(s["text"], str) for s in rec.saved_transcript.get("segments", []))
    rec.close()
