// soniox-widget front end (anywidget ES module, no build step).
//
// The view records the microphone with MediaRecorder and sends numbered chunks to
// the kernel as binary buffers; the kernel sends the transcript back as deltas.
// All view state lives in `state`; `paint()` is the only function that touches
// the DOM after construction.

const MIME_TYPES = [
  "audio/webm;codecs=opus",
  "audio/webm",
  "audio/ogg;codecs=opus",
  "audio/mp4",
];

const LABELS = {
  idle: "Record",
  "requesting-mic": "Allow the microphone…",
  connecting: "Connecting…",
  recording: "Stop",
  paused: "Stop",
  reconnecting: "Stop",
  finishing: "Finishing…",
  error: "Record",
  unavailable: "Record",
};

const STATUS_TEXT = {
  idle: "Ready",
  "requesting-mic": "Waiting for microphone permission",
  connecting: "Connecting to the speech service",
  recording: "Listening",
  paused: "Paused — the session stays open",
  reconnecting: "Connection lost — reconnecting…",
  finishing: "Finishing the last words",
  error: "Error",
  unavailable: "No microphone in this page",
};

// Phases in which a session is open: only the view that owns it may press the button.
const SESSION_PHASES = new Set(["connecting", "recording", "paused", "reconnecting"]);
// Phases in which the owning view offers Pause/Resume. Not while connecting: pausing a
// session that has not reached the service yet buys nothing and only adds a race.
const PAUSABLE_PHASES = new Set(["recording", "paused", "reconnecting"]);

// A paused session sends no audio, so the kernel cannot tell "paused" from "the view is
// gone" (tab closed, browser crashed) by the audio alone; the heartbeat tells it.
const HEARTBEAT_MS = 2000;

function pickMimeType() {
  if (typeof MediaRecorder === "undefined") return null;
  for (const type of MIME_TYPES) {
    if (MediaRecorder.isTypeSupported(type)) return type;
  }
  return "";
}

function newId() {
  return globalThis.crypto && crypto.randomUUID
    ? crypto.randomUUID()
    : Math.random().toString(36).slice(2) + Date.now().toString(36);
}

function formatElapsed(ms) {
  const s = Math.floor(ms / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

// One message per real cause; `kind` goes to the kernel with the abort message.
const MIC_PROBLEMS = {
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
};

function recorderProblem(detail) {
  return { kind: "recorder", message: `The browser could not record: ${detail}` };
}

// Whether the page's permissions policy lets it use the microphone: true, false, or null
// when the browser cannot tell (no permissionsPolicy/featurePolicy, e.g. Firefox, Safari).
// An iframe without allow="microphone" (VS Code's notebook webviews) answers false.
function policyAllowsMic() {
  for (const policy of [document.permissionsPolicy, document.featurePolicy]) {
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

// Why this page can never record, known before any click (null: it may record).
function micUnavailable() {
  if (globalThis.isSecureContext === false) return MIC_PROBLEMS.insecure;
  const devices = globalThis.navigator && navigator.mediaDevices;
  if (!devices || typeof devices.getUserMedia !== "function") {
    // Browsers hide mediaDevices outside secure contexts; one that does not know
    // isSecureContext at all is old enough that the same advice is the likely fix.
    return globalThis.isSecureContext === undefined
      ? MIC_PROBLEMS.insecure
      : recorderProblem("this browser offers no microphone (navigator.mediaDevices).");
  }
  if (policyAllowsMic() === false) return MIC_PROBLEMS.policy;
  if (pickMimeType() === null) return recorderProblem("this browser has no MediaRecorder.");
  return null;
}

// A getUserMedia or MediaRecorder failure, mapped to its cause. NotAllowedError is also
// what a permissions policy gives (no prompt was ever shown), so the policy is asked first.
function micError(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    if (globalThis.isSecureContext === false) return MIC_PROBLEMS.insecure;
    // SecurityError means the document may not use the microphone at all, not a refusal.
    if (policyAllowsMic() === false || name === "SecurityError") return MIC_PROBLEMS.policy;
    return MIC_PROBLEMS.denied;
  }
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "NotReadableError") {
    return MIC_PROBLEMS.noMic;
  }
  return recorderProblem(err && err.message ? err.message : String(err));
}

// Merge segments {text, speaker, language} into a list, joining equal neighbours.
function appendSegments(list, segments) {
  for (const seg of segments || []) {
    if (!seg || !seg.text) continue;
    const last = list[list.length - 1];
    if (last && last.speaker === seg.speaker && last.language === seg.language) {
      last.text += seg.text;
    } else {
      list.push({ text: seg.text, speaker: seg.speaker, language: seg.language });
    }
  }
  return list;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render({ model, el: root }) {
  const viewId = newId();
  const state = {
    phase: "idle", // local phase: idle | requesting-mic | recording | paused | finishing
    session: null,
    kernelHasSession: false, // the kernel named this view active_view for state.session
    rev: -1,
    final: [], // segments
    nonfinal: [],
    translation: "", // final translated text (translation on): its own line
    nonfinalTranslation: "",
    localError: "",
    // Why this page cannot record at all ({kind, message}), found at render: Record stays
    // disabled and the error box says what to do instead.
    unavailable: micUnavailable(),
    startedAt: 0, // when the MediaRecorder started
    pausedMs: 0, // paused time before the current pause, left out of the clock
    frozenAt: 0, // when the clock stopped (pause or stop); 0 while it runs
    bytesSent: 0,
    chunksSent: 0,
    level: 0,
    dirtyTranscript: true,
  };
  // Until the kernel answers (or with no kernel at all: a reopened notebook, an HTML
  // export), show the transcript saved when the last recording ended.
  const saved = model.get("saved_transcript") || {};
  if (saved.segments && saved.segments.length) {
    state.final = appendSegments([], saved.segments);
    state.translation = saved.translation || "";
  }
  // Capture resources (not UI state): released by releaseCapture().
  const capture = { stream: null, recorder: null, chain: Promise.resolve(), audioCtx: null,
    analyser: null, raf: 0, timer: 0, heartbeat: 0 };

  // -- DOM ---------------------------------------------------------------------
  const box = el("div", "soniox-recorder");
  const bar = el("div", "soniox-bar");
  const button = el("button", "soniox-button");
  button.type = "button";
  const dot = el("span", "soniox-dot");
  const label = el("span", "soniox-button-label");
  button.append(dot, label);
  // Not a .soniox-button: "the view's button" stays one element for tests and users.
  const pauseButton = el("button", "soniox-pause");
  pauseButton.type = "button";
  pauseButton.hidden = true;
  const status = el("span", "soniox-status");
  const elapsed = el("span", "soniox-elapsed", "00:00");
  const meter = el("span", "soniox-meter");
  const level = el("span", "soniox-level");
  meter.append(level);
  meter.title = "Input level";
  const badge = el("span", "soniox-badge");
  bar.append(button, pauseButton, status, meter, elapsed, badge);
  const transcript = el("div", "soniox-transcript");
  transcript.setAttribute("aria-live", "polite");
  const finalEl = el("span", "soniox-final");
  const nonfinalEl = el("span", "soniox-nonfinal");
  const placeholder = el("span", "soniox-placeholder", "Click Record and speak.");
  transcript.append(placeholder, finalEl, nonfinalEl);
  // The translation is kept apart from the spoken words, as its own line under them.
  const translationBox = el("div", "soniox-translation");
  translationBox.setAttribute("aria-live", "polite");
  const translationFinal = el("span", "soniox-translation-final");
  const translationNonfinal = el("span", "soniox-translation-nonfinal");
  translationBox.append(translationFinal, translationNonfinal);
  const errorBox = el("div", "soniox-error");
  errorBox.setAttribute("role", "alert");
  box.append(bar, transcript, translationBox, errorBox);
  root.append(box);

  // -- rendering ----------------------------------------------------------------
  function kernelStatus() {
    return model.get("status") || "idle";
  }

  function shownPhase() {
    // Local phases before the kernel knows (asking for the mic) win; otherwise the
    // kernel's status is the truth, so every view shows the same thing.
    const ks = kernelStatus();
    if (state.phase === "requesting-mic") return "requesting-mic";
    if (state.unavailable && !state.session && (ks === "idle" || ks === "error")) {
      return "unavailable";
    }
    if (state.localError) return "error";
    if (ks === "error") return "error";
    if (state.phase === "finishing" && ks !== "idle") return "finishing";
    // The owner's MediaRecorder is paused at once; show it before the kernel confirms.
    if (state.phase === "paused" && ks === "recording") return "paused";
    return ks;
  }

  // Recorded time: wall time since the start, less the pauses, frozen at pause and stop.
  function recordedMs() {
    return (state.frozenAt || Date.now()) - state.startedAt - state.pausedMs;
  }

  function segmentNodes(segments, className) {
    const frag = document.createDocumentFragment();
    let prevSpeaker = null;
    let prevLanguage = null;
    for (const seg of segments) {
      if (seg.speaker != null && seg.speaker !== prevSpeaker) {
        frag.append(el("span", "soniox-speaker", `Speaker ${seg.speaker}`));
      }
      if (seg.language != null && seg.language !== prevLanguage) {
        frag.append(el("span", "soniox-language", seg.language));
      }
      frag.append(el("span", className, seg.text));
      prevSpeaker = seg.speaker;
      prevLanguage = seg.language;
    }
    return frag;
  }

  function paint() {
    const phase = shownPhase();
    const activeView = model.get("active_view") || "";
    const elsewhere = activeView !== "" && activeView !== viewId;
    box.dataset.status = kernelStatus();
    box.dataset.phase = phase;
    box.dataset.bytesSent = String(state.bytesSent);
    box.dataset.chunksSent = String(state.chunksSent);
    button.dataset.state = phase;
    label.textContent = LABELS[phase] || "Record";
    const mine = state.session !== null;
    button.disabled =
      phase === "unavailable" ||
      phase === "finishing" ||
      phase === "requesting-mic" ||
      (!mine && (elsewhere || SESSION_PHASES.has(phase)));
    button.title = phase === "unavailable" ? state.unavailable.message
      : elsewhere && !mine ? "Recording in another view" : "";
    if (state.unavailable) box.dataset.micUnavailable = state.unavailable.kind;
    status.textContent = elsewhere && !mine && phase === "recording"
      ? "Recording in another view"
      : STATUS_TEXT[phase] || phase;
    badge.textContent = model.get("engine_label") || "";
    badge.dataset.local = String(/offline|local/i.test(badge.textContent));
    const paused = state.phase === "paused";
    pauseButton.hidden = !(mine && (state.phase === "recording" || paused)
      && PAUSABLE_PHASES.has(phase));
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", String(paused));
    // While reconnecting the microphone still records (the kernel queues the audio).
    const recording = mine && state.phase === "recording" && phase !== "connecting";
    if (mine) elapsed.textContent = formatElapsed(state.startedAt ? recordedMs() : 0);
    meter.hidden = !recording;
    level.style.width = `${Math.round(Math.min(1, state.level) * 100)}%`;
    const kernelError = model.get("error") || "";
    const error = phase === "unavailable"
      ? [...new Set([state.unavailable.message, kernelError].filter(Boolean))].join(" ")
      : state.localError || kernelError;
    errorBox.textContent = error;
    errorBox.hidden = !error || (phase !== "error" && phase !== "unavailable");
    if (state.dirtyTranscript) {
      state.dirtyTranscript = false;
      const atBottom =
        transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 24;
      finalEl.replaceChildren(segmentNodes(state.final, "soniox-segment"));
      nonfinalEl.replaceChildren(segmentNodes(state.nonfinal, "soniox-segment"));
      placeholder.hidden = state.final.length > 0 || state.nonfinal.length > 0;
      if (atBottom || recording) transcript.scrollTop = transcript.scrollHeight;
      translationFinal.textContent = state.translation;
      translationNonfinal.textContent = state.nonfinalTranslation;
      translationBox.hidden = !state.translation && !state.nonfinalTranslation;
    }
  }

  // -- kernel messages ----------------------------------------------------------
  function onCustom(msg) {
    if (!msg || typeof msg !== "object") return;
    switch (msg.type) {
      case "snapshot":
        if (msg.rev >= state.rev) {
          state.rev = msg.rev;
          state.final = appendSegments([], msg.segments);
          state.nonfinal = appendSegments([], msg.nonfinal);
          state.translation = msg.translation || "";
          state.nonfinalTranslation = msg.nonfinal_translation || "";
          state.dirtyTranscript = true;
        }
        break;
      case "delta":
        if (msg.base_rev !== state.rev) {
          model.send({ type: "snapshot_request" });
          return;
        }
        state.rev = msg.rev;
        appendSegments(state.final, msg.final);
        state.nonfinal = appendSegments([], msg.nonfinal);
        if (msg.translation) state.translation += msg.translation;
        if (msg.nonfinal_translation !== undefined) {
          state.nonfinalTranslation = msg.nonfinal_translation;
        }
        state.dirtyTranscript = true;
        break;
      case "clear":
        state.rev = msg.rev;
        state.final = [];
        state.nonfinal = [];
        state.translation = "";
        state.nonfinalTranslation = "";
        state.dirtyTranscript = true;
        break;
      case "stop_request":
        if (state.session) stopRecording();
        break;
      case "pause_request":
        pauseRecording();
        break;
      case "resume_request":
        resumeRecording();
        break;
      case "rejected":
        if (msg.view === viewId) {
          releaseCapture();
          state.session = null;
          state.phase = "idle";
          state.localError = msg.reason || "The recorder is busy.";
        }
        break;
      default:
        return;
    }
    paint();
  }

  function noteKernelOwner() {
    if (state.session && model.get("active_view") === viewId) state.kernelHasSession = true;
  }

  function onActiveView() {
    noteKernelOwner();
    paint();
  }

  function onStatus() {
    const ks = kernelStatus();
    noteKernelOwner();
    // Idle after the kernel took our session means the session is over. After our own
    // stop this only tidies up; if the kernel ended it by itself, it lets go of the
    // microphone and the heartbeat. (Before the kernel took the session an idle may be
    // stale, so it is ignored then.)
    if (ks === "idle" && state.session &&
        (state.phase === "finishing" || state.kernelHasSession)) {
      releaseCapture();
      state.phase = "idle";
      state.session = null;
    }
    if (ks === "error" && state.session) {
      // The kernel gave up (e.g. upstream unreachable): let go of the microphone.
      releaseCapture();
      state.session = null;
      state.phase = "idle";
    }
    paint();
  }

  // -- recording ------------------------------------------------------------------
  function send(content, buffers) {
    try {
      model.send(content, undefined, buffers);
    } catch (err) {
      console.error("soniox-widget: send failed", err);
    }
  }

  // Session messages leave in the order they happened, after any chunk still being read
  // (arrayBuffer() is async). A failed step is logged and the chain goes on, so a later
  // pause, resume or stop is never lost behind it.
  function inOrder(step) {
    capture.chain = capture.chain.then(step).catch((err) => {
      console.error("soniox-widget: could not send to the kernel", err);
    });
    return capture.chain;
  }

  async function startRecording() {
    const session = newId();
    state.session = session;
    state.kernelHasSession = false;
    state.startedAt = 0; // the clock shows 00:00 until the microphone records
    state.localError = "";
    state.bytesSent = 0;
    state.chunksSent = 0;
    state.phase = "requesting-mic";
    paint();
    const mimeType = pickMimeType();
    // Tell the kernel first: it connects upstream while the browser asks for the mic.
    send({ type: "start", session, view: viewId, mime_type: mimeType || "" });
    capture.heartbeat = setInterval(() => {
      if (state.session === session) send({ type: "heartbeat", session });
    }, HEARTBEAT_MS);
    // Known causes (normally found at render, which keeps Record disabled) end here,
    // before the browser is asked; the kernel learns them from the abort message.
    const cause = micUnavailable();
    if (cause) return failCapture(session, cause);
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false,
          autoGainControl: false },
      });
    } catch (err) {
      return failCapture(session, micError(err));
    }
    if (state.session !== session || state.phase !== "requesting-mic") {
      // Rejected, stopped or ended while the browser asked: this stream is not needed.
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    capture.stream = stream;
    try {
      const options = { audioBitsPerSecond: model.get("audio_bits_per_second") || 32000 };
      if (mimeType) options.mimeType = mimeType;
      const recorder = new MediaRecorder(stream, options);
      capture.recorder = recorder;
      let seq = 0;
      recorder.ondataavailable = (event) => {
        if (!event.data || event.data.size === 0 || state.session !== session) return;
        const n = seq++;
        inOrder(async () => {
          const buffer = await event.data.arrayBuffer();
          send({ type: "chunk", session, seq: n }, [buffer]);
          state.bytesSent += buffer.byteLength;
          state.chunksSent = n + 1;
        });
      };
      recorder.onerror = (event) => failCapture(session, micError(event.error || event));
      // Also after a stop from the paused state: the recorder then gives its last data
      // (dataavailable) before this event.
      recorder.onstop = () => {
        inOrder(() => {
          if (state.session !== session) return; // the kernel already ended it
          send({ type: "stop", session, chunks: seq });
          releaseCapture();
          paint();
        });
      };
      recorder.start(model.get("timeslice_ms") || 120);
      startMeter(stream);
    } catch (err) {
      return failCapture(session, micError(err));
    }
    state.phase = "recording";
    state.startedAt = Date.now();
    state.pausedMs = 0;
    state.frozenAt = 0;
    capture.timer = setInterval(paint, 250);
    paint();
  }

  function failCapture(session, { kind, message }) {
    releaseCapture();
    if (state.session === session) {
      send({ type: "abort", session, kind, message });
      state.session = null;
      state.phase = "idle";
      state.localError = "";
    }
    paint();
  }

  function stopRecording() {
    const recorder = capture.recorder;
    state.phase = "finishing";
    if (!state.frozenAt) state.frozenAt = Date.now();
    if (recorder && recorder.state !== "inactive") {
      recorder.stop(); // onstop sends the last chunk, then the end message
    } else if (state.session) {
      send({ type: "stop", session: state.session, chunks: state.chunksSent });
      releaseCapture();
    }
    paint();
  }

  // Pause and resume are the same whether the user clicks or the kernel asks
  // (pause_request/resume_request); anything else is ignored.
  function pauseRecording() {
    const recorder = capture.recorder;
    const session = state.session;
    if (!session || state.phase !== "recording" || !recorder || recorder.state !== "recording") {
      return;
    }
    recorder.pause();
    state.phase = "paused";
    state.frozenAt = Date.now();
    inOrder(() => send({ type: "pause", session }));
    paint();
  }

  function resumeRecording() {
    const recorder = capture.recorder;
    const session = state.session;
    if (!session || state.phase !== "paused" || !recorder || recorder.state !== "paused") {
      return;
    }
    recorder.resume();
    state.phase = "recording";
    state.pausedMs += Date.now() - state.frozenAt;
    state.frozenAt = 0;
    inOrder(() => send({ type: "resume", session }));
    paint();
  }

  function startMeter(stream) {
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      const ctx = new Ctx();
      const source = ctx.createMediaStreamSource(stream);
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 1024;
      source.connect(analyser);
      capture.audioCtx = ctx;
      capture.analyser = analyser;
      const data = new Float32Array(analyser.fftSize);
      const tick = () => {
        analyser.getFloatTimeDomainData(data);
        let sum = 0;
        for (let i = 0; i < data.length; i++) sum += data[i] * data[i];
        const rms = Math.sqrt(sum / data.length);
        state.level = Math.min(1, rms * 4); // speech RMS ~0.05-0.25 fills the bar
        level.style.width = `${Math.round(state.level * 100)}%`;
        capture.raf = requestAnimationFrame(tick);
      };
      tick();
    } catch (err) {
      console.warn("soniox-widget: no level meter", err);
    }
  }

  function releaseCapture() {
    if (capture.raf) cancelAnimationFrame(capture.raf);
    if (capture.timer) clearInterval(capture.timer);
    if (capture.heartbeat) clearInterval(capture.heartbeat);
    capture.raf = 0;
    capture.timer = 0;
    capture.heartbeat = 0;
    if (capture.stream) capture.stream.getTracks().forEach((t) => t.stop());
    if (capture.audioCtx) capture.audioCtx.close().catch(() => {});
    capture.stream = null;
    capture.recorder = null;
    capture.audioCtx = null;
    capture.analyser = null;
    state.level = 0;
  }

  button.addEventListener("click", () => {
    const phase = shownPhase();
    if (state.session && SESSION_PHASES.has(phase)) {
      stopRecording();
    } else if (!state.session && (phase === "idle" || phase === "error")) {
      startRecording().catch((err) => {
        send({ type: "view_error", message: String(err && err.stack || err) });
      });
    }
  });

  pauseButton.addEventListener("click", () => {
    if (state.phase === "paused") resumeRecording();
    else pauseRecording();
  });

  const onChange = () => paint();
  model.on("msg:custom", onCustom);
  model.on("change:status", onStatus);
  model.on("change:error", onChange);
  model.on("change:engine_label", onChange);
  model.on("change:active_view", onActiveView);
  model.send({ type: "snapshot_request" });
  // Tell the kernel too, so rec.error says why this front end cannot record.
  if (state.unavailable) {
    send({ type: "unavailable", kind: state.unavailable.kind,
      message: state.unavailable.message });
  }
  paint();

  return () => {
    if (state.session && capture.recorder) stopRecording();
    releaseCapture();
    model.off("msg:custom", onCustom);
    model.off("change:status", onStatus);
    model.off("change:error", onChange);
    model.off("change:engine_label", onChange);
    model.off("change:active_view", onActiveView);
  };
}

export default { render };
