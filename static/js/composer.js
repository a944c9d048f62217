// The message composer: Enter sends, Shift+Enter adds a line (on touch screens
// Enter adds a line and the Send button sends); Stop while a reply runs.
//
// A send is only cleared from the box once the server has it (`message.created`
// with our client_id): a refused or lost send loses nothing. While the browser
// is offline (or the socket is down) sends wait in a visible outbox and go out
// once, in order, when the connection is back: one at a time, each after the
// previous reply, and the client_id makes a resend after a reconnect harmless.
//
// A message over the limit is refused here, with the count, never cut.

import { length, uuid4 } from "./text.js";

// The counter appears once a message reaches this share of the limit.
const COUNTER_FROM = 0.8;

export function isTouch() {
  return window.matchMedia("(pointer: coarse)").matches;
}

export class Composer {
  constructor(form, { socket, maxChars }) {
    this.form = form;
    this.socket = socket;
    this.maxChars = maxChars;
    this.input = form.querySelector("textarea");
    this.sendButton = form.querySelector("#send");
    this.stopButton = form.querySelector("#stop");
    this.errorLine = form.querySelector("#composer-error");
    this.counter = form.querySelector("#composer-count");
    this.outbox = form.querySelector("#outbox");
    this.pending = null; // the send frame awaiting its acknowledgement
    this.queue = []; // sends waiting for the connection, oldest first
    this.running = false;
    this.enabled = true; // false once the session ended: the text stays, nothing is sent

    if (isTouch()) this.input.placeholder = "Message…";
    this.input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      if (isTouch()) return; // a phone keyboard's Enter is a new line
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("input", () => this.#count());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.stopButton.addEventListener("click", () => this.stop());
    window.addEventListener("online", () => this.flush());
    window.addEventListener("offline", () => this.#renderOutbox());
    this.#count();
    this.#render();
  }

  get online() {
    return navigator.onLine && this.socket.isOpen;
  }

  focus() {
    if (!isTouch()) this.input.focus();
  }

  submit() {
    if (!this.enabled) return;
    const content = this.input.value;
    if (!content.trim()) return;
    const size = length(content);
    if (size > this.maxChars) {
      this.showError(
        `This message is ${size.toLocaleString()} characters long; the limit is ${this.maxChars.toLocaleString()}. ` +
          "Shorten it or split it into several messages: nothing was sent.",
      );
      this.input.focus();
      return;
    }
    const frame = { type: "message.send", content, client_id: uuid4() };
    if (!this.online || this.queue.length) {
      // Offline: it waits, visibly, and the box is free for the next one.
      this.queue.push(frame);
      this.input.value = "";
      this.#count();
      this.hideError();
      this.#renderOutbox();
      this.flush();
      return;
    }
    if (this.running || this.pending) return;
    this.hideError();
    this.pending = frame;
    this.#render();
    this.socket.send(frame);
  }

  stop() {
    if (!this.running) return false;
    if (!this.socket.send({ type: "generation.stop" })) this.showError("Not connected: the reply could not be stopped yet.");
    return true;
  }

  /** After a (re)connect: send again what was not acknowledged (safe: client_id), then the outbox. */
  resend() {
    if (this.pending) this.socket.send(this.pending);
    this.flush();
  }

  /** Send the oldest waiting message if the connection is up and nothing else is on its way. */
  flush() {
    this.#renderOutbox();
    if (!this.queue.length || !this.online || this.pending || this.running) return;
    this.pending = this.queue[0];
    this.#render();
    this.socket.send(this.pending);
  }

  acknowledge(message) {
    if (!this.pending || message.client_id !== this.pending.client_id) return;
    if (this.queue[0] === this.pending) {
      this.queue.shift();
    } else if (this.input.value === this.pending.content) {
      this.input.value = "";
      this.#count();
    }
    this.pending = null;
    this.hideError();
    this.#render();
    this.#renderOutbox();
  }

  /** An `error` frame: shown here; a refused send frees the composer, its text intact. */
  refuse(frame) {
    if (this.pending && frame.client_id === this.pending.client_id) {
      if (this.queue[0] === this.pending) {
        // A waiting message the server refused goes back in the box, not lost.
        this.queue.shift();
        if (!this.input.value.trim()) this.input.value = this.pending.content;
        this.#count();
        this.#renderOutbox();
      }
      this.pending = null;
      this.#render();
    }
    this.showError(frame.message || `The server refused that (${frame.code}).`);
  }

  setEnabled(enabled) {
    this.enabled = enabled;
    this.#render();
  }

  setRunning(running) {
    this.running = running;
    this.#render();
    if (!running) this.flush();
  }

  showError(text) {
    this.errorLine.textContent = text;
    this.errorLine.hidden = false;
  }

  hideError() {
    this.errorLine.hidden = true;
    this.errorLine.textContent = "";
  }

  #count() {
    const size = length(this.input.value);
    const over = size > this.maxChars;
    this.input.toggleAttribute("aria-invalid", over);
    if (over) this.input.setAttribute("aria-invalid", "true");
    if (!this.counter) return;
    this.counter.hidden = size < this.maxChars * COUNTER_FROM;
    this.counter.dataset.over = String(over);
    this.counter.textContent = over
      ? `${size.toLocaleString()} / ${this.maxChars.toLocaleString()} characters: ${(size - this.maxChars).toLocaleString()} over the limit`
      : `${size.toLocaleString()} / ${this.maxChars.toLocaleString()} characters`;
  }

  #renderOutbox() {
    if (!this.outbox) return;
    this.outbox.hidden = this.queue.length === 0;
    const note = navigator.onLine ? "will send when the connection is back" : "will send when back online";
    const items = this.queue.map((frame) => {
      const item = document.createElement("li");
      item.className = "outbox__item";
      item.dataset.clientId = frame.client_id;
      const text = document.createElement("span");
      text.className = "outbox__text";
      text.textContent = frame.content;
      const state = document.createElement("span");
      state.className = "outbox__state";
      state.textContent = frame === this.pending ? "sending…" : note;
      item.append(text, state);
      return item;
    });
    this.outbox.replaceChildren(...items);
  }

  #render() {
    // The text area stays editable so the next message can be written while
    // a reply runs; sending waits for the reply (or Stop).
    this.sendButton.disabled = this.running || this.pending !== null || !this.enabled;
    this.sendButton.hidden = this.running;
    this.stopButton.hidden = !this.running;
    this.form.toggleAttribute("data-running", this.running);
  }
}
