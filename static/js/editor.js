// Edit and resend: a user message becomes a small form; saving sends
// `message.edit`, which forks a new branch from that message's parent.

import { uuid4 } from "./text.js";

export class Editor {
  constructor(list, { socket, onError }) {
    this.socket = socket;
    this.onError = onError;
    this.pending = new Map(); // client_id -> the open editor form
    list.addEventListener("click", (event) => {
      const button = event.target.closest("[data-action=edit]");
      if (button) this.open(button.closest(".message"));
    });
  }

  open(element) {
    if (!element || element.querySelector(".message__editor")) return;
    const body = element.querySelector(".message__body");
    const actions = element.querySelector(".message__actions");
    const id = `edit-${element.dataset.messageId}`;

    const form = document.createElement("form");
    form.className = "message__editor";
    const label = document.createElement("label");
    label.className = "visually-hidden";
    label.htmlFor = id;
    label.textContent = "Edit message";
    const input = document.createElement("textarea");
    input.id = id;
    input.value = body.textContent;
    const buttons = document.createElement("div");
    buttons.className = "message__editor-buttons";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "button";
    cancel.textContent = "Cancel";
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "button button--primary";
    save.textContent = "Save and send";
    buttons.append(cancel, save);
    form.append(label, input, buttons);

    const close = () => {
      form.remove();
      body.hidden = false;
      if (actions) actions.hidden = false;
      actions?.querySelector("[data-action=edit]")?.focus();
    };
    const submit = () => {
      const content = input.value;
      if (!content.trim() || save.disabled) return;
      const frame = { type: "message.edit", message_id: element.dataset.messageId, content, client_id: uuid4() };
      if (!this.socket.send(frame)) {
        this.onError("Not connected: the edit was not sent. Try again when the connection is back.");
        return;
      }
      save.disabled = true;
      this.pending.set(frame.client_id, { form, save });
    };
    cancel.addEventListener("click", close);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") close();
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    });

    body.hidden = true;
    if (actions) actions.hidden = true;
    body.after(form);
    input.focus();
  }

  /** The edited message exists: the old branch (with this editor) is leaving the page. */
  acknowledge(message) {
    this.pending.delete(message.client_id);
  }

  refuse(frame) {
    const open = this.pending.get(frame.client_id);
    if (!open) return false;
    this.pending.delete(frame.client_id);
    open.save.disabled = false;
    return true;
  }
}
