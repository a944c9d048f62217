// The connection indicator in the chat header.

const WORDS = {
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
  closed: "Disconnected",
};

export function showConnection(element, { state, reason }) {
  if (!element) return;
  element.dataset.state = state;
  let words = WORDS[state] || state;
  if (reason === "gone") words = "This conversation no longer exists";
  if (reason === "session-ended") words = "Session ended";
  const text = element.querySelector(".connection__text") || element;
  if (text.textContent !== words) text.textContent = words;
  element.title = words;
}
