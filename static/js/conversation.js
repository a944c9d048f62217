// `conversation.updated`: the title, model and system prompt wherever the page shows them.

import { showSystemPrompt } from "./header.js";

export function applyConversation(conversation) {
  if (!conversation) return;
  const main = document.getElementById("main");
  if (!main || main.dataset.conversationId !== conversation.id) return;

  const title = conversation.title || "New conversation";
  const heading = document.getElementById("conversation-title");
  if (heading) heading.textContent = title;
  document.title = `${title} · Chat`;
  for (const link of document.querySelectorAll(`[data-conversation-link="${CSS.escape(conversation.id)}"]`)) {
    (link.querySelector(".conversation-item__title") || link).textContent = title;
    // The list is newest first: a conversation that just changed moves to the
    // top of Today (a pinned one to the top of Pinned; search results stay put).
    const item = link.closest("li");
    const group = link.closest("section[data-group]");
    const key = group ? group.dataset.group : "";
    const target =
      key === "pinned" || key === "today" ? group : key === "results" ? null : document.querySelector('section[data-group="today"]');
    const ul = target && target.querySelector("ul");
    if (item && ul && ul.firstElementChild !== item) ul.prepend(item);
  }

  // Never overwrite what someone is typing.
  const rename = document.getElementById("rename-title");
  if (rename && document.activeElement !== rename && title !== "New conversation") rename.value = title;
  const model = document.getElementById("id_model");
  if (model && document.activeElement !== model && typeof conversation.model === "string") {
    if (![...model.options].some((option) => option.value === conversation.model)) {
      model.add(new Option(conversation.model, conversation.model));
    }
    model.value = conversation.model;
  }
  const prompt = document.getElementById("id_system_prompt");
  if (prompt && document.activeElement !== prompt && typeof conversation.system_prompt === "string") {
    prompt.value = conversation.system_prompt;
  }
  showSystemPrompt(conversation.system_prompt);
}
