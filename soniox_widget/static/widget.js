// @ts-check
// soniox-widget front end: one anywidget ES module, no build step.
//
// anywidget loads `_esm` as a single module from a blob URL, where relative imports do
// not resolve, so the parts live in this one file, each with one job and exported for
// the Node tests in tests/js/:
//
//   1. statuses and texts        the kernel's statuses (mirrors view_messages.STATUSES)
//   2. error mapping             why this page cannot use a microphone: one cause, one text
//   3. messages to the kernel    every view -> kernel message (mirrors view_messages.py)
//   4. transcript reducer        (state, kernel message) -> new state, pure
//   5. view reducer              (view state, event) -> {state, effects}, pure; and what
//                                the view shows for a state
//   6. device choice             which input to record from, pure
//   7. theme                     light or dark, read from the host's own colours
//   8. capture                   MediaRecorder, level meter, heartbeat (browser I/O)
//   9. view                      the DOM, built once; paint() applies a presentation,
//                                TranscriptPainter draws only what a delta changed
//  10. render                    wiring only: DOM and model events in as view events,
//                                effects out to capture, model and view
//
// The view records the microphone with MediaRecorder and sends numbered chunks to the
// kernel as binary buffers; the kernel sends the transcript back as deltas. The view
// never opens the microphone before the kernel has taken the recording, so a page with
// no kernel behind it (an HTML export, a static viewer) cannot record into nothing.

/**
 * @typedef {{ text: string, speaker?: string | null, language?: string | null }} Segment
 * @typedef {{ segments?: Segment[], translation?: string, text?: string }} SavedTranscript
 * @typedef {{
 *   status: string, error: string, engine_label: string, engine_kind: string,
 *   active_view: string, audio_bits_per_second: number, timeslice_ms: number,
 *   saved_transcript: SavedTranscript, device: string, device_id: string,
 * }} Model
 * @typedef {import("@anywidget/types").AnyModel<Model>} WidgetModel
 * @typedef {{ kind: string, message: string }} MicProblem
 */

// -- 1. statuses and texts -----------------------------------------------------------------

/** The kernel's `status` values; tests check this equals Python's view_messages.STATUSES. */
export const KERNEL_STATUSES = Object.freeze([
  "idle", "connecting", "recording", "paused", "reconnecting", "finishing", "error",
]);

/** Phases only a view has: waiting for the kernel to take a recording, asking for the
 * microphone, a page that can never record, a page with no kernel behind it. */
export const VIEW_PHASES = Object.freeze(["starting", "requesting-mic", "unavailable",
  "no-kernel"]);

/** @type {Readonly<Record<string, string>>} The main button's label in each phase. */
export const LABELS = Object.freeze({
  idle: "Record",
  starting: "Connecting…",
  "requesting-mic": "Allow the microphone…",
  connecting: "Connecting…",
  recording: "Stop",
  paused: "Stop",
  reconnecting: "Stop",
  finishing: "Finishing…",
  error: "Record",
  unavailable: "Record",
  "no-kernel": "Record",
});

/** @type {Readonly<Record<string, string>>} The status line in each phase. */
export const STATUS_TEXT = Object.freeze({
  idle: "Ready",
  starting: "Waiting for the kernel",
  "requesting-mic": "Waiting for microphone permission",
  connecting: "Connecting to the speech service",
  recording: "Listening",
  paused: "Paused — the session stays open",
  reconnecting: "Connection lost — reconnecting…",
  finishing: "Finishing the last words",
  error: "Error",
  unavailable: "No microphone in this page",
  "no-kernel": "No kernel",
});

/** The note a page with no kernel behind it shows (an HTML export, a static viewer, a
 * notebook whose widgets were restored from the file but not run). */
export const NO_KERNEL_NOTE =
  "Recording needs a running kernel: open the notebook in Jupyter and run the cell.";

/** The error when a kernel that answered before does not take a recording in time. */
export const KERNEL_BUSY_ERROR =
  "The kernel did not answer (is it busy running a cell?). Click Record again when it is idle.";

// Phases in which a session is open: only the view that owns it may press the button.
const SESSION_PHASES = new Set(["connecting", "recording", "paused", "reconnecting"]);
// Phases in which the owning view offers Pause/Resume. Not while connecting: pausing a
// session that has not reached the service yet buys nothing and only adds a race.
const PAUSABLE_PHASES = new Set(["recording", "paused", "reconnecting"]);

const MIME_TYPES = [
  "audio/webm;codecs=opus",
  "audio/webm",
  "audio/ogg;codecs=opus",
  "audio/mp4",
];

// A paused session sends no audio, so the kernel cannot tell "paused" from "the view is
// gone" (tab closed, browser crashed) by the audio alone; the heartbeat tells it.
const HEARTBEAT_MS = 2000;

// The level meter reads the analyser ~17 times a second, not at display rate: a bar
// 80 px wide shows no more, and each read costs main-thread time that transcript
// updates need (measured: ~160 ms per 10 s at display rate).
const METER_MS = 60;

// How long the view waits for the kernel: for an answer to its first snapshot request
// (none: no kernel behind this page) and for it to take a recording before the view
// gives up without having asked for the microphone. An idle kernel answers in
// milliseconds; one busy running a cell answers when the cell ends.
export const KERNEL_ANSWER_MS = 10_000;

// -- 2. error mapping ----------------------------------------------------------------------

/** @type {Readonly<Record<string, MicProblem>>} One message per real cause; `kind` goes to
 * the kernel with the abort (or unavailable) message. */
export const MIC_PROBLEMS = Object.freeze({
  insecure: {
    kind: "insecure-context",
    message:
      "This page is not a secure context, so the browser offers no microphone: open this " +
      "notebook over https or on localhost.",
  },
  policy: {
    kind: "blocked-by-policy",
    message:
      "This front end does not allow microphone access (its permissions policy blocks it). " +
      "Use JupyterLab or Notebook in a browser, or push audio from Python with " +
      "rec.transcribe_file() or rec.feed().",
  },
  denied: {
    kind: "mic-denied",
    message:
      "Microphone permission was denied. Allow microphone access for this page in the " +
      "browser's site settings, then click Record again.",
  },
  noMic: {
    kind: "no-mic",
    message:
      "No usable microphone was found. Connect one (or choose an input device in the " +
      "system settings), then click Record again.",
  },
});

/** @param {string} detail */
export function recorderProblem(detail) {
  return { kind: "recorder", message: `The browser could not record: ${detail}` };
}

/**
 * What the error mapping needs to know about the page; tests pass a fake one.
 * @typedef {{
 *   isSecureContext: boolean | undefined,
 *   hasGetUserMedia: boolean,
 *   policyAllowsMic: () => boolean | null,
 *   mimeType: () => string | null,
 * }} MicEnv
 */

/** @returns {MicEnv} the real page */
export function pageEnv() {
  const devices = globalThis.navigator && navigator.mediaDevices;
  return {
    isSecureContext: globalThis.isSecureContext,
    hasGetUserMedia: !!devices && typeof devices.getUserMedia === "function",
    policyAllowsMic,
    mimeType: pickMimeType,
  };
}

// Whether the page's permissions policy lets it use the microphone: true, false, or null
// when the browser cannot tell (no permissionsPolicy/featurePolicy, e.g. Firefox, Safari).
// An iframe without allow="microphone" (VS Code's notebook webviews) answers false.
function policyAllowsMic() {
  const doc = /** @type {any} */ (globalThis.document);
  if (!doc) return null;
  for (const policy of [doc.permissionsPolicy, doc.featurePolicy]) {
    if (policy && typeof policy.allowsFeature === "function") {
      try {
        return policy.allowsFeature("microphone") !== false;
      } catch {
        // an unknown feature name may throw: try the other API
      }
    }
  }
  return null;
}

/** @returns {string | null} the container to record in; null: no MediaRecorder at all */
function pickMimeType() {
  if (typeof MediaRecorder === "undefined") return null;
  for (const type of MIME_TYPES) {
    if (MediaRecorder.isTypeSupported(type)) return type;
  }
  return "";
}

/**
 * Why this page can never record, known before any click (null: it may record).
 * @param {MicEnv} env
 * @returns {MicProblem | null}
 */
export function micUnavailable(env) {
  if (env.isSecureContext === false) return MIC_PROBLEMS.insecure;
  if (!env.hasGetUserMedia) {
    // Browsers hide mediaDevices outside secure contexts; one that does not know
    // isSecureContext at all is old enough that the same advice is the likely fix.
    return env.isSecureContext === undefined
      ? MIC_PROBLEMS.insecure
      : recorderProblem("this browser offers no microphone (navigator.mediaDevices).");
  }
  if (env.policyAllowsMic() === false) return MIC_PROBLEMS.policy;
  if (env.mimeType() === null) return recorderProblem("this browser has no MediaRecorder.");
  return null;
}

/**
 * A getUserMedia or MediaRecorder failure, mapped to its cause. NotAllowedError is also
 * what a permissions policy gives (no prompt was ever shown), so the policy is asked first.
 * @param {any} err
 * @param {MicEnv} env
 * @returns {MicProblem}
 */
export function micError(err, env) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    if (env.isSecureContext === false) return MIC_PROBLEMS.insecure;
    // SecurityError means the document may not use the microphone at all, not a refusal.
    if (env.policyAllowsMic() === false || name === "SecurityError") return MIC_PROBLEMS.policy;
    return MIC_PROBLEMS.denied;
  }
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "NotReadableError") {
    return MIC_PROBLEMS.noMic;
  }
  return recorderProblem(err && err.message ? err.message : String(err));
}

// -- 3. messages to the kernel -------------------------------------------------------------

/**
 * Every message a view sends the kernel, built here and nowhere else; the kernel parses
 * them in view_messages.parse_view_message (tests/unit/test_view_contract.py holds the
 * two equal). `chunk` travels with one binary buffer, the audio.
 */
export const viewMessages = Object.freeze({
  /** @param {string} session @param {string} view @param {string} mimeType */
  start: (session, view, mimeType) => ({ type: "start", session, view, mime_type: mimeType }),
  /** @param {string} session @param {number} seq */
  chunk: (session, seq) => ({ type: "chunk", session, seq }),
  /** @param {string} session @param {number} chunks how many chunks were sent */
  stop: (session, chunks) => ({ type: "stop", session, chunks }),
  /** @param {string} session @param {MicProblem} problem */
  abort: (session, problem) => ({ type: "abort", session, kind: problem.kind,
    message: problem.message }),
  /** @param {string} session */
  pause: (session) => ({ type: "pause", session }),
  /** @param {string} session */
  resume: (session) => ({ type: "resume", session }),
  /** @param {string} session */
  heartbeat: (session) => ({ type: "heartbeat", session }),
  snapshotRequest: () => ({ type: "snapshot_request" }),
  /** @param {MicProblem} problem why this front end can never record */
  unavailable: (problem) => ({ type: "unavailable", kind: problem.kind,
    message: problem.message }),
  /** @param {string} message */
  viewError: (message) => ({ type: "view_error", message }),
});

/** What the view tells a kernel that took too long to take a recording (sent in case
 * it is only busy, so the recording it takes later ends at once). */
export const KERNEL_TIMEOUT = Object.freeze({ kind: "no-kernel-answer",
  message: "The kernel did not answer in time; the browser did not record." });

// -- 4. transcript reducer -----------------------------------------------------------------

/**
 * @typedef {{
 *   rev: number, final: Segment[], nonfinal: Segment[], translation: string,
 *   nonfinalTranslation: string, stale: boolean,
 * }} TranscriptState
 * `stale`: a delta did not follow the last revision; the view asks for a snapshot.
 */

/**
 * The state before the kernel answers: the transcript saved when the last recording
 * ended, so a reopened notebook or an HTML export (no kernel) still shows it.
 * @param {SavedTranscript | null | undefined} saved
 * @returns {TranscriptState}
 */
export function initialTranscript(saved) {
  const segments = saved && Array.isArray(saved.segments) ? saved.segments : [];
  return {
    rev: -1,
    final: mergeSegments([], segments),
    nonfinal: [],
    translation: (saved && saved.translation) || "",
    nonfinalTranslation: "",
    stale: false,
  };
}

/**
 * Merge segments into a new list, joining neighbours of the same speaker and language.
 * Never changes `list` or its segments.
 * @param {Segment[]} list
 * @param {Segment[] | undefined} segments
 * @returns {Segment[]}
 */
export function mergeSegments(list, segments) {
  const out = list.slice();
  for (const seg of segments || []) {
    if (!seg || !seg.text) continue;
    const last = out[out.length - 1];
    if (last && last.speaker === seg.speaker && last.language === seg.language) {
      out[out.length - 1] = { ...last, text: last.text + seg.text };
    } else {
      out.push({ text: seg.text, speaker: seg.speaker, language: seg.language });
    }
  }
  return out;
}

/**
 * Apply one kernel message (snapshot, delta, clear) to the transcript; any other message
 * returns `state` itself. Pure: `state` is never changed.
 * @param {TranscriptState} state
 * @param {any} msg
 * @returns {TranscriptState}
 */
export function reduceTranscript(state, msg) {
  if (!msg || typeof msg !== "object") return state;
  switch (msg.type) {
    case "snapshot":
      if (!(msg.rev >= state.rev)) return state;
      return {
        rev: msg.rev,
        final: mergeSegments([], msg.segments),
        nonfinal: mergeSegments([], msg.nonfinal),
        translation: msg.translation || "",
        nonfinalTranslation: msg.nonfinal_translation || "",
        stale: false,
      };
    case "delta":
      if (msg.base_rev !== state.rev) return { ...state, stale: true };
      return {
        rev: msg.rev,
        final: mergeSegments(state.final, msg.final),
        nonfinal: mergeSegments([], msg.nonfinal),
        translation: state.translation + (msg.translation || ""),
        nonfinalTranslation: msg.nonfinal_translation !== undefined
          ? msg.nonfinal_translation : state.nonfinalTranslation,
        stale: false,
      };
    case "clear":
      return { rev: msg.rev, final: [], nonfinal: [], translation: "",
        nonfinalTranslation: "", stale: false };
    default:
      return state;
  }
}

// -- 5. view reducer ------------------------------------------------------------------------

/**
 * The kernel's traits as the view last read them.
 * @typedef {{
 *   status: string, error: string, active_view: string, engine_label: string,
 *   engine_kind: string, device: string, device_id: string,
 *   audio_bits_per_second: number, timeslice_ms: number,
 * }} KernelTraits
 */

/**
 * Everything the view itself knows, in one place (the kernel's side is `traits`).
 * @typedef {{
 *   viewId: string, phase: string, session: string | null, kernelHasSession: boolean,
 *   localError: string, notice: string, unavailable: MicProblem | null,
 *   kernel: "unknown" | "present" | "missing", traits: KernelTraits,
 *   transcript: TranscriptState, clock: Clock, sent: { bytes: number, chunks: number },
 *   mimeType: string, inputs: AudioInput[], device: { deviceId: string | null,
 *   label: string, notice: string },
 * }} ViewState
 * `phase`: idle | starting (the kernel has not taken the recording yet) | requesting-mic
 * | recording | paused | finishing.
 * `kernelHasSession`: the kernel named this view active_view for `session`.
 * `kernel`: whether a kernel answers this view: unknown until the first answer; missing
 * when none came in time (then Record is disabled and the page says why).
 * @typedef {ViewState} LocalState the part of it `present` and `shownPhase` read
 * @typedef {{ startedAt: number, pausedMs: number, frozenAt: number }} Clock
 * Recorded time: wall time since the start, less the pauses, frozen at pause and stop.
 */

/**
 * What the view must do for a transition; render() carries these out.
 * @typedef {{ type: "send", message: any }
 *   | { type: "heartbeat", session: string }
 *   | { type: "wait-kernel", session: string | null }
 *   | { type: "open-mic", session: string, deviceId: string | null }
 *   | { type: "record", session: string, stream: any, mimeType: string,
 *       bitsPerSecond: number, timesliceMs: number }
 *   | { type: "discard-mic", stream: any }
 *   | { type: "stop-recorder" } | { type: "pause-recorder" } | { type: "resume-recorder" }
 *   | { type: "release" } | { type: "clock", running: boolean }
 *   | { type: "focus-record" } | { type: "publish-saved" } | { type: "list-devices" }
 *   | { type: "set-device", deviceId: string, label: string }} Effect
 */

/**
 * The events a view reacts to; every one carries `now` (ms), the wiring's clock.
 * @typedef {{ now: number } & (
 *   { type: "rendered" }
 *   | { type: "press", session: string, mimeType: string, problem: MicProblem | null }
 *   | { type: "pause-press" } | { type: "stop" } | { type: "pause" } | { type: "resume" }
 *   | { type: "kernel-traits", traits: KernelTraits, changed: string }
 *   | { type: "kernel-message", msg: any }
 *   | { type: "kernel-timeout", session: string | null }
 *   | { type: "mic-granted", session: string, stream: any, fellBack: boolean }
 *   | { type: "mic-failed", session: string, problem: MicProblem }
 *   | { type: "recorder-stopped", session: string, chunks: number }
 *   | { type: "sent", bytes: number, chunks: number }
 *   | { type: "devices", inputs: AudioInput[] }
 *   | { type: "device-chosen", deviceId: string }
 *   | { type: "closed" })} ViewEvent
 * `press`: the record control (click, Space, Enter): starts or stops, whichever applies.
 * `stop`, `pause`, `resume`: the kernel asked (stop_request...); `pause-press`: the
 * pause control. `kernel-timeout`: KERNEL_ANSWER_MS after the first snapshot request
 * (session null) or after a start, whether or not the kernel answered meanwhile.
 */

/**
 * A view before anything happened: the saved transcript (until the kernel answers, or
 * forever in a page without a kernel), the kernel's traits as saved.
 * @param {{ viewId: string, traits: KernelTraits, saved: SavedTranscript | null,
 *           unavailable: MicProblem | null }} init
 * @returns {ViewState}
 */
export function initialView({ viewId, traits, saved, unavailable }) {
  return {
    viewId, phase: "idle", session: null, kernelHasSession: false, localError: "",
    notice: "", unavailable, kernel: "unknown", traits,
    transcript: initialTranscript(saved), clock: { startedAt: 0, pausedMs: 0, frozenAt: 0 },
    sent: { bytes: 0, chunks: 0 }, mimeType: "", inputs: [],
    device: { deviceId: null, label: "", notice: "" },
  };
}

const DEVICE_TRAITS = new Set(["device", "device_id"]);

// Phases in which this view's session is open and the record control stops it. While
// starting or asking for the microphone it cancels; while finishing it does nothing.
const STOPPABLE_PHASES = new Set(["starting", "requesting-mic", "recording", "paused"]);

/**
 * The view's one state machine: pure, `state` is never changed. An event that does not
 * apply returns `state` itself and no effects.
 * @param {ViewState} state
 * @param {ViewEvent} event
 * @returns {{ state: ViewState, effects: Effect[] }}
 */
export function reduceView(state, event) {
  const send = (/** @type {any} */ message) => ({ type: "send", message });
  const none = { state, effects: [] };
  switch (event.type) {
    case "rendered": {
      /** @type {Effect[]} */
      const effects = [send(viewMessages.snapshotRequest()),
        { type: "wait-kernel", session: null }];
      // Tell the kernel too, so rec.error says why this front end cannot record.
      if (state.unavailable) effects.push(send(viewMessages.unavailable(state.unavailable)));
      else effects.push({ type: "list-devices" }); // named if permission was given before
      return { state, effects };
    }
    case "press": {
      if (state.session) {
        return STOPPABLE_PHASES.has(state.phase) ? stopSession(state, event.now) : none;
      }
      const p = present(state, state.traits, state.viewId);
      if (p.disabled || (p.phase !== "idle" && p.phase !== "error")) return none;
      const session = event.session;
      const fresh = { ...state, localError: "", notice: "", kernelHasSession: false,
        clock: { startedAt: 0, pausedMs: 0, frozenAt: 0 }, sent: { bytes: 0, chunks: 0 },
        mimeType: event.mimeType };
      const start = send(viewMessages.start(session, state.viewId, event.mimeType));
      if (event.problem) {
        // A cause known before the browser is asked (normally found at render, which
        // keeps Record disabled): the kernel learns it from the abort.
        return { state: { ...fresh, session: null, phase: "idle" },
          effects: [start, send(viewMessages.abort(session, event.problem))] };
      }
      // The kernel connects upstream while the browser asks for the microphone, which
      // happens only once the kernel has taken the recording (kernel-traits below).
      return { state: { ...fresh, session, phase: "starting" },
        effects: [start, { type: "heartbeat", session }, { type: "wait-kernel", session }] };
    }
    case "stop":
      return state.session && STOPPABLE_PHASES.has(state.phase)
        ? stopSession(state, event.now) : none;
    case "pause-press":
      return state.phase === "paused" ? resume(state, event.now) : pause(state, event.now);
    case "pause":
      return pause(state, event.now);
    case "resume":
      return resume(state, event.now);
    case "kernel-traits": {
      // The device traits are also set by this view itself: not a sign of a kernel.
      const kernel = DEVICE_TRAITS.has(event.changed) ? state.kernel : "present";
      return kernelTraits({ ...state, kernel, traits: event.traits }, event.changed);
    }
    case "kernel-message":
      return kernelMessage({ ...state, kernel: "present" }, event.msg, event.now);
    case "kernel-timeout": {
      if (event.session === null) {
        return state.kernel === "unknown" ? { state: { ...state, kernel: "missing" },
          effects: [] } : none;
      }
      if (event.session !== state.session || state.kernelHasSession) return none;
      // The kernel never took this recording: the microphone was never asked for.
      const missing = state.kernel !== "present";
      return {
        state: { ...endSession(state), kernel: missing ? "missing" : "present",
          localError: missing ? "" : KERNEL_BUSY_ERROR },
        effects: [send(viewMessages.abort(event.session, KERNEL_TIMEOUT)),
          ...endEffects(state)],
      };
    }
    case "mic-granted": {
      if (event.session !== state.session || state.phase !== "requesting-mic") {
        // Stopped, rejected or ended while the browser asked: this stream is not needed.
        return { state, effects: [{ type: "discard-mic", stream: event.stream }] };
      }
      const chosen = state.device;
      const notice = chosen.notice ||
        (event.fellBack ? deviceGoneNotice(chosen.label || "chosen") : "");
      return {
        state: { ...state, phase: "recording", notice,
          clock: { startedAt: event.now, pausedMs: 0, frozenAt: 0 } },
        effects: [{ type: "record", session: event.session, stream: event.stream,
          mimeType: state.mimeType,
          bitsPerSecond: state.traits.audio_bits_per_second || 32000,
          timesliceMs: state.traits.timeslice_ms || 120 },
        { type: "clock", running: true },
        // Permission is granted now, so the browser tells the inputs' names.
        { type: "list-devices" }],
      };
    }
    case "mic-failed":
      if (event.session !== state.session) return none;
      return { state: endSession(state),
        effects: [send(viewMessages.abort(event.session, event.problem)),
          ...endEffects(state)] };
    case "recorder-stopped":
      // The recorder gave its last chunk: the stop follows it (unless the kernel already
      // ended the session).
      if (event.session !== state.session) return none;
      return { state, effects: [send(viewMessages.stop(event.session, event.chunks)),
        { type: "release" }, { type: "clock", running: false }] };
    case "sent":
      return { state: { ...state, sent: { bytes: event.bytes, chunks: event.chunks } },
        effects: [] };
    case "devices":
      // Listed again on every device change: the same list is no change (no repaint).
      return JSON.stringify(event.inputs) === JSON.stringify(state.inputs) ? none
        : { state: { ...state, inputs: event.inputs }, effects: [] };
    case "device-chosen": {
      const input = state.inputs.find((d) => d.deviceId === event.deviceId);
      return { state, effects: [{ type: "set-device", deviceId: input ? input.deviceId : "",
        label: input ? input.label : "" }] };
    }
    case "closed":
      return state.session && (state.phase === "recording" || state.phase === "paused")
        ? stopSession(state, event.now) : none;
    default:
      return none;
  }
}

/** Stop this view's session: the recorder's last chunk and the stop message follow
 * (recorder-stopped); with no recorder yet the stop goes now.
 * @param {ViewState} state @param {number} now */
function stopSession(state, now) {
  const session = /** @type {string} */ (state.session);
  const clock = state.clock.frozenAt ? state.clock : { ...state.clock, frozenAt: now };
  const next = { ...state, phase: "finishing", clock };
  if (state.phase === "recording" || state.phase === "paused") {
    return { state: next, effects: [{ type: "stop-recorder" }] };
  }
  return { state: next, effects: [{ type: "send", message: viewMessages.stop(session,
    state.sent.chunks) }, { type: "release" }, { type: "clock", running: false }] };
}

/** @param {ViewState} state @param {number} now */
function pause(state, now) {
  if (!state.session || state.phase !== "recording") return { state, effects: [] };
  return { state: { ...state, phase: "paused", clock: { ...state.clock, frozenAt: now } },
    effects: [{ type: "pause-recorder" },
      { type: "send", message: viewMessages.pause(state.session) }] };
}

/** @param {ViewState} state @param {number} now */
function resume(state, now) {
  if (!state.session || state.phase !== "paused") return { state, effects: [] };
  const c = state.clock;
  return { state: { ...state, phase: "recording",
    clock: { ...c, pausedMs: c.pausedMs + now - c.frozenAt, frozenAt: 0 } },
  effects: [{ type: "resume-recorder" },
    { type: "send", message: viewMessages.resume(state.session) }] };
}

/** The view's side of a session that is over. @param {ViewState} state @returns {ViewState} */
function endSession(state) {
  return { ...state, session: null, phase: "idle", kernelHasSession: false, localError: "" };
}

/** Let go of the microphone, the heartbeat and the clock; give focus back to the record
 * control (the pause control it may have had is hidden now). @param {ViewState} state
 * @returns {Effect[]} */
function endEffects(state) {
  /** @type {Effect[]} */
  const effects = [{ type: "release" }, { type: "clock", running: false }];
  if (state.phase === "recording" || state.phase === "paused") {
    effects.push({ type: "focus-record" });
  }
  return effects;
}

/** The kernel's trait `changed` changed (all are in `state.traits` already).
 * @param {ViewState} state @param {string} changed */
function kernelTraits(state, changed) {
  const t = state.traits;
  /** @type {Effect[]} */
  const effects = [];
  let next = state;
  if (state.session && t.active_view === state.viewId && !state.kernelHasSession) {
    next = { ...next, kernelHasSession: true };
    if (state.phase === "starting") {
      // The kernel took the recording: now, and only now, ask for the microphone.
      const device = chooseDevice(state.inputs, { label: t.device || "",
        deviceId: t.device_id || "" });
      next = { ...next, phase: "requesting-mic", device };
      effects.push({ type: "open-mic", session: state.session, deviceId: device.deviceId });
    }
  }
  // Only a new status can end the session: the kernel clears `error` before it names
  // the new status, and the old one ("error") must not end the recording just started.
  if (changed === "status" && sessionEnded(next, t.status || "idle")) {
    // After our own stop this only tidies up; if the kernel ended the session (or gave
    // up), it lets go of the microphone and the heartbeat. The kernel set
    // saved_transcript just before this status (one ordered channel).
    return { state: endSession(next),
      effects: [...effects, ...endEffects(next), { type: "publish-saved" }] };
  }
  return { state: next, effects };
}

/** A custom message from the kernel. @param {ViewState} state @param {any} msg
 * @param {number} now */
function kernelMessage(state, msg, now) {
  if (!msg || typeof msg !== "object") return { state, effects: [] };
  const transcript = reduceTranscript(state.transcript, msg);
  if (transcript !== state.transcript) {
    return { state: { ...state, transcript },
      effects: transcript.stale ? [{ type: "send", message: viewMessages.snapshotRequest() }]
        : [] };
  }
  switch (msg.type) {
    case "stop_request":
      return reduceView(state, { type: "stop", now });
    case "pause_request":
      return pause(state, now);
    case "resume_request":
      return resume(state, now);
    case "rejected":
      if (msg.view !== state.viewId || !state.session) return { state, effects: [] };
      return { state: { ...endSession(state), localError: msg.reason || "The recorder is busy." },
        effects: endEffects(state) };
    default:
      return { state, effects: [] };
  }
}

/**
 * Recorded time of `clock` at `now`, in ms (0 before the microphone records).
 * @param {Clock} clock @param {number} now
 */
export function recordedMs(clock, now) {
  if (!clock.startedAt) return 0;
  return (clock.frozenAt || now) - clock.startedAt - clock.pausedMs;
}

/**
 * The phase the view shows. Local phases the kernel cannot know yet (waiting for it,
 * asking for the microphone) win; otherwise the kernel's status is the truth, so every
 * view agrees.
 * @param {LocalState} local
 * @param {string} kernelStatus
 */
export function shownPhase(local, kernelStatus) {
  const ks = kernelStatus || "idle";
  if (local.phase === "requesting-mic") return "requesting-mic";
  if (local.phase === "starting") return "starting";
  if (local.unavailable && !local.session && (ks === "idle" || ks === "error")) {
    return "unavailable";
  }
  if (local.kernel === "missing" && !local.session) return "no-kernel";
  if (local.localError) return "error";
  if (ks === "error") return "error";
  if (local.phase === "finishing" && ks !== "idle") return "finishing";
  // The owner's MediaRecorder is paused at once; show it before the kernel confirms.
  if (local.phase === "paused" && ks === "recording") return "paused";
  return ks;
}

/**
 * Whether the kernel's new status ends this view's session: idle after the kernel took
 * it (or after our own stop), or error. An idle before the kernel took the session may be
 * stale, so it is not an end then.
 * @param {LocalState} local
 * @param {string} kernelStatus
 */
export function sessionEnded(local, kernelStatus) {
  if (!local.session) return false;
  if (kernelStatus === "error") return true;
  return kernelStatus === "idle" && (local.phase === "finishing" || local.kernelHasSession);
}

/**
 * Everything the view shows, from its own state and the kernel's traits. Pure.
 * @param {LocalState} local
 * @param {{ status: string, error: string, active_view: string, engine_label: string,
 *           engine_kind: string }} kernel
 * @param {string} viewId
 */
export function present(local, kernel, viewId) {
  const phase = shownPhase(local, kernel.status);
  const activeView = kernel.active_view || "";
  const elsewhere = activeView !== "" && activeView !== viewId;
  const mine = local.session !== null;
  const paused = local.phase === "paused";
  const kernelError = kernel.error || "";
  const error = phase === "unavailable" && local.unavailable
    ? [...new Set([local.unavailable.message, kernelError].filter(Boolean))].join(" ")
    : local.localError || kernelError;
  return {
    phase,
    status: kernel.status || "idle",
    // Whether a kernel answers this view: unknown, present or missing.
    kernel: local.kernel || "unknown",
    label: LABELS[phase] || "Record",
    // Disabled only when this view can do nothing at all. Its own session never disables
    // the control (that would drop the keyboard focus): while it waits it is busy.
    disabled: phase === "unavailable" || phase === "no-kernel" ||
      (!mine && (elsewhere || SESSION_PHASES.has(phase) || phase === "finishing")),
    busy: mine && (local.phase === "starting" || local.phase === "requesting-mic" ||
      local.phase === "finishing" || phase === "connecting"),
    // Finishing: pressing does nothing until the kernel is done.
    inert: mine && local.phase === "finishing",
    title: phase === "unavailable" && local.unavailable ? local.unavailable.message
      : elsewhere && !mine ? "Recording in another view" : "",
    statusText: elsewhere && !mine && phase === "recording"
      ? "Recording in another view" : STATUS_TEXT[phase] || phase,
    badge: kernel.engine_label || "",
    engineKind: kernel.engine_kind || "",
    pauseHidden: !(mine && (local.phase === "recording" || paused) && PAUSABLE_PHASES.has(phase)),
    pauseText: paused ? "Resume" : "Pause",
    paused,
    // While reconnecting the microphone still records (the kernel queues the audio).
    recording: mine && local.phase === "recording" && phase !== "connecting",
    mine,
    error,
    errorHidden: !error || (phase !== "error" && phase !== "unavailable"),
    notice: phase === "no-kernel" ? NO_KERNEL_NOTE : local.notice,
    // The input can be changed whenever this view is not recording with it.
    deviceDisabled: mine,
  };
}

/**
 * What the view that drove a recording gives back when it ends: the kernel's saved
 * transcript, set from the browser. Hosts that re-run code only on changes that come
 * from the browser (marimo's `mo.ui.anywidget(rec).value`) then see the change; in
 * Jupyter it is the value the kernel already holds, so nothing bounces back.
 * @param {WidgetModel} model
 */
export function publishSavedTranscript(model) {
  const saved = model.get("saved_transcript") || {};
  model.set("saved_transcript", { ...saved });
  model.save_changes();
}

// -- 6. device choice ----------------------------------------------------------------------

/**
 * @typedef {{ deviceId: string, label: string }} AudioInput
 */

/**
 * The audio inputs worth listing. Before the page may use the microphone browsers hide
 * the labels; then nothing is listed (a list of blank names helps no one).
 * @param {Array<{ kind: string, deviceId: string, label: string }>} devices
 * @returns {AudioInput[]}
 */
export function audioInputs(devices) {
  const inputs = (devices || []).filter((d) => d.kind === "audioinput" && d.deviceId);
  if (inputs.some((d) => !d.label)) return [];
  return inputs.map((d) => ({ deviceId: d.deviceId, label: d.label }));
}

/**
 * Which input to ask getUserMedia for, given the chosen one (traits `device` = label,
 * `device_id`). The id is per-origin and may change; the label is the fallback. A chosen
 * device that is gone gives the default input and a notice saying so.
 * @param {AudioInput[]} inputs what the browser lists now ([] when unknown)
 * @param {{ label: string, deviceId: string }} wanted
 * @returns {{ deviceId: string | null, label: string, notice: string }}
 */
export function chooseDevice(inputs, wanted) {
  const label = wanted.label || "";
  const id = wanted.deviceId || "";
  if (!label && !id) return { deviceId: null, label: "", notice: "" };
  if (!inputs.length) return { deviceId: id || null, label, notice: "" }; // not listed yet
  const found = inputs.find((d) => id && d.deviceId === id) ||
    inputs.find((d) => label && d.label === label);
  if (found) return { deviceId: found.deviceId, label: found.label, notice: "" };
  return { deviceId: null, label: "", notice: deviceGoneNotice(label || id) };
}

/** @param {string} name */
export function deviceGoneNotice(name) {
  return `The microphone "${name}" is not available; recording from the default input.`;
}

/**
 * getUserMedia's audio constraints: mono, and no echo cancellation, noise suppression or
 * gain control (measured: they hurt recognition); the chosen input exactly.
 * @param {string | null} deviceId
 */
export function audioConstraints(deviceId) {
  /** @type {MediaTrackConstraints} */
  const audio = { channelCount: 1, echoCancellation: false, noiseSuppression: false,
    autoGainControl: false };
  if (deviceId) audio.deviceId = { exact: deviceId };
  return { audio };
}

// -- 7. theme ------------------------------------------------------------------------------

/**
 * Relative luminance (WCAG) of a CSS rgb()/rgba() colour; null if it cannot be read or is
 * transparent.
 * @param {string} color
 */
export function luminance(color) {
  const parts = (color.match(/[\d.]+/g) || []).map(Number);
  if (parts.length < 3 || (parts.length > 3 && parts[3] === 0)) return null;
  const [r, g, b] = parts.slice(0, 3).map((v) => v / 255)
    .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/**
 * "dark" or "light" from the background the widget ended up with. The CSS reads the
 * host's own theme variables (JupyterLab and Notebook 7 --jp-*, VS Code --vscode-*,
 * marimo's --background); whichever applies, the resolved colour tells which text
 * colours keep WCAG AA contrast.
 * @param {string} background computed background-color of the widget
 */
export function themeOf(background) {
  const lum = luminance(background);
  return lum !== null && lum < 0.2 ? "dark" : "light";
}

/**
 * Keep `box`'s data-theme in step with the host. The colours come from the host's
 * variables (CSS); which text colours stay legible depends on how dark the result is, so
 * it is read again when the host changes theme (JupyterLab: a body attribute; VS Code:
 * body classes; marimo: a class on <html>). Stops when `signal` aborts.
 * @param {HTMLElement} box @param {AbortSignal} signal
 */
function watchTheme(box, signal) {
  const paintTheme = () => {
    box.dataset.theme = themeOf(getComputedStyle(box).backgroundColor);
  };
  // The host's new stylesheet may apply a little after its marker changes: look again.
  /** @type {ReturnType<typeof setTimeout>[]} */
  let checks = [];
  const changed = () => {
    checks.forEach(clearTimeout);
    requestAnimationFrame(paintTheme);
    checks = [300, 1500].map((ms) => setTimeout(paintTheme, ms));
  };
  if (typeof MutationObserver !== "undefined") {
    const watch = new MutationObserver(changed);
    for (const node of [document.documentElement, document.body]) {
      if (node) watch.observe(node, { attributes: true });
    }
    signal.addEventListener("abort", () => watch.disconnect());
  }
  signal.addEventListener("abort", () => checks.forEach(clearTimeout));
  requestAnimationFrame(paintTheme);
  paintTheme();
}

// -- 8. capture ----------------------------------------------------------------------------

/**
 * The microphone side of one view: MediaRecorder, the level meter and the heartbeat.
 * It knows nothing of the DOM; it reports through the callbacks.
 */
export class Capture {
  /**
   * @param {{
   *   send: (content: any, buffers?: ArrayBuffer[]) => void,
   *   onLevel: (level: number) => void,
   *   onSent: (bytes: number, chunks: number) => void,
   * }} hooks
   */
  constructor(hooks) {
    this.hooks = hooks;
    /** @type {MediaStream | null} */
    this.stream = null;
    /** @type {MediaRecorder | null} */
    this.recorder = null;
    /** @type {AudioContext | null} */
    this.audioCtx = null;
    /** @type {Promise<unknown>} */
    this.chain = Promise.resolve();
    this.meterTimer = 0;
    this.heartbeat = 0;
    this.chunks = 0;
  }

  // Session messages leave in the order they happened, after any chunk still being read
  // (arrayBuffer() is async). A failed step is logged and the chain goes on, so a later
  // pause, resume or stop is never lost behind it.
  /** @param {() => unknown} step */
  inOrder(step) {
    this.chain = this.chain.then(step).catch((err) => {
      console.error("soniox-widget: could not send to the kernel", err);
    });
    return this.chain;
  }

  /** @param {() => boolean} alive @param {string} session */
  startHeartbeat(session, alive) {
    this.heartbeat = setInterval(() => {
      if (alive()) this.hooks.send(viewMessages.heartbeat(session));
    }, HEARTBEAT_MS);
  }

  /**
   * Ask for the microphone; a chosen input that is gone falls back to the default one.
   * @param {string | null} deviceId
   * @returns {Promise<{ stream: MediaStream, fellBack: boolean }>}
   */
  async open(deviceId) {
    try {
      return { stream: await navigator.mediaDevices.getUserMedia(audioConstraints(deviceId)),
        fellBack: false };
    } catch (err) {
      const name = /** @type {any} */ (err).name;
      if (!deviceId || (name !== "OverconstrainedError" && name !== "NotFoundError")) throw err;
      return { stream: await navigator.mediaDevices.getUserMedia(audioConstraints(null)),
        fellBack: true };
    }
  }

  /**
   * Record `stream`; each chunk goes to the kernel numbered, in order.
   * @param {MediaStream} stream
   * @param {{ session: string, mimeType: string | null, bitsPerSecond: number,
   *           timesliceMs: number, isCurrent: () => boolean,
   *           onError: (err: any) => void, onStopped: (chunks: number) => void }} opts
   */
  record(stream, opts) {
    this.stream = stream;
    /** @type {MediaRecorderOptions} */
    const options = { audioBitsPerSecond: opts.bitsPerSecond };
    if (opts.mimeType) options.mimeType = opts.mimeType;
    const recorder = new MediaRecorder(stream, options);
    this.recorder = recorder;
    this.chunks = 0;
    let bytes = 0;
    const session = opts.session;
    recorder.ondataavailable = (event) => {
      if (!event.data || event.data.size === 0 || !opts.isCurrent()) return;
      const n = this.chunks++;
      this.inOrder(async () => {
        const buffer = await event.data.arrayBuffer();
        this.hooks.send(viewMessages.chunk(session, n), [buffer]);
        bytes += buffer.byteLength;
        this.hooks.onSent(bytes, n + 1);
      });
    };
    recorder.onerror = (event) => opts.onError(/** @type {any} */ (event).error || event);
    // Also after a stop from the paused state: the recorder then gives its last data
    // (dataavailable) before this event, so the stop message goes after the last chunk.
    recorder.onstop = () => {
      this.inOrder(() => opts.onStopped(this.chunks));
    };
    recorder.start(opts.timesliceMs);
    this.startMeter(stream);
  }

  /** @returns {boolean} whether a recorder was running (its onstop then ends the session) */
  stop() {
    const recorder = this.recorder;
    if (recorder && recorder.state !== "inactive") {
      recorder.stop();
      return true;
    }
    return false;
  }

  pause() {
    const recorder = this.recorder;
    if (!recorder || recorder.state !== "recording") return false;
    recorder.pause();
    return true;
  }

  resume() {
    const recorder = this.recorder;
    if (!recorder || recorder.state !== "paused") return false;
    recorder.resume();
    return true;
  }

  /** @param {MediaStream} stream */
  startMeter(stream) {
    try {
      const Ctx = window.AudioContext || /** @type {any} */ (window).webkitAudioContext;
      const ctx = new Ctx();
      const source = ctx.createMediaStreamSource(stream);
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 1024;
      source.connect(analyser);
      this.audioCtx = ctx;
      const data = new Float32Array(analyser.fftSize);
      const tick = () => {
        analyser.getFloatTimeDomainData(data);
        let sum = 0;
        for (let i = 0; i < data.length; i++) sum += data[i] * data[i];
        const rms = Math.sqrt(sum / data.length);
        this.hooks.onLevel(Math.min(1, rms * 4)); // speech RMS ~0.05-0.25 fills the bar
      };
      tick();
      this.meterTimer = setInterval(tick, METER_MS);
    } catch (err) {
      console.warn("soniox-widget: no level meter", err);
    }
  }

  /** Let go of the microphone, the meter and the heartbeat. */
  release() {
    if (this.meterTimer) clearInterval(this.meterTimer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.meterTimer = 0;
    this.heartbeat = 0;
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.audioCtx) this.audioCtx.close().catch(() => {});
    this.stream = null;
    this.recorder = null;
    this.audioCtx = null;
    this.hooks.onLevel(0);
  }
}

// -- 9. view -------------------------------------------------------------------------------

/**
 * @param {string} tag @param {string} [className] @param {string} [text]
 * @returns {any}
 */
function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** @param {number} ms */
export function formatElapsed(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

// Longest text node the painter grows in place (see TranscriptPainter.extendLast).
const TEXT_NODE_CHARS = 1024;

/**
 * @typedef {{
 *   final: HTMLElement, nonfinal: HTMLElement, placeholder: HTMLElement,
 *   translationBox: HTMLElement, translationFinal: HTMLElement,
 *   translationNonfinal: HTMLElement,
 * }} TranscriptElements
 */

/**
 * Draws a transcript into its elements, touching only what changed since the last paint.
 *
 * A delta only appends final text (the reducer merges it into the last segment or adds
 * segments) and replaces the short non-final tail, so rebuilding every final node per
 * delta made a paint cost grow with the transcript (~1.7 ms at 64 tokens in JupyterLab).
 * Here the final text is extended in place: the last segment's text node grows, new
 * segments get new nodes, and only the non-final span is rebuilt. Anything that is not
 * such an extension (a snapshot, a revision, a new recording's clear) is drawn from
 * scratch, so the DOM always equals what a full rebuild of the same state gives.
 * It reads no layout; scrolling is the View's job.
 */
export class TranscriptPainter {
  /** @param {TranscriptElements} els @param {Document} [doc] */
  constructor(els, doc = globalThis.document) {
    this.els = els;
    this.doc = doc;
    /** @type {Segment[]} the final segments on screen (the reducer never changes them) */
    this.final = [];
    /** @type {Text | null} the last text node of the last final segment */
    this.lastText = null;
    /** @type {Segment[]} */
    this.nonfinal = [];
    // The final translation lives in one text node that only grows during a recording.
    this.translationText = doc.createTextNode("");
    els.translationFinal.replaceChildren(this.translationText);
    this.nonfinalTranslation = "";
    /** @type {boolean | null} */
    this.empty = null;
    /** @type {boolean | null} */
    this.noTranslation = null;
  }

  /** Draw `t` from scratch (used for the first paint; also what any other paint equals).
   * @param {TranscriptState} t */
  rebuild(t) {
    this.final = [];
    this.lastText = null;
    this.els.final.replaceChildren();
    this.nonfinal = [];
    this.els.nonfinal.replaceChildren();
    this.translationText.data = "";
    this.nonfinalTranslation = "";
    this.els.translationNonfinal.textContent = "";
    this.empty = null;
    this.noTranslation = null;
    this.paint(t);
  }

  /** Bring the elements from the last painted state to `t`.
   * @param {TranscriptState} t */
  paint(t) {
    this.paintFinal(t.final);
    if (!sameSegments(t.nonfinal, this.nonfinal)) {
      this.els.nonfinal.replaceChildren(segmentNodes(this.doc, t.nonfinal, 0).frag);
    }
    this.nonfinal = t.nonfinal;
    const empty = t.final.length === 0 && t.nonfinal.length === 0;
    if (empty !== this.empty) this.els.placeholder.hidden = !empty;
    this.empty = empty;
    this.paintTranslation(t.translation || "", t.nonfinalTranslation || "");
  }

  /** @param {Segment[]} segs */
  paintFinal(segs) {
    const shown = this.final;
    if (segs === shown) return;
    const n = shown.length;
    // An extension keeps every shown segment but the last (the very same objects) and
    // only lengthens the last one's text.
    let extension = segs.length >= n;
    for (let i = 0; extension && i < n - 1; i++) extension = segs[i] === shown[i];
    if (extension && n > 0) {
      const was = shown[n - 1];
      const now = segs[n - 1];
      extension = was === now || (now.speaker === was.speaker &&
        now.language === was.language && now.text.startsWith(was.text));
      if (extension && was !== now && this.lastText) {
        this.extendLast(now.text.slice(was.text.length));
      }
    }
    let from = n;
    if (!extension) {
      this.els.final.replaceChildren();
      this.lastText = null;
      from = 0;
    }
    if (segs.length > from) {
      const { frag, lastText } = segmentNodes(this.doc, segs, from);
      this.els.final.append(frag);
      this.lastText = lastText;
    }
    this.final = segs;
  }

  /**
   * Add text to the last final segment. A long run of one speaker is one segment; the
   * browser's cost of changing a text node grows with its length, so past TEXT_NODE_CHARS
   * the segment's span gets a new text node (the page looks the same).
   * @param {string} more
   */
  extendLast(more) {
    const node = /** @type {Text} */ (this.lastText);
    if (node.data.length + more.length <= TEXT_NODE_CHARS) {
      node.appendData(more);
      return;
    }
    const next = this.doc.createTextNode(more);
    /** @type {HTMLElement} */ (node.parentNode).append(next);
    this.lastText = next;
  }

  /** @param {string} final @param {string} nonfinal */
  paintTranslation(final, nonfinal) {
    const node = this.translationText;
    const shown = node.data;
    if (final !== shown) {
      if (final.startsWith(shown)) node.appendData(final.slice(shown.length));
      else node.data = final;
    }
    if (nonfinal !== this.nonfinalTranslation) {
      this.els.translationNonfinal.textContent = nonfinal;
      this.nonfinalTranslation = nonfinal;
    }
    const none = !final && !nonfinal;
    if (none !== this.noTranslation) this.els.translationBox.hidden = none;
    this.noTranslation = none;
  }
}

/** Whether two segment lists draw the same (non-final tails often repeat unchanged).
 * @param {Segment[]} a @param {Segment[]} b */
function sameSegments(a, b) {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i].text !== b[i].text || a[i].speaker !== b[i].speaker ||
      a[i].language !== b[i].language) return false;
  }
  return true;
}

/**
 * The nodes of `segments[from:]`: a speaker or language label where it changes from the
 * segment before (so appending equals drawing the whole list), then the text.
 * @param {Document} doc @param {Segment[]} segments @param {number} from
 * @returns {{ frag: DocumentFragment, lastText: Text | null }}
 */
function segmentNodes(doc, segments, from) {
  const frag = doc.createDocumentFragment();
  const before = from > 0 ? segments[from - 1] : null;
  let prevSpeaker = before ? before.speaker : null;
  let prevLanguage = before ? before.language : null;
  /** @type {Text | null} */
  let lastText = null;
  /** @param {string} className @param {string} text */
  const span = (className, text) => {
    const node = doc.createElement("span");
    node.className = className;
    const textNode = doc.createTextNode(text);
    node.append(textNode);
    frag.append(node);
    return textNode;
  };
  for (let i = from; i < segments.length; i++) {
    const seg = segments[i];
    if (seg.speaker != null && seg.speaker !== prevSpeaker) {
      span("soniox-speaker", `Speaker ${seg.speaker}`);
    }
    if (seg.language != null && seg.language !== prevLanguage) {
      span("soniox-language", seg.language);
    }
    lastText = span("soniox-segment", seg.text);
    prevSpeaker = seg.speaker;
    prevLanguage = seg.language;
  }
  return { frag, lastText };
}

/** The widget's DOM, built once; `paint` is the only code that changes it afterwards. */
export class View {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.box = h("div", "soniox-recorder");
    const bar = h("div", "soniox-bar");
    this.button = h("button", "soniox-button");
    this.button.type = "button";
    // Space and Enter on the controls are theirs: JupyterLab's command-mode shortcuts
    // (Enter: edit the cell) would otherwise take them.
    this.button.setAttribute("data-lm-suppress-shortcuts", "true");
    this.label = h("span", "soniox-button-label");
    this.button.append(h("span", "soniox-dot"), this.label);
    // Not a .soniox-button: "the view's button" stays one element for tests and users.
    this.pauseButton = h("button", "soniox-pause");
    this.pauseButton.type = "button";
    this.pauseButton.hidden = true;
    this.pauseButton.setAttribute("data-lm-suppress-shortcuts", "true");
    // A polite live region: screen readers announce "Listening", "Ready"...
    this.status = h("span", "soniox-status");
    this.status.setAttribute("role", "status");
    this.elapsed = h("span", "soniox-elapsed", "00:00");
    this.meter = h("span", "soniox-meter");
    this.level = h("span", "soniox-level");
    this.meter.append(this.level);
    this.meter.title = "Input level";
    this.meter.setAttribute("role", "meter");
    this.meter.setAttribute("aria-label", "Input level");
    this.meter.setAttribute("aria-valuemin", "0");
    this.meter.setAttribute("aria-valuemax", "100");
    this.meter.setAttribute("aria-valuenow", "0");
    this.badge = h("span", "soniox-badge");
    bar.append(this.button, this.pauseButton, this.status, this.meter, this.elapsed,
      this.badge);
    // The input device: listed once the page may use the microphone (labels are hidden
    // before that).
    this.deviceRow = h("label", "soniox-device-row");
    this.deviceRow.hidden = true;
    this.deviceSelect = h("select", "soniox-device");
    this.deviceSelect.setAttribute("aria-label", "Microphone");
    this.deviceRow.append(h("span", "soniox-device-label", "Microphone"), this.deviceSelect);
    this.notice = h("div", "soniox-notice");
    this.notice.hidden = true;
    this.transcript = h("div", "soniox-transcript");
    this.transcript.setAttribute("aria-live", "polite");
    this.finalEl = h("span", "soniox-final");
    this.nonfinalEl = h("span", "soniox-nonfinal");
    this.placeholder = h("span", "soniox-placeholder", "Click Record and speak.");
    this.transcript.append(this.placeholder, this.finalEl, this.nonfinalEl);
    // The translation is kept apart from the spoken words, as its own line under them.
    this.translationBox = h("div", "soniox-translation");
    this.translationBox.setAttribute("aria-live", "polite");
    this.translationFinal = h("span", "soniox-translation-final");
    this.translationNonfinal = h("span", "soniox-translation-nonfinal");
    this.translationBox.append(this.translationFinal, this.translationNonfinal);
    this.painter = new TranscriptPainter({ final: this.finalEl, nonfinal: this.nonfinalEl,
      placeholder: this.placeholder, translationBox: this.translationBox,
      translationFinal: this.translationFinal,
      translationNonfinal: this.translationNonfinal });
    this.painted = false;
    // Whether the user left the transcript scrolled to its end, kept from scroll events
    // so a paint never reads layout (that forced a layout of the whole host page per
    // delta). The follow-scroll is written once per frame.
    this.atBottom = true;
    this.followFrame = 0;
    this.transcript.addEventListener("scroll", () => {
      const el = this.transcript;
      this.atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
    }, { passive: true });
    this.shownLevel = -1;
    this.errorBox = h("div", "soniox-error");
    this.errorBox.setAttribute("role", "alert");
    this.box.append(bar, this.deviceRow, this.notice, this.transcript, this.translationBox,
      this.errorBox);
    root.append(this.box);
  }

  /** @param {ReturnType<typeof present>} p @param {{ bytes: number, chunks: number,
   *  elapsed: string | null, unavailableKind: string }} extra */
  paint(p, extra) {
    const box = this.box;
    box.dataset.status = p.status;
    box.dataset.phase = p.phase;
    box.dataset.kernel = p.kernel;
    box.dataset.bytesSent = String(extra.bytes);
    box.dataset.chunksSent = String(extra.chunks);
    if (extra.unavailableKind) box.dataset.micUnavailable = extra.unavailableKind;
    this.button.dataset.state = p.phase;
    this.label.textContent = p.label;
    this.button.disabled = p.disabled;
    this.button.setAttribute("aria-busy", String(p.busy));
    this.button.setAttribute("aria-disabled", String(p.inert));
    this.button.title = p.title;
    this.status.textContent = p.statusText;
    this.badge.textContent = p.badge;
    this.badge.dataset.engine = p.engineKind;
    this.badge.dataset.local = String(p.engineKind === "local");
    this.pauseButton.hidden = p.pauseHidden;
    this.pauseButton.textContent = p.pauseText;
    this.pauseButton.setAttribute("aria-pressed", String(p.paused));
    if (extra.elapsed !== null) this.elapsed.textContent = extra.elapsed;
    this.meter.hidden = !p.recording;
    this.deviceSelect.disabled = p.deviceDisabled;
    this.notice.textContent = p.notice;
    this.notice.hidden = !p.notice;
    this.errorBox.textContent = p.error;
    this.errorBox.hidden = p.errorHidden;
  }

  /** @param {number} level 0..1 */
  paintLevel(level) {
    // A transform is composited: no layout, unlike a width.
    const shown = Math.round(Math.min(1, level) * 100);
    if (shown === this.shownLevel) return;
    this.shownLevel = shown;
    this.level.style.transform = `scaleX(${shown / 100})`;
    this.meter.setAttribute("aria-valuenow", String(shown));
  }

  /** @param {TranscriptState} t @param {boolean} follow keep the end in view */
  paintTranscript(t, follow) {
    if (this.painted) this.painter.paint(t);
    else this.painter.rebuild(t);
    this.painted = true;
    if (this.followFrame || !(this.atBottom || follow)) return;
    this.followFrame = requestAnimationFrame(() => {
      this.followFrame = 0;
      const el = this.transcript;
      el.scrollTop = el.scrollHeight;
    });
  }

  /** Forget a pending follow-scroll (the view is going away). */
  dispose() {
    if (this.followFrame) cancelAnimationFrame(this.followFrame);
    this.followFrame = 0;
  }

  /** @param {AudioInput[]} inputs @param {string} chosenId @param {string} chosenLabel */
  paintDevices(inputs, chosenId, chosenLabel) {
    const select = this.deviceSelect;
    const options = [h("option", "", "Default microphone")];
    options[0].value = "";
    for (const input of inputs) {
      const option = h("option", "", input.label);
      option.value = input.deviceId;
      options.push(option);
    }
    select.replaceChildren(...options);
    const chosen = chooseDevice(inputs, { label: chosenLabel, deviceId: chosenId });
    select.value = chosen.deviceId || "";
    this.deviceRow.hidden = inputs.length === 0;
  }
}

// -- 10. render ----------------------------------------------------------------------------

function newId() {
  return globalThis.crypto && crypto.randomUUID
    ? crypto.randomUUID()
    : Math.random().toString(36).slice(2) + Date.now().toString(36);
}

// The traits the view reads; a change of any is a kernel-traits event.
const TRAITS = /** @type {const} */ (["status", "error", "active_view", "engine_label",
  "engine_kind", "device", "device_id", "audio_bits_per_second", "timeslice_ms"]);

/** @param {WidgetModel} model @returns {KernelTraits} */
function readTraits(model) {
  const get = (/** @type {any} */ name) => /** @type {any} */ (model.get(name));
  return { status: get("status") || "idle", error: get("error") || "",
    active_view: get("active_view") || "", engine_label: get("engine_label") || "",
    engine_kind: get("engine_kind") || "", device: get("device") || "",
    device_id: get("device_id") || "", audio_bits_per_second: get("audio_bits_per_second"),
    timeslice_ms: get("timeslice_ms") };
}

/**
 * Model listeners from one table, all removed when `signal` aborts.
 * @param {WidgetModel} model @param {Array<[string, (...args: any[]) => void]>} table
 * @param {AbortSignal} signal
 */
export function listenToModel(model, table, signal) {
  for (const [name, callback] of table) model.on(/** @type {any} */ (name), callback);
  signal.addEventListener("abort", () => {
    for (const [name, callback] of table) model.off(/** @type {any} */ (name), callback);
  });
}

/** A timer cleared when `signal` aborts. @param {number} ms @param {() => void} fn
 * @param {AbortSignal} signal */
function later(ms, fn, signal) {
  const timer = setTimeout(fn, ms);
  signal.addEventListener("abort", () => clearTimeout(timer));
}

/** @param {any} stream */
function stopTracks(stream) {
  if (stream) stream.getTracks().forEach((/** @type {MediaStreamTrack} */ t) => t.stop());
}

/** @type {import("@anywidget/types").Render<Model>} */
function render({ model, el: root }) {
  const lifetime = new AbortController();
  const signal = lifetime.signal;
  let state = initialView({ viewId: newId(), traits: readTraits(model),
    saved: model.get("saved_transcript"), unavailable: micUnavailable(pageEnv()) });
  let clockTimer = 0;
  const view = new View(root);
  const capture = new Capture({
    send,
    onLevel: (level) => view.paintLevel(level),
    onSent: (bytes, chunks) => dispatch({ type: "sent", bytes, chunks }),
  });

  /** @param {any} content @param {ArrayBuffer[]} [buffers] */
  function send(content, buffers) {
    try {
      model.send(content, undefined, buffers);
    } catch (err) {
      console.error("soniox-widget: send failed", err);
    }
  }

  /** Feed one event in; carry its effects out; paint what changed.
   * @param {any} event a ViewEvent without its `now` */
  function dispatch(event) {
    const before = state;
    const result = reduceView(state, { ...event, now: Date.now() });
    state = result.state;
    for (const effect of result.effects) {
      try {
        run(effect);
      } catch (err) {
        send(viewMessages.viewError(String((err && /** @type {any} */ (err).stack) || err)));
      }
    }
    // Sent-audio counts change with every chunk; the clock's tick paints them.
    if (state === before || event.type === "sent") return;
    paint();
    if (state.transcript !== before.transcript && !state.transcript.stale) {
      view.paintTranscript(state.transcript, present(state, state.traits,
        state.viewId).recording);
    }
    if (state.inputs !== before.inputs || state.traits.device !== before.traits.device ||
      state.traits.device_id !== before.traits.device_id) {
      view.paintDevices(state.inputs, state.traits.device_id, state.traits.device);
    }
  }

  /** @param {Effect} effect */
  function run(effect) {
    switch (effect.type) {
      case "send":
        // After any chunk still being read, so session messages keep their order.
        capture.inOrder(() => send(effect.message));
        break;
      case "heartbeat": {
        const session = effect.session;
        capture.startHeartbeat(session, () => state.session === session);
        break;
      }
      case "wait-kernel": {
        const session = effect.session;
        later(KERNEL_ANSWER_MS, () => dispatch({ type: "kernel-timeout", session }), signal);
        break;
      }
      case "open-mic": {
        const session = effect.session;
        capture.open(effect.deviceId).then(
          ({ stream, fellBack }) => dispatch({ type: "mic-granted", session, stream, fellBack }),
          (err) => dispatch({ type: "mic-failed", session, problem: micError(err, pageEnv()) }));
        break;
      }
      case "record": {
        const session = effect.session;
        try {
          capture.record(effect.stream, { session, mimeType: effect.mimeType,
            bitsPerSecond: effect.bitsPerSecond, timesliceMs: effect.timesliceMs,
            isCurrent: () => state.session === session,
            onError: (err) => dispatch({ type: "mic-failed", session,
              problem: micError(err, pageEnv()) }),
            onStopped: (chunks) => dispatch({ type: "recorder-stopped", session, chunks }) });
        } catch (err) {
          stopTracks(effect.stream);
          dispatch({ type: "mic-failed", session, problem: micError(err, pageEnv()) });
        }
        break;
      }
      case "discard-mic":
        stopTracks(effect.stream);
        break;
      case "stop-recorder": {
        const session = state.session;
        // A recorder that already stopped on its own gives no onstop: end it from here.
        if (!capture.stop()) dispatch({ type: "recorder-stopped", session, chunks: capture.chunks });
        break;
      }
      case "pause-recorder":
        capture.pause();
        break;
      case "resume-recorder":
        capture.resume();
        break;
      case "release":
        capture.release();
        break;
      case "clock":
        if (clockTimer) clearInterval(clockTimer);
        clockTimer = effect.running ? Number(setInterval(paint, 250)) : 0;
        break;
      case "focus-record":
        // Only if the focus is in this widget (on the pause control about to be hidden):
        // never take it from elsewhere on the page.
        if (view.box.contains(document.activeElement)) view.button.focus();
        break;
      case "publish-saved":
        publishSavedTranscript(model);
        break;
      case "list-devices":
        listDevices();
        break;
      case "set-device":
        model.set("device_id", effect.deviceId);
        model.set("device", effect.label);
        model.save_changes();
        break;
    }
  }

  async function listDevices() {
    const devices = globalThis.navigator && navigator.mediaDevices;
    if (!devices || typeof devices.enumerateDevices !== "function") return;
    let inputs = [];
    try {
      inputs = audioInputs(await devices.enumerateDevices());
    } catch {
      // none listed
    }
    dispatch({ type: "devices", inputs });
  }

  // What was painted last: a state change that changes nothing shown (the input list,
  // the sent-audio counts between clock ticks) paints nothing.
  let painted = "";
  function paint() {
    const p = present(state, state.traits, state.viewId);
    const extra = { bytes: state.sent.bytes, chunks: state.sent.chunks,
      elapsed: p.mine ? formatElapsed(recordedMs(state.clock, Date.now())) : null,
      unavailableKind: state.unavailable ? state.unavailable.kind : "" };
    const key = JSON.stringify([p, extra]);
    if (key === painted) return;
    painted = key;
    view.paint(p, extra);
  }

  /** @param {string} changed */
  const onTrait = (changed) => () =>
    dispatch({ type: "kernel-traits", traits: readTraits(model), changed });
  listenToModel(model, [
    ["msg:custom", (/** @type {any} */ msg) => dispatch({ type: "kernel-message", msg })],
    ...TRAITS.map((name) => /** @type {[string, () => void]} */ (
      [`change:${name}`, onTrait(name)])),
  ], signal);
  const on = { signal };
  view.button.addEventListener("click", () =>
    dispatch({ type: "press", session: newId(), mimeType: pickMimeType() || "",
      problem: micUnavailable(pageEnv()) }), on);
  view.pauseButton.addEventListener("click", () => dispatch({ type: "pause-press" }), on);
  view.deviceSelect.addEventListener("change", () =>
    dispatch({ type: "device-chosen", deviceId: view.deviceSelect.value }), on);
  const mediaDevices = globalThis.navigator && navigator.mediaDevices;
  if (mediaDevices && mediaDevices.addEventListener) {
    mediaDevices.addEventListener("devicechange", listDevices, on);
  }
  watchTheme(view.box, signal);

  paint();
  view.paintTranscript(state.transcript, false);
  dispatch({ type: "rendered" });

  return () => {
    dispatch({ type: "closed" });
    lifetime.abort();
    capture.release();
    if (clockTimer) clearInterval(clockTimer);
    view.dispose();
  };
}

export default { render };
