// The page's entry point: wires the modules of the chat page together.
// Every page gets the sidebar drawer and the search shortcut; the chat page
// gets the live conversation.

import { Attachments } from "./attachments.js";
import { setupCodeCopy } from "./codecopy.js";
import { Composer } from "./composer.js";
import { applyConversation } from "./conversation.js";
import { Editor } from "./editor.js";
import { setupFeedback } from "./feedback.js";
import { enhanceForms } from "./forms.js";
import { setupHeader } from "./header.js";
import { History } from "./history.js";
import { setupMenus } from "./menu.js";
import { setupMessageCopy } from "./messagecopy.js";
import { startNewChat } from "./newchat.js";
import { keepPinned } from "./scroll.js";
import { openSearchHit } from "./searchhit.js";
import { setupSearchShortcut, setupStopShortcut } from "./shortcuts.js";
import { setupSidebar } from "./sidebar.js";
import { setupSidebarList } from "./sidebarlist.js";
import { ChatSocket } from "./socket.js";
import { watchConnection } from "./status.js";
import { rememberTimeZone } from "./timezone.js";
import { Transcript } from "./transcript.js";
import { setupVersions } from "./versions.js";

setupSidebar();
const sidebarList = setupSidebarList();
// First visit (or a new zone): the list was grouped by UTC's day; group it by ours.
if (rememberTimeZone()) sidebarList?.refresh();
setupMenus();
setupSearchShortcut();

const main = document.getElementById("main");
if (main && main.dataset.socketPath) startChat(main);
else if (main && main.dataset.newUrl) startNewChat(main);

function startChat(root) {
  const list = document.getElementById("messages");
  const scroller = document.getElementById("scroll");
  const empty = document.getElementById("messages-empty");
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new ChatSocket(`${scheme}//${window.location.host}${root.dataset.socketPath}`);
  const transcript = new Transcript(list, { send: (frame) => socket.send(frame) });
  const composer = new Composer(document.getElementById("composer"), {
    socket,
    maxChars: Number(root.dataset.maxChars) || 32000,
  });
  const showError = (text) => composer.showError(text);
  new Attachments({
    url: root.dataset.attachmentsUrl,
    list: document.getElementById("attachments"),
    input: document.getElementById("attach-input"),
    button: document.getElementById("attach"),
    offer: document.getElementById("paste-offer"),
    dropHint: document.getElementById("drop-hint"),
    textarea: document.getElementById("composer-input"),
    dropZone: root,
  });
  const editor = new Editor(list, { socket, onError: showError });
  const history = new History({
    url: root.dataset.messagesUrl,
    button: document.getElementById("load-earlier"),
    transcript,
    scroller,
    onError: showError,
  });
  const pinned = keepPinned(scroller, list, document.getElementById("jump-latest"));

  const setRunning = (running) => {
    root.toggleAttribute("data-running", running);
    composer.setRunning(running);
  };
  setRunning(transcript.running);

  transcript.addEventListener("running", (event) => setRunning(event.detail.running));
  transcript.addEventListener("created", (event) => {
    const { message } = event.detail;
    composer.acknowledge(message);
    editor.acknowledge(message);
    if (message.client_id) pinned.pin();
    empty.hidden = transcript.messages().length > 0;
  });
  transcript.addEventListener("stale", () => history.catchUp());
  transcript.addEventListener("forked", (event) => history.refreshFrom(event.detail.parentId));

  watchConnection(document.getElementById("connection"), socket);
  socket.addEventListener("state", (event) => {
    if (event.detail.reason === "session-ended") {
      document.getElementById("session-ended").hidden = false;
      composer.setEnabled(false);
    }
  });
  socket.addEventListener("open", () => {
    composer.resend();
    // Whatever happened while we were not listening (or before the page's
    // socket opened): fetch it, then `sync` every reply still being written.
    history.catchUp().then(() => {
      empty.hidden = transcript.messages().length > 0;
    });
  });
  socket.addEventListener("frame", (event) => {
    const frame = event.detail;
    if (frame.type === "conversation.updated") {
      applyConversation(frame.conversation);
      // Another version was chosen (here or in another tab): show that branch.
      const leaf = frame.conversation && frame.conversation.current_leaf_id;
      const last = transcript.lastElement();
      if (leaf && (!last || last.dataset.messageId !== leaf)) history.reload().catch(() => history.catchUp());
    } else if (frame.type === "error") {
      if (!editor.refuse(frame)) composer.refuse(frame);
      else composer.showError(frame.message || `The server refused that (${frame.code}).`);
    } else {
      transcript.apply(frame);
    }
  });

  list.addEventListener("click", (event) => {
    const button = event.target.closest("[data-action=regenerate], [data-action=retry], [data-action=continue]");
    if (!button || transcript.running) return;
    const message = button.closest(".message");
    const type = button.dataset.action === "continue" ? "message.continue" : "message.regenerate";
    if (!socket.send({ type, message_id: message.dataset.messageId })) {
      showError("Not connected: try again when the connection is back.");
    }
  });

  setupCodeCopy(list);
  setupMessageCopy(list);
  setupVersions(list, {
    url: root.dataset.versionUrl,
    history,
    isRunning: () => transcript.running,
    onError: showError,
  });
  setupFeedback(list, { url: root.dataset.feedbackUrl, onError: showError });
  setupStopShortcut({ stop: () => composer.stop() });
  setupHeader();
  enhanceForms(root, { onSaved: applyConversation });
  composer.focus();
  // A search hit in another branch is remembered before the socket's catch-up
  // asks the server for the branch it shows.
  openSearchHit(root, list, { pinned, versionUrl: root.dataset.versionUrl, onError: showError }).finally(() =>
    socket.start(),
  );
}
