// The message composer: Enter sends, Shift+Enter adds a line; Stop while a
// reply runs. The text is only cleared once the server has the message
// (`message.created` with our client_id): a refused or lost send loses nothing.

import { length, uuid4 } from "./text.js";

export class Composer {
  constructor(form, { socket, maxChars }) {
    this.form = form;
    this.socket = socket;
    this.maxChars = maxChars;
    this.input = form.querySelector("textarea");
    this.sendButton = form.querySelector("#send");
    this.stopButton = form.querySelector("#stop");
    this.errorLine = form.querySelector("#composer-error");
    this.pending = null; // the send frame awaiting its acknowledgement
    this.running = false;
    this.enabled = true; // false once the session ended: the text stays, nothing is sent

    this.input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      event.preventDefault();
      this.submit();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.stopButton.addEventListener("click", () => {
      if (!socket.send({ type: "generation.stop" })) this.showError("Not connected: the reply could not be stopped yet.");
    });
    this.#render();
  }

  submit() {
    if (this.running || this.pending || !this.enabled) return;
    const content = this.input.value;
    if (!content.trim()) return;
    if (length(content) > this.maxChars) {
      this.showError(`A message can be at most ${this.maxChars.toLocaleString()} characters.`);
      return;
    }
    this.hideError();
    this.pending = { type: "message.send", content, client_id: uuid4() };
    this.#render();
    if (!this.socket.send(this.pending)) {
      this.showError("Not connected. Your message will be sent when the connection is back.");
    }
  }

  /** After a (re)connect: send again what was not acknowledged; the client_id makes it safe. */
  resend() {
    if (this.pending) this.socket.send(this.pending);
  }

  acknowledge(message) {
    if (!this.pending || message.client_id !== this.pending.client_id) return;
    if (this.input.value === this.pending.content) this.input.value = "";
    this.pending = null;
    this.hideError();
    this.#render();
  }

  /** An `error` frame: shown here; a refused send frees the composer, text intact. */
  refuse(frame) {
    if (this.pending && frame.client_id === this.pending.client_id) {
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
  }

  showError(text) {
    this.errorLine.textContent = text;
    this.errorLine.hidden = false;
  }

  hideError() {
    this.errorLine.hidden = true;
    this.errorLine.textContent = "";
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
