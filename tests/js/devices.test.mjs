// Input device choice: which inputs are listed, which one getUserMedia gets.
import assert from "node:assert/strict";
import { test } from "node:test";

import { audioConstraints, audioInputs, chooseDevice } from "../../soniox_widget/static/widget.js";

const mic = (deviceId, label) => ({ kind: "audioinput", deviceId, label, groupId: "g" });
const HEADSET = mic("id-headset", "USB Headset");
const BUILTIN = mic("id-builtin", "Built-in Microphone");

test("only audio inputs are listed, and none while the browser hides their names", () => {
  const devices = [HEADSET, { kind: "videoinput", deviceId: "cam", label: "Camera" },
    { kind: "audiooutput", deviceId: "spk", label: "Speakers" }, BUILTIN];
  assert.deepEqual(audioInputs(devices), [
    { deviceId: "id-headset", label: "USB Headset" },
    { deviceId: "id-builtin", label: "Built-in Microphone" },
  ]);
  // Before permission: blank labels (and ids); nothing to choose from yet.
  assert.deepEqual(audioInputs([mic("", ""), mic("", "")]), []);
  assert.deepEqual(audioInputs([]), []);
});

test("no choice means the browser's default input", () => {
  assert.deepEqual(chooseDevice(audioInputs([HEADSET]), { label: "", deviceId: "" }),
    { deviceId: null, label: "", notice: "" });
  assert.deepEqual(audioConstraints(null).audio.deviceId, undefined);
});

test("the chosen input is found by id, or by name when its id changed", () => {
  const inputs = audioInputs([HEADSET, BUILTIN]);
  assert.equal(chooseDevice(inputs, { label: "USB Headset", deviceId: "id-headset" }).deviceId,
    "id-headset");
  const renamedId = chooseDevice(inputs, { label: "Built-in Microphone", deviceId: "stale" });
  assert.deepEqual(renamedId, { deviceId: "id-builtin", label: "Built-in Microphone",
    notice: "" });
  assert.deepEqual(audioConstraints("id-builtin").audio.deviceId, { exact: "id-builtin" });
  // The recognition-friendly settings stay whatever the device.
  assert.equal(audioConstraints("id-builtin").audio.echoCancellation, false);
});

test("a chosen input that is gone falls back to the default, saying so", () => {
  const chosen = chooseDevice(audioInputs([BUILTIN]), { label: "USB Headset",
    deviceId: "id-headset" });
  assert.equal(chosen.deviceId, null);
  assert.match(chosen.notice, /"USB Headset" is not available; recording from the default/);
});

test("before the inputs are listed, the chosen id is tried as it is", () => {
  assert.deepEqual(chooseDevice([], { label: "USB Headset", deviceId: "id-headset" }),
    { deviceId: "id-headset", label: "USB Headset", notice: "" });
});
