// The new-chat page: nothing exists on the server until the first message is
// sent. Sending POSTs it to /c/new/ (which creates the conversation, stores the
// message and starts the reply) and then opens the conversation, whose socket
// syncs the reply being written. A retry keeps its client_id: never two chats.

import { csrfToken } from "./http.js";
import { length, uuid4 } from "./text.js";

export function startNewChat(root) {
  const form = document.getElementById("composer");
  const input = document.getElementById("composer-input");
  const sendButton = document.getElementById("send");
  const errorLine = document.getElementById("composer-error");
  const maxChars = Number(root.dataset.maxChars) || 32000;
  let sending = false;
  let attempt = null; // {content, client_id} of the send in flight or last refused

  const showError = (text) => {
    errorLine.textContent = text;
    errorLine.hidden = false;
  };

  async function submit() {
    const content = input.value;
    if (sending || !content.trim()) return;
    if (length(content) > maxChars) {
      showError(`A message can be at most ${maxChars.toLocaleString()} characters.`);
      return;
    }
    if (!attempt || attempt.content !== content) attempt = { content, client_id: uuid4() };
    sending = true;
    sendButton.disabled = true;
    errorLine.hidden = true;
    try {
      const response = await fetch(root.dataset.newUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken(form) },
        body: JSON.stringify(attempt),
      });
      const data = await response.json().catch(() => ({}));
      if (response.ok && data.url) {
        window.location.assign(data.url);
        return; // the page is leaving; keep the composer as it is
      }
      showError((data.error && data.error.message) || `The server refused that (HTTP ${response.status}).`);
    } catch {
      showError("Not sent: the server could not be reached. Try again.");
    }
    sending = false;
    sendButton.disabled = false;
  }

  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    submit();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  input.focus();
}
