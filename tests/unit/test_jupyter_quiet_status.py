"""What the quiet-status extension reads, on messages built by jupyter_server's own
serializers (the real server is in tests/integration/test_jupyter_quiet_status.py)."""

from __future__ import annotations

import json
import struct
import uuid

import pytest

jupyter_base = pytest.importorskip("jupyter_server.services.kernels.connection.base")

from soniox_widget.jupyter_quiet_status import (  # noqa: E402
    QuietRequests,
    incoming_quiet_id,
    is_quiet_busy,
)


def header(msg_type: str) -> dict:
    return {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": "s",
            "username": "u", "date": "2026-11-25T00:00:00Z", "version": "5.3"}


def v1(channel: str, head: dict, parent: dict, content: dict, *buffers: bytes) -> bytes:
    parts = [json.dumps(p).encode() for p in (head, parent, {}, content)]
    return jupyter_base.serialize_msg_to_ws_v1([*parts, *buffers], channel)


def legacy(channel: str, head: dict, parent: dict, content: dict, *buffers: bytes):
    msg = {"header": head, "parent_header": parent, "metadata": {}, "content": content,
           "channel": channel, "buffers": list(buffers)}
    return jupyter_base.serialize_binary_message(msg) if buffers else json.dumps(msg)


def chunk_content(kind: str = "chunk") -> dict:
    return {"comm_id": "c", "data": {"method": "custom",
                                     "content": {"type": kind, "session": "s", "seq": 3}}}


@pytest.mark.parametrize("build,is_v1", [(v1, True), (legacy, False)])
def test_a_chunk_is_remembered_and_its_busy_dropped_but_not_its_idle(build, is_v1):
    request = header("comm_msg")
    msg_id = incoming_quiet_id(build("shell", request, {}, chunk_content(), b"\x00" * 900),
                               is_v1)
    assert msg_id == request["msg_id"]
    quiet = QuietRequests()
    quiet.add(msg_id)
    busy = build("iopub", header("status"), request, {"execution_state": "busy"})
    idle = build("iopub", header("status"), request, {"execution_state": "idle"})
    assert is_quiet_busy(busy, is_v1, quiet)
    assert not is_quiet_busy(idle, is_v1, quiet)
    other = build("iopub", header("status"), header("comm_msg"), {"execution_state": "busy"})
    assert not is_quiet_busy(other, is_v1, quiet)


@pytest.mark.parametrize("build,is_v1", [(v1, True), (legacy, False)])
def test_other_messages_are_not_quiet(build, is_v1):
    assert incoming_quiet_id(build("shell", header("comm_msg"), {},
                                   chunk_content("click")), is_v1) is None
    assert incoming_quiet_id(build("shell", header("execute_request"), {},
                                   {"code": "'chunk'", "comm_msg": 1}), is_v1) is None
    no_session = {"comm_id": "c", "data": {"method": "custom", "content": {"type": "chunk"}}}
    assert incoming_quiet_id(build("shell", header("comm_msg"), {}, no_session), is_v1) is None


@pytest.mark.parametrize("junk", [
    b"", b"comm_msg", struct.pack("<Q", 2**60) + b"comm_msg", b"\xff" * 64 + b"comm_msg",
    struct.pack("<Q", 6) + b"\x00" * 48 + b"comm_msg",
])
def test_malformed_frames_are_let_through_untouched(junk):
    assert incoming_quiet_id(junk, True) is None
    quiet = QuietRequests()
    quiet.add("x")
    assert not is_quiet_busy(junk + b'"busy"', True, quiet)
    assert incoming_quiet_id(junk.decode("latin-1"), False) is None
    assert not is_quiet_busy(junk.decode("latin-1") + '"busy"', False, quiet)


def test_the_table_is_bounded_and_forgets_the_oldest():
    quiet = QuietRequests(size=3)
    assert not quiet
    for msg_id in "abcd":
        quiet.add(msg_id)
    assert "a" not in quiet and all(m in quiet for m in "bcd")


@pytest.mark.parametrize("build,is_v1", [(v1, True), (legacy, False)])
def test_large_messages_are_passed_on_unread(build, is_v1):
    """An output that merely mentions "busy" is not parsed (a status is ~600 bytes)."""
    request = header("comm_msg")
    quiet = QuietRequests()
    quiet.add(request["msg_id"])
    padded = {"execution_state": "busy", "note": "x" * 10_000}
    assert not is_quiet_busy(build("iopub", header("status"), request, padded), is_v1, quiet)
