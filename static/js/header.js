// The chat header: the model picker saves as soon as a model is chosen, and the
// "System prompt" chip (shown while one is set) opens it in Options.

export function setupHeader() {
  const form = document.getElementById("model-form");
  const select = form?.querySelector("select");
  select?.addEventListener("change", () => form.requestSubmit());
  // Without JavaScript the form needs its button; with it, choosing is enough.
  const save = document.getElementById("model-save");
  if (save && select) save.hidden = true;

  const chip = document.getElementById("system-prompt-indicator");
  chip?.addEventListener("click", (event) => {
    event.stopPropagation(); // the menus close on any click outside them
    const menu = document.getElementById("conversation-menu");
    if (!menu) return;
    menu.open = true;
    document.getElementById("id_system_prompt")?.focus();
  });
}

/** `conversation.updated`: show or hide the chip with the new prompt. */
export function showSystemPrompt(prompt) {
  const chip = document.getElementById("system-prompt-indicator");
  if (!chip || typeof prompt !== "string") return;
  chip.hidden = prompt.trim() === "";
  chip.title = prompt.length > 200 ? `${prompt.slice(0, 199)}…` : prompt;
}
