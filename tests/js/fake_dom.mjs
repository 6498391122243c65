// A tiny fake document: just what the widget's view builds and changes, with every change
// logged, so a test can say which nodes a paint touched. Layout reads (scrollHeight,
// scrollTop, clientHeight) are counted too: a paint in the hot path must not make any.

export function fakeDocument() {
  /** every mutation, in order: { op, node, ...details } */
  const log = [];
  const counts = { created: 0, layoutReads: 0 };

  class Node {
    constructor() {
      this.parent = null;
      this.childNodes = [];
    }

    get firstChild() {
      return this.childNodes[0] || null;
    }

    get parentNode() {
      return this.parent;
    }

    /** @param {...any} nodes */
    append(...nodes) {
      log.push({ op: "append", node: this, count: nodes.length });
      for (const node of nodes) this.adopt(node);
    }

    adopt(node) {
      const list = node instanceof Fragment ? node.childNodes.splice(0) : [node];
      for (const child of list) {
        if (child.parent) child.parent.childNodes.splice(child.parent.childNodes.indexOf(child), 1);
        child.parent = this;
        this.childNodes.push(child);
      }
    }

    /** @param {...any} nodes */
    replaceChildren(...nodes) {
      log.push({ op: "replaceChildren", node: this, count: nodes.length });
      for (const child of this.childNodes) child.parent = null;
      this.childNodes = [];
      for (const node of nodes) this.adopt(node);
    }

    get textContent() {
      return this.childNodes.map((c) => c.textContent).join("");
    }

    set textContent(text) {
      log.push({ op: "textContent", node: this });
      for (const child of this.childNodes) child.parent = null;
      this.childNodes = [];
      if (text !== "") this.adopt(new Text(String(text)));
    }
  }

  class Text extends Node {
    constructor(data) {
      super();
      counts.created += 1;
      this._data = data;
    }

    get data() {
      return this._data;
    }

    set data(value) {
      log.push({ op: "data", node: this });
      this._data = value;
    }

    appendData(more) {
      log.push({ op: "appendData", node: this, added: more });
      this._data += more;
    }

    get textContent() {
      return this._data;
    }
  }

  class Fragment extends Node {}

  class Element extends Node {
    constructor(tag) {
      super();
      counts.created += 1;
      this.tagName = tag.toUpperCase();
      this.className = "";
      this._hidden = false;
      this.attributes = {};
      this.dataset = {};
      this.style = {};
      this.listeners = {};
      this._scrollTop = 0;
    }

    get hidden() {
      return this._hidden;
    }

    set hidden(value) {
      log.push({ op: "hidden", node: this });
      this._hidden = !!value;
    }

    setAttribute(name, value) {
      this.attributes[name] = String(value);
    }

    addEventListener(type, listener) {
      (this.listeners[type] ||= []).push(listener);
    }

    get scrollHeight() {
      counts.layoutReads += 1;
      return 1000;
    }

    get clientHeight() {
      counts.layoutReads += 1;
      return 240;
    }

    get scrollTop() {
      counts.layoutReads += 1;
      return this._scrollTop;
    }

    set scrollTop(value) {
      log.push({ op: "scrollTop", node: this });
      this._scrollTop = value;
    }
  }

  const doc = {
    log,
    counts,
    createElement: (tag) => new Element(tag),
    createTextNode: (data) => new Text(String(data)),
    createDocumentFragment: () => new Fragment(),
  };
  return doc;
}

/** The node as a string: tags, classes, hidden flags and text (what a reader sees;
 * neighbouring text nodes read as one text). */
export function serialize(node) {
  if (!node.tagName) return JSON.stringify(node.textContent);
  const hidden = node.hidden ? " hidden" : "";
  const parts = [];
  for (const child of node.childNodes) {
    const last = parts[parts.length - 1];
    if (!child.tagName && last && typeof last !== "string") last.text += child.textContent;
    else parts.push(child.tagName ? serialize(child) : { text: child.textContent });
  }
  const inner = parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p.text)));
  return `<${node.className}${hidden}>${inner.join("")}</>`;
}
