// The transcript reducer and the presentation: pure functions of the view's state and
// the kernel's messages/traits (message shapes as view_messages.py builds them).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  KERNEL_STATUSES, LABELS, STATUS_TEXT, VIEW_PHASES, initialTranscript, mergeSegments,
  present, publishSavedTranscript, reduceTranscript, sessionEnded, shownPhase, themeOf,
} from "../../soniox_widget/static/widget.js";
import { fakeModel } from "./fake_model.mjs";

const seg = (text, speaker = null, language = null) => ({ text, speaker, language });
const text = (segments) => segments.map((s) => s.text).join("");

test("every status and view phase has a button label and a status text", () => {
  for (const phase of [...KERNEL_STATUSES, ...VIEW_PHASES]) {
    assert.ok(LABELS[phase], `no label for ${phase}`);
    assert.ok(STATUS_TEXT[phase], `no status text for ${phase}`);
  }
});

test("a snapshot replaces the transcript; an older one is ignored", () => {
  let s = initialTranscript({ segments: [seg("saved words")] });
  assert.equal(text(s.final), "saved words");
  s = reduceTranscript(s, { type: "snapshot", rev: 3, segments: [seg("Hello")],
    nonfinal: [seg(" wor")], translation: "Hallo", nonfinal_translation: "" });
  assert.equal(s.rev, 3);
  assert.equal(text(s.final), "Hello");
  assert.equal(text(s.nonfinal), " wor");
  assert.equal(s.translation, "Hallo");
  const older = { type: "snapshot", rev: 2, segments: [seg("old")], nonfinal: [] };
  assert.equal(reduceTranscript(s, older), s);
});

test("deltas append final words, replace the non-final tail, and never mutate", () => {
  const s0 = reduceTranscript(initialTranscript(null),
    { type: "snapshot", rev: 0, segments: [], nonfinal: [] });
  const s1 = reduceTranscript(s0, { type: "delta", rev: 1, base_rev: 0,
    final: [seg("Hello", "1")], nonfinal: [seg(" wo", "1")] });
  const s2 = reduceTranscript(s1, { type: "delta", rev: 2, base_rev: 1,
    final: [seg(" world", "1"), seg(" Hi", "2")], nonfinal: [],
    translation: "Hallo", nonfinal_translation: "Welt" });
  assert.deepEqual(s1.final, [seg("Hello", "1")]);
  assert.equal(text(s1.nonfinal), " wo");
  // Same speaker joins its neighbour; a new speaker starts a segment.
  assert.deepEqual(s2.final, [seg("Hello world", "1"), seg(" Hi", "2")]);
  assert.deepEqual(s2.nonfinal, []);
  assert.equal(s2.translation, "Hallo");
  assert.equal(s2.nonfinalTranslation, "Welt");
  assert.equal(s2.rev, 2);
  assert.deepEqual(s1.final, [seg("Hello", "1")], "the previous state is unchanged");
  // No nonfinal_translation in a delta keeps the tail as it was.
  const s3 = reduceTranscript(s2, { type: "delta", rev: 3, base_rev: 2, final: [],
    nonfinal: [] });
  assert.equal(s3.nonfinalTranslation, "Welt");
});

test("a delta that does not follow the last revision marks the state stale", () => {
  const s = reduceTranscript(initialTranscript(null),
    { type: "snapshot", rev: 5, segments: [seg("a")], nonfinal: [] });
  const gap = reduceTranscript(s, { type: "delta", rev: 8, base_rev: 7,
    final: [seg("b")], nonfinal: [] });
  assert.equal(gap.stale, true);
  assert.equal(gap.rev, 5);
  assert.equal(text(gap.final), "a", "nothing applied across the gap");
  const fixed = reduceTranscript(gap, { type: "snapshot", rev: 8, segments: [seg("ab")],
    nonfinal: [] });
  assert.equal(fixed.stale, false);
  assert.equal(text(fixed.final), "ab");
});

test("clear empties everything; other messages leave the state as it is", () => {
  const s = reduceTranscript(initialTranscript({ segments: [seg("x")], translation: "y" }),
    { type: "clear", rev: 9 });
  assert.deepEqual([s.rev, s.final, s.nonfinal, s.translation], [9, [], [], ""]);
  for (const msg of [{ type: "stop_request" }, { type: "rejected" }, null, "text", 3]) {
    assert.equal(reduceTranscript(s, msg), s);
  }
});

test("mergeSegments skips empty pieces and does not change its input", () => {
  const list = [seg("a", "1")];
  const out = mergeSegments(list, [seg("", "1"), seg("b", "1"), null, seg("c", "1", "de")]);
  assert.deepEqual(out, [seg("ab", "1"), seg("c", "1", "de")]);
  assert.deepEqual(list, [seg("a", "1")]);
});

// -- presentation ---------------------------------------------------------------------------

const local = (over = {}) => ({ phase: "idle", session: null, kernelHasSession: false,
  localError: "", notice: "", unavailable: null, ...over });
const kernel = (over = {}) => ({ status: "idle", error: "", active_view: "",
  engine_label: "", engine_kind: "", ...over });

test("the kernel's status is shown, except while this view asks for the microphone", () => {
  assert.equal(shownPhase(local(), "recording"), "recording");
  assert.equal(shownPhase(local({ phase: "requesting-mic", session: "s" }), "connecting"),
    "requesting-mic");
  assert.equal(shownPhase(local({ phase: "paused", session: "s" }), "recording"), "paused");
  assert.equal(shownPhase(local({ phase: "finishing", session: "s" }), "recording"),
    "finishing");
  assert.equal(shownPhase(local({ localError: "busy" }), "idle"), "error");
});

test("another view's recording disables this view's button and says so", () => {
  const p = present(local(), kernel({ status: "recording", active_view: "other" }), "me");
  assert.equal(p.disabled, true);
  assert.equal(p.statusText, "Recording in another view");
  const mine = present(local({ phase: "recording", session: "s" }),
    kernel({ status: "recording", active_view: "me" }), "me");
  assert.equal(mine.disabled, false);
  assert.equal(mine.label, "Stop");
  assert.equal(mine.pauseHidden, false);
  assert.equal(mine.deviceDisabled, true);
});

test("the badge's engine kind comes from the kernel, not from its label", () => {
  const p = present(local(), kernel({ engine_label: "my offline box", engine_kind: "server" }),
    "me");
  assert.equal(p.engineKind, "server");
  assert.equal(present(local(), kernel({ engine_kind: "local" }), "me").engineKind, "local");
});

test("a page that cannot record shows why once, with the kernel's copy merged", () => {
  const problem = { kind: "insecure-context", message: "Not secure." };
  const p = present(local({ unavailable: problem }), kernel({ error: "Not secure." }), "me");
  assert.equal(p.phase, "unavailable");
  assert.equal(p.disabled, true);
  assert.equal(p.error, "Not secure.");
  assert.equal(p.errorHidden, false);
});

// -- the end of a recording (marimo) ---------------------------------------------------------

test("a session ends on idle only once the kernel took it, or after our stop", () => {
  assert.equal(sessionEnded(local({ session: "s", phase: "recording" }), "idle"), false);
  assert.equal(sessionEnded(local({ session: "s", kernelHasSession: true }), "idle"), true);
  assert.equal(sessionEnded(local({ session: "s", phase: "finishing" }), "idle"), true);
  assert.equal(sessionEnded(local({ session: "s" }), "error"), true);
  assert.equal(sessionEnded(local({ session: null }), "idle"), false);
  assert.equal(sessionEnded(local({ session: "s", kernelHasSession: true }), "recording"),
    false);
});

test("the view that drove a recording sets the kernel's saved transcript from the browser",
  () => {
    const saved = { text: "Hello there", segments: [seg("Hello there")], translation: "" };
    const model = fakeModel({ saved_transcript: saved });
    publishSavedTranscript(model);
    assert.deepEqual(model.sets, [["saved_transcript", saved]]);
    assert.notEqual(model.sets[0][1], saved, "a new object, so hosts see a change");
    assert.equal(model.saves, 1);
    assert.deepEqual(model.sent, [], "a trait change, not a custom message");
  });

test("dark or light is read from the resolved background", () => {
  assert.equal(themeOf("rgb(255, 255, 255)"), "light");
  assert.equal(themeOf("rgb(33, 33, 33)"), "dark");
  assert.equal(themeOf("rgb(24, 28, 26)"), "dark"); // marimo dark
  assert.equal(themeOf("rgba(0, 0, 0, 0)"), "light"); // transparent: unknown
});
