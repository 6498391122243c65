// The view's state machine, reduceView: every event in every state it can reach, with an
// explicit clock (`now`). Effects are what the view must do; nothing here touches a DOM,
// a microphone or a kernel.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  KERNEL_ANSWER_MS, KERNEL_BUSY_ERROR, KERNEL_TIMEOUT, MIC_PROBLEMS, NO_KERNEL_NOTE,
  initialView, listenToModel, present, recordedMs, recorderProblem, reduceView, viewMessages,
} from "../../soniox_widget/static/widget.js";
import { fakeModel } from "./fake_model.mjs";

const ME = "me";
const traits = (over = {}) => ({ status: "idle", error: "", active_view: "",
  engine_label: "local engine (offline)", engine_kind: "local", device: "", device_id: "",
  audio_bits_per_second: 32000, timeslice_ms: 120, ...over });
const fresh = (over = {}) => initialView({ viewId: ME, traits: traits(), saved: null,
  unavailable: null, ...over });

let clock = 1000;
/** Feed events in order (each gets the next `now`); the last result, and all effects. */
function run(state, ...events) {
  const effects = [];
  let result = { state, effects: [] };
  for (const event of events) {
    clock += 100;
    result = reduceView(result.state, { now: clock, ...event });
    effects.push(...result.effects);
  }
  return { state: result.state, effects, last: result.effects };
}
const types = (effects) => effects.map((e) => e.type);
const sent = (effects) => effects.filter((e) => e.type === "send").map((e) => e.message);
const shown = (state) => present(state, state.traits, state.viewId);

const press = (session = "s1") => ({ type: "press", session, mimeType: "audio/webm",
  problem: null });
const kernelSays = (over, changed = "status") => ({ type: "kernel-traits",
  traits: traits(over), changed });
const accept = kernelSays({ active_view: ME, status: "connecting" }, "active_view");
const stream = { id: "stream-token" };
const granted = (session = "s1", s = stream) => ({ type: "mic-granted", session, stream: s,
  fellBack: false });

/** A view recording session s1 with a kernel that answered. */
function recording() {
  return run(fresh(), { type: "kernel-message", msg: { type: "snapshot", rev: 0,
    segments: [], nonfinal: [] } }, press(), accept, granted(),
  kernelSays({ active_view: ME, status: "recording" })).state;
}

test("rendering asks the kernel for the transcript and starts waiting for its answer", () => {
  const { state, effects } = run(fresh(), { type: "rendered" });
  assert.deepEqual(sent(effects), [viewMessages.snapshotRequest()]);
  assert.deepEqual(effects.find((e) => e.type === "wait-kernel"),
    { type: "wait-kernel", session: null });
  assert.ok(types(effects).includes("list-devices"));
  assert.equal(state.kernel, "unknown");
  const unavailable = { kind: "insecure-context", message: "Not secure." };
  const blocked = run(fresh({ unavailable }), { type: "rendered" });
  assert.deepEqual(sent(blocked.effects)[1], viewMessages.unavailable(unavailable));
  assert.ok(!types(blocked.effects).includes("list-devices"));
});

test("record: start, the kernel takes it, then the microphone opens and the clock runs",
  () => {
    const started = run(fresh(), press());
    assert.equal(started.state.phase, "starting");
    assert.equal(started.state.session, "s1");
    assert.deepEqual(sent(started.effects), [viewMessages.start("s1", ME, "audio/webm")]);
    assert.deepEqual(types(started.effects), ["send", "heartbeat", "wait-kernel"]);
    assert.equal(shown(started.state).label, "Connecting…");

    const taken = run(started.state, accept);
    assert.equal(taken.state.phase, "requesting-mic");
    assert.equal(taken.state.kernelHasSession, true);
    assert.deepEqual(taken.effects, [{ type: "open-mic", session: "s1", deviceId: null }]);

    const rec = run(taken.state, granted());
    assert.equal(rec.state.phase, "recording");
    assert.equal(rec.state.clock.startedAt, clock);
    const record = rec.effects.find((e) => e.type === "record");
    assert.equal(record.stream, stream, "the granted stream is the one recorded");
    assert.deepEqual([record.session, record.mimeType, record.bitsPerSecond,
      record.timesliceMs], ["s1", "audio/webm", 32000, 120]);
    assert.deepEqual(types(rec.effects), ["record", "clock", "list-devices"]);
    assert.equal(rec.effects[1].running, true);
  });

test("pause and resume freeze the clock and tell the kernel, from a click or the kernel",
  () => {
    const start = recording();
    const paused = run(start, { type: "pause-press" });
    assert.equal(paused.state.phase, "paused");
    assert.deepEqual(types(paused.effects), ["pause-recorder", "send"]);
    assert.deepEqual(sent(paused.effects), [viewMessages.pause("s1")]);
    const frozen = recordedMs(paused.state.clock, clock + 5000);
    assert.equal(frozen, recordedMs(paused.state.clock, clock + 9000), "the clock stands");
    const resumed = run(paused.state, { type: "kernel-message",
      msg: { type: "resume_request" } });
    assert.equal(resumed.state.phase, "recording");
    assert.deepEqual(sent(resumed.effects), [viewMessages.resume("s1")]);
    assert.equal(recordedMs(resumed.state.clock, clock), frozen, "the pause is not counted");
    const again = run(resumed.state, { type: "kernel-message", msg: { type: "pause_request" } });
    assert.equal(again.state.phase, "paused");
    // Pause means nothing without a recording.
    for (const phase of ["starting", "requesting-mic", "finishing"]) {
      const s = { ...start, phase };
      assert.equal(run(s, { type: "pause-press" }).state, s);
    }
  });

test("stop: the recorder's last chunk, then the stop message, then idle on the kernel's idle",
  () => {
    const stopping = run(recording(), press("ignored"));
    assert.equal(stopping.state.phase, "finishing");
    assert.deepEqual(stopping.effects, [{ type: "stop-recorder" }]);
    assert.ok(stopping.state.clock.frozenAt > 0);
    const p = shown(stopping.state);
    assert.equal(p.disabled, false, "focus stays on the control");
    assert.equal(p.busy, true);
    assert.equal(p.inert, true);
    assert.equal(run(stopping.state, press()).state, stopping.state, "finishing: no-op");

    const stopped = run(stopping.state, { type: "recorder-stopped", session: "s1", chunks: 7 });
    assert.deepEqual(sent(stopped.effects), [viewMessages.stop("s1", 7)]);
    assert.deepEqual(types(stopped.effects), ["send", "release", "clock"]);
    const idle = run(stopped.state, kernelSays({ status: "idle" }));
    assert.equal(idle.state.phase, "idle");
    assert.equal(idle.state.session, null);
    assert.ok(types(idle.effects).includes("publish-saved"));
    assert.equal(shown(idle.state).label, "Record");
    // A stop the kernel asks for is the same stop.
    const asked = run(recording(), { type: "kernel-message", msg: { type: "stop_request" } });
    assert.deepEqual(asked.effects, [{ type: "stop-recorder" }]);
  });

test("a stop before the microphone records ends the session at once (a cancel)", () => {
  for (const events of [[press()], [press(), accept]]) {
    const before = run(fresh(), ...events).state;
    const { state, effects } = run(before, press("ignored"));
    assert.equal(state.phase, "finishing");
    assert.deepEqual(sent(effects), [viewMessages.stop("s1", 0)]);
    assert.ok(types(effects).includes("release"));
    // The microphone the browser grants afterwards is let go at once.
    const late = run(state, granted());
    assert.deepEqual(late.effects, [{ type: "discard-mic", stream }]);
    assert.equal(late.state, state);
  }
});

test("every cause of a failed microphone aborts the session with that cause", () => {
  const problems = [...Object.values(MIC_PROBLEMS), recorderProblem("boom")];
  for (const problem of problems) {
    const asking = run(fresh(), press(), accept).state;
    const { state, effects } = run(asking, { type: "mic-failed", session: "s1", problem });
    assert.equal(state.phase, "idle");
    assert.equal(state.session, null);
    assert.deepEqual(sent(effects), [viewMessages.abort("s1", problem)]);
    assert.deepEqual(sent(effects)[0].kind, problem.kind);
    assert.ok(types(effects).includes("release"));
    // A failure of an older session changes nothing.
    assert.equal(run(asking, { type: "mic-failed", session: "old", problem }).state, asking);
  }
  // A recorder that fails while recording gives the focus back to the record control.
  const failed = run(recording(), { type: "mic-failed", session: "s1",
    problem: recorderProblem("x") });
  assert.ok(types(failed.effects).includes("focus-record"));
});

test("a cause known when Record is pressed goes to the kernel without asking the browser",
  () => {
    const { state, effects } = run(fresh(), { ...press(), problem: MIC_PROBLEMS.policy });
    assert.equal(state.phase, "idle");
    assert.deepEqual(sent(effects), [viewMessages.start("s1", ME, "audio/webm"),
      viewMessages.abort("s1", MIC_PROBLEMS.policy)]);
    assert.ok(!types(effects).includes("open-mic"));
  });

test("rejected by the kernel: back to idle with its reason, the microphone never asked",
  () => {
    const starting = run(fresh(), press()).state;
    const other = run(starting, { type: "kernel-message",
      msg: { type: "rejected", view: "other", session: "x", reason: "no" } });
    assert.equal(other.state.phase, "starting");
    const { state, effects } = run(starting, { type: "kernel-message",
      msg: { type: "rejected", view: ME, session: "s1", reason: "Another view is recording" } });
    assert.equal(state.phase, "idle");
    assert.equal(shown(state).phase, "error");
    assert.equal(shown(state).error, "Another view is recording");
    assert.ok(!types(effects).includes("open-mic"));
    assert.ok(types(effects).includes("release"));
  });

test("the kernel ending the session (error) releases everything and returns focus", () => {
  const { state, effects } = run(recording(), kernelSays({ status: "error",
    error: "The service closed." }));
  assert.equal(state.session, null);
  assert.deepEqual(types(effects), ["release", "clock", "focus-record", "publish-saved"]);
  assert.equal(shown(state).error, "The service closed.");
  assert.equal(shown(state).disabled, false, "Record can be pressed again");
});

test("Record after an error: the kernel clearing its error does not end the new session",
  () => {
    const after = { ...fresh(), kernel: "present", traits: traits({ status: "error",
      error: "old" }) };
    const started = run(after, press()).state;
    const cleared = run(started, kernelSays({ status: "error", error: "" }, "error"));
    assert.equal(cleared.state.session, "s1");
    assert.equal(cleared.state.phase, "starting");
    const taken = run(cleared.state, kernelSays({ status: "error", active_view: ME },
      "active_view"));
    assert.equal(taken.state.phase, "requesting-mic");
  });

test("a page whose kernel never answers says so and cannot record", () => {
  const rendered = run(fresh(), { type: "rendered" }).state;
  assert.equal(shown(rendered).disabled, false, "unknown yet: Record may be pressed");
  const { state } = run(rendered, { type: "kernel-timeout", session: null });
  assert.equal(state.kernel, "missing");
  const p = shown(state);
  assert.equal(p.phase, "no-kernel");
  assert.equal(p.disabled, true);
  assert.equal(p.notice, NO_KERNEL_NOTE);
  assert.equal(p.statusText, "No kernel");
  assert.match(NO_KERNEL_NOTE, /needs a running kernel/);
  const pressed = run(state, press());
  assert.equal(pressed.state, state);
  assert.deepEqual(pressed.effects, []);
  // A kernel that answers late (it was busy) makes the view whole again.
  const late = run(state, { type: "kernel-message", msg: { type: "snapshot", rev: 0,
    segments: [], nonfinal: [] } }).state;
  assert.equal(late.kernel, "present");
  assert.equal(shown(late).disabled, false);
  assert.equal(shown(late).notice, "");
  // The view's own device choice is no sign of a kernel.
  const chosen = run(state, kernelSays({ device: "USB" }, "device")).state;
  assert.equal(chosen.kernel, "missing");
});

test("an answer before the wait ends keeps the kernel present", () => {
  const answered = run(fresh(), { type: "rendered" }, kernelSays({ engine_label: "x" },
    "engine_label"));
  const after = run(answered.state, { type: "kernel-timeout", session: null });
  assert.equal(after.state, answered.state);
  assert.ok(KERNEL_ANSWER_MS >= 1000);
});

test("Record with no kernel behind the page: no microphone, and the page says why", () => {
  const starting = run(fresh(), { type: "rendered" }, press()).state;
  const { state, effects } = run(starting, { type: "kernel-timeout", session: "s1" });
  assert.equal(state.phase, "idle");
  assert.equal(state.kernel, "missing");
  assert.equal(shown(state).notice, NO_KERNEL_NOTE);
  assert.deepEqual(sent(effects), [viewMessages.abort("s1", KERNEL_TIMEOUT)]);
  assert.ok(!types(effects).includes("open-mic"));
});

test("a kernel that answered before but does not take the recording is called busy", () => {
  const present_ = run(fresh(), kernelSays({}, "engine_label"), press()).state;
  const { state } = run(present_, { type: "kernel-timeout", session: "s1" });
  assert.equal(state.kernel, "present");
  assert.equal(shown(state).error, KERNEL_BUSY_ERROR);
  assert.equal(shown(state).disabled, false);
  // Once the kernel has taken the recording, the wait is over: the timeout is ignored.
  const rec = recording();
  assert.equal(run(rec, { type: "kernel-timeout", session: "s1" }).state, rec);
});

test("another view's recording disables Record; this view's never does", () => {
  const elsewhere = run(fresh(), kernelSays({ status: "recording", active_view: "other" }));
  assert.equal(shown(elsewhere.state).disabled, true);
  assert.equal(run(elsewhere.state, press()).state, elsewhere.state);
});

test("transcript messages fold into the view's state; a gap asks for a snapshot", () => {
  const s = run(fresh(), { type: "kernel-message", msg: { type: "snapshot", rev: 2,
    segments: [{ text: "Hi" }], nonfinal: [] } }).state;
  assert.equal(s.transcript.final[0].text, "Hi");
  const gap = run(s, { type: "kernel-message", msg: { type: "delta", rev: 9, base_rev: 8,
    final: [], nonfinal: [] } });
  assert.deepEqual(sent(gap.effects), [viewMessages.snapshotRequest()]);
});

test("choosing an input sets both device traits; counts of sent audio are kept", () => {
  const inputs = [{ deviceId: "a", label: "USB mic" }];
  const listed = run(fresh(), { type: "devices", inputs }).state;
  assert.deepEqual(run(listed, { type: "device-chosen", deviceId: "a" }).effects,
    [{ type: "set-device", deviceId: "a", label: "USB mic" }]);
  assert.deepEqual(run(listed, { type: "device-chosen", deviceId: "" }).effects,
    [{ type: "set-device", deviceId: "", label: "" }]);
  assert.deepEqual(run(fresh(), { type: "sent", bytes: 10, chunks: 2 }).state.sent,
    { bytes: 10, chunks: 2 });
  // A chosen input that is gone: the default one, and a notice saying so.
  const gone = { ...fresh(), traits: traits({ device: "Old mic", device_id: "zz" }),
    inputs };
  const asking = run(gone, press(), { ...accept, traits: traits({ device: "Old mic",
    device_id: "zz", active_view: ME }) });
  assert.deepEqual(asking.last, [{ type: "open-mic", session: "s1", deviceId: null }]);
  assert.match(run(asking.state, granted()).state.notice, /Old mic/);
});

test("closing the view while recording stops the session", () => {
  assert.deepEqual(run(recording(), { type: "closed" }).effects, [{ type: "stop-recorder" }]);
  const idle = fresh();
  assert.equal(run(idle, { type: "closed" }).state, idle);
});

// -- every event in every reachable state ------------------------------------------------

const problems = [...Object.values(MIC_PROBLEMS), recorderProblem("x")];
let sessions = 0;
/** Events as functions of the state (those naming a session name the current one). */
const EVENTS = [
  () => ({ type: "rendered" }),
  () => ({ ...press(`s${++sessions}`) }),
  () => ({ ...press(`s${++sessions}`), problem: MIC_PROBLEMS.denied }),
  () => ({ type: "stop" }), () => ({ type: "pause" }), () => ({ type: "resume" }),
  () => ({ type: "pause-press" }),
  () => kernelSays({ active_view: ME, status: "connecting" }, "active_view"),
  () => kernelSays({ active_view: ME, status: "recording" }),
  () => kernelSays({ active_view: ME, status: "reconnecting" }),
  () => kernelSays({ status: "idle" }), () => kernelSays({ status: "error", error: "E" }),
  () => kernelSays({ status: "error", error: "" }, "error"),
  () => kernelSays({ status: "recording", active_view: "other" }),
  () => kernelSays({ device: "USB" }, "device"),
  () => ({ type: "kernel-message", msg: { type: "snapshot", rev: 1, segments: [],
    nonfinal: [] } }),
  () => ({ type: "kernel-message", msg: { type: "stop_request" } }),
  () => ({ type: "kernel-message", msg: { type: "pause_request" } }),
  () => ({ type: "kernel-message", msg: { type: "resume_request" } }),
  (s) => ({ type: "kernel-message", msg: { type: "rejected", view: ME, session: s.session,
    reason: "busy" } }),
  () => ({ type: "kernel-timeout", session: null }),
  (s) => ({ type: "kernel-timeout", session: s.session }),
  (s) => granted(s.session, { id: `stream-${s.session}` }),
  () => granted("stale"),
  ...problems.map((problem) => (s) => ({ type: "mic-failed", session: s.session, problem })),
  (s) => ({ type: "recorder-stopped", session: s.session, chunks: 3 }),
  () => ({ type: "sent", bytes: 5, chunks: 1 }),
  () => ({ type: "devices", inputs: [{ deviceId: "d", label: "Mic" }] }),
  () => ({ type: "device-chosen", deviceId: "d" }),
  () => ({ type: "closed" }),
];
const KERNEL_EVENTS = new Set(["kernel-traits", "kernel-message"]);

// What makes two states different for the machine (not the clock, counts or session ids).
const key = (s) => JSON.stringify({ ...s, session: s.session && "S", clock: null,
  sent: null, transcript: s.transcript.rev });

/** Breadth-first over the states reachable with `events` from `starts` (bounded); `check`
 * sees every transition. Returns how many states were reached. */
function explore(starts, events, check) {
  const seen = new Map(starts.map((s) => [key(s), s]));
  const queue = [...starts];
  while (queue.length) {
    const state = queue.shift();
    for (const make of events) {
      const event = { now: (clock += 10), ...make(state) };
      const snapshot = structuredClone(state);
      const result = reduceView(state, event);
      assert.deepEqual(state, snapshot, `${event.type} changed its input state`);
      assert.ok(Array.isArray(result.effects));
      check(state, event, result);
      const k = key(result.state);
      if (!seen.has(k)) {
        seen.set(k, result.state);
        queue.push(result.state);
      }
      assert.ok(seen.size < 20_000, "the state space stays small");
    }
  }
  return seen.size;
}

const STARTS = [fresh(), fresh({ unavailable: MIC_PROBLEMS.insecure }),
  { ...fresh(), kernel: "missing" }];

test("in every reachable state, every event: pure, and the microphone only after the kernel took the recording", () => {
  const reached = explore(STARTS, EVENTS, (state, event, { state: next, effects }) => {
    for (const effect of effects) {
      if (effect.type === "open-mic") {
        // Only when the kernel names this view as the one recording this session,
        // after this view sent that session's start.
        assert.equal(event.type, "kernel-traits");
        assert.equal(event.traits.active_view, ME);
        assert.equal(state.phase, "starting");
        assert.equal(effect.session, state.session);
        assert.equal(next.kernelHasSession, true);
      }
      if (effect.type === "record") {
        assert.equal(event.type, "mic-granted");
        assert.equal(state.phase, "requesting-mic");
        assert.equal(state.kernelHasSession, true);
        assert.equal(effect.stream, event.stream);
      }
    }
    if (next.phase === "starting" && next.session !== state.session) {
      assert.deepEqual(sent(effects)[0], viewMessages.start(next.session, ME, "audio/webm"));
    }
    // A session of this view never disables its record control (the focus stays on it).
    if (next.session) assert.equal(shown(next).disabled, false, JSON.stringify(next));
    if (next.kernel === "missing" && !next.session) {
      assert.equal(shown(next).disabled, true);
    }
    const p = shown(next);
    assert.ok(p.label && p.statusText, `${p.phase} has a label and a status`);
  });
  assert.ok(reached > 50, `only ${reached} states reached`);
});

test("with no kernel answering, no sequence of events ever opens the microphone", () => {
  const noKernel = EVENTS.filter((make) => !KERNEL_EVENTS.has(make(fresh()).type));
  let pressed = 0;
  const reached = explore(STARTS, noKernel, (state, event, { effects }) => {
    if (event.type === "press") pressed += 1;
    for (const effect of effects) {
      assert.ok(!["open-mic", "record"].includes(effect.type), `${event.type} in ${state.phase}`);
    }
  });
  assert.ok(pressed > 0 && reached > 3);
});

test("model listeners come from one table and one abort removes them all", () => {
  const model = fakeModel({});
  const calls = [];
  const controller = new AbortController();
  listenToModel(model, [["msg:custom", (m) => calls.push(m)], ["change:status", () => {}]],
    controller.signal);
  assert.equal(model.listenerCount(), 2);
  controller.abort();
  assert.equal(model.listenerCount(), 0);
});
