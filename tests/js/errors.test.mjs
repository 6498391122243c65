// The error mapping: one message per real cause, with a fake page (MicEnv).
import assert from "node:assert/strict";
import { test } from "node:test";

import { MIC_PROBLEMS, micError, micUnavailable } from "../../soniox_widget/static/widget.js";

const env = (over = {}) => ({ isSecureContext: true, hasGetUserMedia: true,
  policyAllowsMic: () => true, mimeType: () => "audio/webm;codecs=opus", ...over });
const error = (name, message = "") => Object.assign(new Error(message), { name });

test("a page that can record has no problem at render", () => {
  assert.equal(micUnavailable(env()), null);
  assert.equal(micUnavailable(env({ policyAllowsMic: () => null })), null);
});

test("no secure context says https or localhost, before and after a click", () => {
  const insecure = env({ isSecureContext: false, hasGetUserMedia: false });
  assert.equal(micUnavailable(insecure), MIC_PROBLEMS.insecure);
  assert.match(MIC_PROBLEMS.insecure.message, /https or on localhost/);
  assert.equal(micError(error("NotAllowedError"), insecure), MIC_PROBLEMS.insecure);
  assert.equal(micError(error("SecurityError"), insecure), MIC_PROBLEMS.insecure);
  // A browser that does not know isSecureContext and has no mediaDevices: same advice.
  assert.equal(micUnavailable(env({ isSecureContext: undefined, hasGetUserMedia: false })),
    MIC_PROBLEMS.insecure);
});

test("a permissions policy (VS Code, iframes) is not called a denial", () => {
  const blocked = env({ policyAllowsMic: () => false });
  assert.equal(micUnavailable(blocked), MIC_PROBLEMS.policy);
  assert.equal(micError(error("NotAllowedError"), blocked), MIC_PROBLEMS.policy);
  assert.match(MIC_PROBLEMS.policy.message, /rec\.transcribe_file\(\)/);
  // SecurityError: the document may not use the microphone at all.
  assert.equal(micError(error("SecurityError"), env({ policyAllowsMic: () => null })),
    MIC_PROBLEMS.policy);
});

test("a refusal is a denial; a missing or busy device is no-mic", () => {
  assert.equal(micError(error("NotAllowedError"), env()), MIC_PROBLEMS.denied);
  assert.equal(micError(error("NotAllowedError"), env({ policyAllowsMic: () => null })),
    MIC_PROBLEMS.denied);
  for (const name of ["NotFoundError", "OverconstrainedError", "NotReadableError"]) {
    assert.equal(micError(error(name), env()), MIC_PROBLEMS.noMic, name);
  }
});

test("anything else is a recorder problem that keeps the browser's words", () => {
  const p = micError(error("NotSupportedError", "mimeType not supported"), env());
  assert.equal(p.kind, "recorder");
  assert.match(p.message, /mimeType not supported/);
  assert.equal(micError("boom", env()).kind, "recorder");
  assert.equal(micUnavailable(env({ mimeType: () => null })).kind, "recorder");
  assert.equal(micUnavailable(env({ hasGetUserMedia: false })).kind, "recorder");
});

test("each cause has its own kind", () => {
  const kinds = Object.values(MIC_PROBLEMS).map((p) => p.kind);
  assert.deepEqual(kinds, ["insecure-context", "blocked-by-policy", "mic-denied", "no-mic"]);
});
