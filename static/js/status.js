// The connection indicator in the chat header. The browser being offline wins
// over the socket's own state: an open socket on a dead network says nothing yet.

const WORDS = {
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
  closed: "Disconnected",
  offline: "Offline",
};

export function showConnection(element, { state, reason }) {
  if (!element) return;
  if (!navigator.onLine && reason !== "gone") state = "offline";
  element.dataset.state = state;
  let words = WORDS[state] || state;
  if (reason === "gone") words = "This conversation no longer exists";
  if (reason === "session-ended") words = "Session ended";
  const text = element.querySelector(".connection__text") || element;
  if (text.textContent !== words) text.textContent = words;
  element.title = words;
}

/** Show the socket's state, and again whenever the browser goes offline or comes back. */
export function watchConnection(element, socket) {
  let last = { state: socket.state, reason: "" };
  socket.addEventListener("state", (event) => {
    last = event.detail;
    showConnection(element, last);
  });
  const again = () => showConnection(element, last);
  window.addEventListener("online", again);
  window.addEventListener("offline", again);
}
