// The version switcher: "Previous version" / "Next version" show another version
// of a message (a sibling made by edit, regenerate or retry) and the conversation
// that continues from it. The choice is made on the server (a POST, remembered
// for every tab and the next send); the page then shows the branch the server renders.

import { postFields } from "./http.js";

export function setupVersions(list, { url, history, isRunning, onError }) {
  list.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-action=version]");
    if (!button || button.disabled || !button.dataset.target) return;
    if (isRunning()) {
      onError("Wait for the reply to finish (or stop it) before switching versions.");
      return;
    }
    const target = button.dataset.target;
    const label = button.getAttribute("aria-label");
    button.disabled = true;
    try {
      const { ok, data } = await postFields(url, { message_id: target });
      if (!ok) {
        onError((data.error && data.error.message) || "That version could not be shown. Try again.");
        return;
      }
      await history.reload();
      // Keep the keyboard where it was: on the same switcher, now of the shown version.
      const shown = list.querySelector(`.message[data-message-id="${CSS.escape(target)}"]`);
      const again = shown?.querySelector(`[data-action=version][aria-label="${label}"]:not(:disabled)`);
      (again || shown?.querySelector("[data-action=version]:not(:disabled)"))?.focus();
    } catch {
      onError("That version could not be shown: the server could not be reached.");
    } finally {
      button.disabled = false;
    }
  });
}
