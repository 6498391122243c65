// A stand-in for anywidget's model: traits in a plain object, every set/save/send kept
// so a test can assert what the view told the kernel.

/** @param {Record<string, any>} traits */
export function fakeModel(traits = {}) {
  const values = { ...traits };
  const listeners = new Map();
  return {
    values,
    sets: [],
    saves: 0,
    sent: [],
    get(key) {
      return values[key];
    },
    set(key, value) {
      values[key] = value;
      this.sets.push([key, value]);
    },
    save_changes() {
      this.saves += 1;
    },
    send(content) {
      this.sent.push(content);
    },
    on(event, callback) {
      listeners.set(event, [...(listeners.get(event) || []), callback]);
    },
    off(event, callback) {
      listeners.set(event, (listeners.get(event) || []).filter((c) => c !== callback));
    },
    /** How many listeners are registered, over all events. */
    listenerCount() {
      return [...listeners.values()].reduce((n, list) => n + list.length, 0);
    },
  };
}
