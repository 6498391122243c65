// The proxy's recording page: microphone → WebSocket (same origin) → proxy → Soniox.
// Protocol: binary audio frames, an empty text frame ends the stream; JSON replies
// come back, then {"finished": true}, or {"error_code", "error_message"}.

const trigger = document.getElementById("trigger");
const finalEl = document.getElementById("final");
const nonfinalEl = document.getElementById("nonfinal");
const errorEl = document.getElementById("error");
const statusEl = document.getElementById("status");

const state = { phase: "idle", ws: null, recorder: null, stream: null, finalText: "",
  queue: [], finished: false, failed: false, keepalive: 0 };
// The proxy closes a client that sends nothing for a while (30 s by default), and the
// socket opens before the microphone is granted: a keepalive covers a slow prompt.
const KEEPALIVE_MS = 10000;

// A proxy reachable beyond this machine requires the access token it printed at start-up
// (http://host:port/?token=...). Take it out of the address bar (and so out of the
// history and of bookmarks), keep it in memory and in sessionStorage for reloads, and send
// it with the WebSocket. The page's own files came with the HttpOnly cookie the proxy set.
const TOKEN_KEY = "soniox-proxy-token";
const token = takeToken();

function takeToken() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl === null) {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null; // storage disabled: the cookie still lets this page in
    }
  }
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  try {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
  } catch {
    // storage disabled: the token lives in memory for this page only
  }
  return fromUrl;
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return `${scheme}://${location.host}/ws${query}`;
}

function show(phase, status) {
  state.phase = phase;
  statusEl.textContent = status;
  trigger.textContent = phase === "recording" ? "Stop" : phase === "idle" ? "Start" : "…";
  trigger.disabled = phase === "starting" || phase === "finishing";
  trigger.classList.toggle("recording", phase === "recording");
}

function fail(message) {
  if (state.failed) return;
  state.failed = true;
  errorEl.textContent = message;
  release();
  if (state.ws && state.ws.readyState <= WebSocket.OPEN) state.ws.close();
  show("idle", "Stopped");
}

function release() {
  clearInterval(state.keepalive);
  state.keepalive = 0;
  if (state.recorder && state.recorder.state !== "inactive") {
    state.recorder.ondataavailable = null;
    state.recorder.onstop = null;
    state.recorder.stop();
  }
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.recorder = null;
  state.stream = null;
}

// Frames wait here until the socket is open, so the first chunk (the WebM header) is kept.
function sendFrame(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN && state.queue.length === 0) {
    state.ws.send(frame);
  } else {
    state.queue.push(frame);
  }
}

function flush() {
  while (state.queue.length && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(state.queue.shift());
  }
}

function onReply(event) {
  let reply;
  try {
    reply = JSON.parse(event.data);
  } catch {
    return fail("The proxy sent something that is not JSON.");
  }
  if (reply.error_message) {
    const code = reply.error_code ? ` (${reply.error_code})` : "";
    return fail(`Error${code}: ${reply.error_message}`);
  }
  let nonfinal = "";
  for (const token of reply.tokens || []) {
    if (token.text === "<end>" || token.text === "<fin>") continue;
    if (token.is_final) state.finalText += token.text;
    else nonfinal += token.text;
  }
  finalEl.textContent = state.finalText;
  nonfinalEl.textContent = nonfinal;
  if (reply.finished) {
    state.finished = true;
    release();
    nonfinalEl.textContent = "";
    show("idle", "Done");
  }
}

async function start() {
  finalEl.textContent = "";
  nonfinalEl.textContent = "";
  errorEl.textContent = "";
  Object.assign(state, { finalText: "", queue: [], finished: false, failed: false });
  show("starting", "Waiting for the microphone");
  const ws = new WebSocket(socketUrl());
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  ws.onopen = flush;
  state.keepalive = setInterval(() => {
    if (ws.readyState === WebSocket.OPEN && !state.finished) ws.send('{"type":"keepalive"}');
  }, KEEPALIVE_MS);
  ws.onmessage = onReply;
  ws.onerror = () => fail("Cannot reach the proxy server. Is it still running? If it was " +
    "restarted, open the URL it printed at start-up again.");
  ws.onclose = (event) => {
    if (!state.finished && !state.failed) {
      fail(`The connection closed before the transcript was finished (code ${event.code}` +
        `${event.reason ? ": " + event.reason : ""}).`);
    }
  };
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false,
        autoGainControl: false },
    });
  } catch (err) {
    return fail(err && err.name === "NotAllowedError"
      ? "Microphone permission was denied. Allow it in the site settings and try again."
      : `No microphone available: ${err && err.message ? err.message : err}`);
  }
  if (state.failed) {
    stream.getTracks().forEach((t) => t.stop());
    return;
  }
  state.stream = stream;
  const mimeType = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"]
    .find((t) => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder(stream, { mimeType, audioBitsPerSecond: 32000 });
  state.recorder = recorder;
  let chain = Promise.resolve();
  recorder.ondataavailable = (event) => {
    if (event.data.size === 0) return;
    chain = chain.then(async () => sendFrame(await event.data.arrayBuffer()));
  };
  recorder.onstop = () => {
    chain.then(() => {
      clearInterval(state.keepalive); // nothing may follow the end of stream
      sendFrame(""); // end of stream
      if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
      state.stream = null;
    });
  };
  recorder.start(120);
  show("recording", "Listening");
}

function stop() {
  show("finishing", "Finishing the last words");
  if (state.recorder && state.recorder.state !== "inactive") state.recorder.stop();
}

trigger.addEventListener("click", () => {
  if (state.phase === "idle") start().catch((err) => fail(String(err)));
  else if (state.phase === "recording") stop();
});
show("idle", "Ready");
