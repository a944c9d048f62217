// "Good response" / "Bad response" on a reply: a toggle stored on the server
// (pressing the chosen one again withdraws it).

import { postFields } from "./http.js";

export function setupFeedback(list, { url, onError }) {
  list.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-action=feedback]");
    if (!button) return;
    const message = button.closest(".message");
    const pressed = button.getAttribute("aria-pressed") === "true";
    const rating = pressed ? "" : button.dataset.rating;
    try {
      const { ok, data } = await postFields(url, { message_id: message.dataset.messageId, rating });
      if (!ok) {
        onError((data.error && data.error.message) || "Your feedback was not saved. Try again.");
        return;
      }
      for (const each of message.querySelectorAll("[data-action=feedback]")) {
        each.setAttribute("aria-pressed", String(each.dataset.rating === data.feedback));
      }
    } catch {
      onError("Your feedback was not saved: the server could not be reached.");
    }
  });
}
