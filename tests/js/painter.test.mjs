// The transcript painter: a delta touches only the nodes it adds or changes, and whatever
// the sequence of kernel messages, the DOM equals a full rebuild of the same state.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  TranscriptPainter, View, initialTranscript, reduceTranscript,
} from "../../soniox_widget/static/widget.js";
import { fakeDocument, serialize } from "./fake_dom.mjs";

const seg = (text, speaker = null, language = null) => ({ text, speaker, language });

/** A painter on fresh elements of `doc`. */
function painterIn(doc) {
  const el = (className) => {
    const node = doc.createElement("span");
    node.className = className;
    return node;
  };
  const els = {
    final: el("soniox-final"), nonfinal: el("soniox-nonfinal"),
    placeholder: el("soniox-placeholder"), translationBox: el("soniox-translation"),
    translationFinal: el("soniox-translation-final"),
    translationNonfinal: el("soniox-translation-nonfinal"),
  };
  els.translationBox.append(els.translationFinal, els.translationNonfinal);
  return { painter: new TranscriptPainter(els, doc), els };
}

/** Everything the painter draws, as one string. */
function drawn(els) {
  return [els.placeholder, els.final, els.nonfinal, els.translationBox].map(serialize).join("");
}

/** What a brand-new painter draws for `state`: the reference for every incremental paint. */
function rebuilt(state) {
  const { painter, els } = painterIn(fakeDocument());
  painter.rebuild(state);
  return drawn(els);
}

/** A node and everything under it. */
const nodesOf = (node) => [node, ...node.childNodes.flatMap(nodesOf)];

const delta = (rev, fields) => ({ type: "delta", base_rev: rev - 1, rev, final: [],
  nonfinal: [], ...fields });

test("a delta extends the last text node, adds only new nodes and keeps the old ones", () => {
  const doc = fakeDocument();
  const { painter, els } = painterIn(doc);
  let state = reduceTranscript(initialTranscript(null), { type: "snapshot", rev: 0,
    segments: [seg("Hello ", "1", "en"), seg("Hallo ", "2", "de")], nonfinal: [],
    translation: "" });
  painter.rebuild(state);
  const before = [...els.final.childNodes];
  const lastText = before[before.length - 1].firstChild;
  let old = new Set(Object.values(els).flatMap(nodesOf));
  doc.log.length = 0;
  doc.counts.created = 0;

  // Same speaker and language: only the last segment's text grows.
  state = reduceTranscript(state, delta(1, { final: [seg("Welt", "2", "de")],
    nonfinal: [seg(" und", "2", "de")] }));
  painter.paint(state);
  assert.deepEqual(doc.log.filter((m) => old.has(m.node)).map((m) => [m.op, m.node]),
    [["appendData", lastText], ["replaceChildren", els.nonfinal]]);
  assert.deepEqual(doc.log.filter((m) => m.op === "appendData"),
    [{ op: "appendData", node: lastText, added: "Welt" }]);
  assert.deepEqual(els.final.childNodes, before);
  assert.equal(lastText.data, "Hallo Welt");

  // A new speaker: one append of the new nodes (label and text), nothing else changes.
  old = new Set(Object.values(els).flatMap(nodesOf));
  doc.log.length = 0;
  doc.counts.created = 0;
  state = reduceTranscript(state, delta(2, { final: [seg(" Yes", "3", "de")],
    nonfinal: [] }));
  painter.paint(state);
  assert.deepEqual(doc.log.filter((m) => old.has(m.node)).map((m) => [m.op, m.node]),
    [["append", els.final], ["replaceChildren", els.nonfinal]]);
  assert.deepEqual(els.final.childNodes.slice(0, before.length), before);
  assert.equal(els.final.childNodes.length, before.length + 2);
  assert.equal(doc.counts.created, 4); // speaker span + text, segment span + text
  assert.equal(lastText.data, "Hallo Welt");
  assert.equal(drawn(els), rebuilt(state));
});

test("a delta that changes nothing final leaves the final nodes alone", () => {
  const doc = fakeDocument();
  const { painter, els } = painterIn(doc);
  let state = reduceTranscript(initialTranscript(null), delta(0, {
    final: [seg("One two ")], nonfinal: [seg("thr")] }));
  painter.rebuild(state);
  const old = new Set(Object.values(els).flatMap(nodesOf));
  doc.log.length = 0;
  state = reduceTranscript(state, delta(1, { nonfinal: [seg("three")] }));
  painter.paint(state);
  // Of the nodes on screen before, only the non-final span changed (its new children
  // were built off-screen).
  assert.deepEqual(doc.log.filter((m) => old.has(m.node)).map((m) => [m.op, m.node.className]),
    [["replaceChildren", "soniox-nonfinal"]]);
  // The same non-final tail again: nothing at all.
  doc.log.length = 0;
  state = reduceTranscript(state, delta(2, { nonfinal: [seg("three")] }));
  painter.paint(state);
  assert.deepEqual(doc.log, []);
  assert.equal(drawn(els), rebuilt(state));
});

test("a snapshot and a new recording's clear redraw from scratch", () => {
  const doc = fakeDocument();
  const { painter, els } = painterIn(doc);
  let state = reduceTranscript(initialTranscript(null), delta(0, {
    final: [seg("old words ")], translation: "alte Wörter" }));
  painter.rebuild(state);
  // A revision: the kernel's snapshot says the final text is different.
  doc.log.length = 0;
  state = reduceTranscript(state, { type: "snapshot", rev: 5, segments: [seg("new words")],
    nonfinal: [], translation: "neue" });
  painter.paint(state);
  assert.ok(doc.log.some((m) => m.op === "replaceChildren" && m.node === els.final));
  assert.equal(els.final.textContent, "new words");
  assert.equal(els.translationFinal.textContent, "neue");
  assert.equal(drawn(els), rebuilt(state));
  state = reduceTranscript(state, { type: "clear", rev: 6 });
  painter.paint(state);
  assert.equal(els.final.childNodes.length, 0);
  assert.equal(els.placeholder.hidden, false);
  assert.equal(els.translationBox.hidden, true);
  assert.equal(drawn(els), rebuilt(state));
});

test("the saved transcript is drawn at first paint, with its translation", () => {
  const doc = fakeDocument();
  const { painter, els } = painterIn(doc);
  const state = initialTranscript({ segments: [seg("Saved ", "1"), seg("words", "2")],
    translation: "Gespeichert" });
  painter.rebuild(state);
  assert.equal(serialize(els.final), '<soniox-final><soniox-speaker>"Speaker 1"</>' +
    '<soniox-segment>"Saved "</><soniox-speaker>"Speaker 2"</><soniox-segment>"words"</></>');
  assert.equal(els.placeholder.hidden, true);
  assert.equal(els.translationBox.hidden, false);
  assert.equal(els.translationFinal.textContent, "Gespeichert");
});

test("a long run of one speaker grows in short text nodes, never rewriting old text", () => {
  const doc = fakeDocument();
  const { painter, els } = painterIn(doc);
  let state = initialTranscript(null);
  painter.rebuild(state);
  doc.log.length = 0;
  for (let rev = 0; rev < 1000; rev++) {
    state = reduceTranscript(state, delta(rev, { final: [seg(` word${rev}`, "1", "en")] }));
    painter.paint(state);
  }
  assert.equal(state.final.length, 1);
  const span = els.final.childNodes[2]; // after the speaker and language labels
  assert.equal(span.className, "soniox-segment");
  assert.equal(span.textContent, state.final[0].text);
  assert.ok(span.childNodes.length > 5, `${span.childNodes.length} text nodes`);
  assert.ok(span.childNodes.every((t) => t.data.length <= 1100));
  assert.ok(!doc.log.some((m) => m.op === "data"));
  assert.equal(drawn(els), rebuilt(state));
});

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("random message sequences: every paint equals a full rebuild, in every view", () => {
  const random = prng(20261125);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const words = ["a", "bb ", " ccc", "Hello ", "world. ", "", "ü ", "\n", "long ".repeat(90)];
  const segs = () => Array.from({ length: Math.floor(random() * 3) }, () =>
    seg(pick(words), pick([null, null, "1", "2"]), pick([null, "en", "en", "de"])));
  for (let run = 0; run < 40; run++) {
    const doc = fakeDocument();
    const views = [painterIn(doc)];
    let state = initialTranscript(random() < 0.3 ? { segments: segs(), translation: "x" }
      : null);
    views[0].painter.rebuild(state);
    for (let step = 0; step < 60; step++) {
      const r = random();
      const next = state.rev + 1;
      let msg;
      if (r < 0.06) {
        msg = { type: "snapshot", rev: next, segments: segs(), nonfinal: segs(),
          translation: pick(["", "Hallo", state.translation]),
          nonfinal_translation: pick(["", "Wel"]) };
      } else if (r < 0.1) {
        msg = { type: "clear", rev: next };
      } else if (r < 0.13) {
        msg = { type: "delta", base_rev: state.rev - 1, rev: next, final: segs() }; // stale
      } else {
        msg = delta(next, { final: segs(), nonfinal: segs(),
          translation: pick(["", "", "Wort "]),
          ...(random() < 0.5 ? { nonfinal_translation: pick(["", "W", "Wo"]) } : {}) });
      }
      state = reduceTranscript(state, msg);
      if (state.stale) state = { ...state, stale: false }; // the view asks for a snapshot
      if (random() < 0.05) { // another view opens on the same widget
        const view = painterIn(doc);
        view.painter.rebuild(state);
        views.push(view);
      }
      const expected = rebuilt(state);
      for (const { painter, els } of views) {
        painter.paint(state);
        assert.equal(drawn(els), expected, `run ${run}, step ${step}`);
      }
    }
  }
});

test("the view's transcript paint reads no layout and follows once per frame", () => {
  const doc = fakeDocument();
  const frames = [];
  const saved = { document: globalThis.document, raf: globalThis.requestAnimationFrame };
  globalThis.document = /** @type {any} */ (doc);
  globalThis.requestAnimationFrame = (cb) => frames.push(cb);
  try {
    const root = doc.createElement("div");
    const view = new View(root);
    let state = initialTranscript(null);
    doc.counts.layoutReads = 0;
    for (let rev = 0; rev < 5; rev++) {
      state = reduceTranscript(state, delta(rev, { final: [seg(`w${rev} `)] }));
      view.paintTranscript(state, true);
    }
    assert.equal(doc.counts.layoutReads, 0);
    assert.equal(frames.length, 1);
    frames.shift()();
    assert.equal(view.transcript.scrollTop, 1000);
    // The user scrolled up and is not recording: the next paint does not pull them down.
    view.transcript.scrollTop = 100;
    view.transcript.listeners.scroll.forEach((listener) => listener());
    state = reduceTranscript(state, delta(5, { final: [seg("more")] }));
    view.paintTranscript(state, false);
    assert.equal(frames.length, 0);
    assert.equal(view.finalEl.textContent, "w0 w1 w2 w3 w4 more");
    // The level meter moves by a transform, and only when its shown value changes.
    view.paintLevel(0.5);
    assert.equal(view.level.style.transform, "scaleX(0.5)");
    assert.equal(view.level.style.width, undefined);
  } finally {
    globalThis.document = saved.document;
    globalThis.requestAnimationFrame = saved.raf;
  }
});
