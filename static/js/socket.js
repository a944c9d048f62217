// The conversation's WebSocket: connect, reconnect with backoff and jitter, report state.
//
// Events: "state" {state, reason}, "open" {reconnected}, "frame" (a parsed
// server event). States: connecting, open, reconnecting, closed.

export const BACKOFF = { baseMs: 500, maxMs: 15000 };

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped,
 * with "equal jitter" so every tab of a restarted server does not return at once. */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF.maxMs, BACKOFF.baseMs * 2 ** attempt);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export class ChatSocket extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.timer = null;
    this.attempt = 0;
    this.state = "idle";
    this.connectedOnce = false;
  }

  start() {
    this.#connect();
    // Coming back online or to the tab is a good moment to skip the wait.
    window.addEventListener("online", () => this.retryNow());
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.retryNow();
    });
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send a frame now; false when the socket is not open (the caller keeps it). */
  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  retryNow() {
    if (this.timer !== null) {
      this.attempt = 0;
      this.#connect();
    }
  }

  #connect() {
    clearTimeout(this.timer);
    this.timer = null;
    this.#setState(this.connectedOnce ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      this.attempt = 0;
      const reconnected = this.connectedOnce;
      this.connectedOnce = true;
      this.#setState("open");
      this.dispatchEvent(new CustomEvent("open", { detail: { reconnected } }));
    });
    ws.addEventListener("message", (event) => {
      if (ws !== this.ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame.type === "string") {
        this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
      }
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (event.code === 4401) {
        this.#setState("closed", "signed-out");
        window.location.reload(); // the login page takes over
        return;
      }
      if (event.code === 4403) {
        this.#setState("closed", "session-ended"); // logout, password change, deactivation, expiry
        return;
      }
      if (event.code === 4404) {
        this.#setState("closed", "gone");
        return;
      }
      this.#schedule();
    });
  }

  #schedule() {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.#setState("reconnecting");
    this.timer = setTimeout(() => this.#connect(), delay);
  }

  #setState(state, reason = "") {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, reason } }));
  }
}
