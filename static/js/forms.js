// Settings and rename forms saved in place (fetch + CSRF header), so a reply
// streaming on the page is not interrupted. Without JavaScript they post normally.

import { postForm } from "./http.js";

export function enhanceForms(root, { onSaved }) {
  for (const form of root.querySelectorAll("form[data-enhance]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const status = form.querySelector(".form__status");
      const button = form.querySelector("[type=submit]");
      const say = (text, kind) => {
        if (!status) return;
        status.textContent = text;
        status.dataset.kind = kind;
      };
      if (button) button.disabled = true;
      say("Saving…", "");
      try {
        const { ok, status: code, data } = await postForm(form);
        if (ok) {
          say("Saved", "ok");
          onSaved(data.conversation);
        } else if (code === 401) {
          say("Not saved: your session has ended. Log in again.", "error");
        } else {
          say(errorText(data) || "That was not saved.", "error");
        }
      } catch {
        say("Not saved: the server could not be reached.", "error");
      } finally {
        if (button) button.disabled = false;
      }
    });
  }
}

function errorText(data) {
  const errors = data && data.errors;
  if (!errors) return "";
  return Object.values(errors)
    .flat()
    .map((error) => error.message)
    .join(" ");
}
