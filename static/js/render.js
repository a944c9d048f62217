// The DOM of one message: made from the server's <template>s, filled with
// text (textContent) or with HTML the server sanitised. Nothing else is ever
// parsed as HTML.

import { enhanceCode } from "./codecopy.js";
import { renderSources } from "./sources.js";
import { dropStart, length } from "./text.js";
import { setTime } from "./times.js";

export const LIVE_STATUSES = new Set(["pending", "streaming"]);

export function isLive(element) {
  return LIVE_STATUSES.has(element.dataset.status);
}

/** A new message element from a `message.created` payload. */
export function createMessage(message) {
  const template = document.getElementById(message.role === "user" ? "tpl-user" : "tpl-assistant");
  const element = template.content.firstElementChild.cloneNode(true);
  element.dataset.messageId = message.id;
  element.dataset.parentId = message.parent_id || "";
  element.dataset.status = message.status;
  setTime(element.querySelector("time"), message.created_at);
  const model = element.querySelector(".message__model");
  if (model && message.model) model.textContent = message.model;
  const body = element.querySelector(".message__body");
  if (message.role === "user") {
    body.textContent = message.content;
  } else {
    // A reply starts as plain text; finished blocks arrive as server HTML.
    element.querySelector(".message__tail").textContent = message.content || "";
    body.dataset.renderedEnd = "0";
    element.dataset.offset = String(length(message.content || ""));
    if (!LIVE_STATUSES.has(message.status)) body.removeAttribute("aria-busy");
  }
  return element;
}

/** The finished reply: the server's sanitised HTML, status and usage. */
export function finishMessage(element, { status, html, usage, error, sources, finishReason, model }) {
  element.dataset.status = status;
  element.dataset.finishReason = finishReason || "";
  const modelName = element.querySelector(".message__model");
  if (modelName && model) modelName.textContent = model;
  const lengthNotice = element.querySelector("[data-notice=length]");
  if (lengthNotice) lengthNotice.hidden = !(status === "complete" && finishReason === "length");
  delete element.dataset.offset;
  const body = element.querySelector(".message__body");
  body.removeAttribute("aria-busy");
  delete body.dataset.renderedEnd;
  body.innerHTML = html || ""; // sanitised by the server's one renderer
  enhanceCode(body);
  renderSources(element, sources);

  const note = element.querySelector(".message__note");
  if (note) note.textContent = status === "cancelled" ? "Stopped" : "";
  const usageText = element.querySelector(".message__usage");
  if (usageText && usage) usageText.textContent = formatUsage(usage);

  const errorLine = element.querySelector(".message__error");
  if (errorLine) {
    errorLine.hidden = !error;
    if (error) {
      errorLine.querySelector(".message__error-text").textContent = error.message || "The reply failed.";
    }
  }
}

export function formatUsage(usage) {
  if (!usage || !usage.completion_tokens) return "";
  let text = `${usage.prompt_tokens} in · ${usage.completion_tokens} out`;
  if (usage.ttft_ms !== null && usage.ttft_ms !== undefined) text += ` · first token ${ms(usage.ttft_ms)}`;
  return text;
}

function ms(value) {
  return value < 1000 ? `${value} ms` : `${(value / 1000).toFixed(1)} s`;
}

/** A finished reply that is being continued: live again, its finished blocks as the
 * server rendered them (`html` up to `end`), the rest as text that deltas extend. */
export function reopenMessage(element, { content, html, end }) {
  element.dataset.status = "streaming";
  element.dataset.finishReason = "";
  const lengthNotice = element.querySelector("[data-notice=length]");
  if (lengthNotice) lengthNotice.hidden = true;
  const errorLine = element.querySelector(".message__error");
  if (errorLine) errorLine.hidden = true;
  const body = element.querySelector(".message__body");
  body.setAttribute("aria-busy", "true");
  body.dataset.renderedEnd = String(end);
  const blocks = document.createElement("div");
  blocks.className = "message__blocks";
  blocks.innerHTML = html || ""; // sanitised by the server's one renderer
  const tail = document.createElement("span");
  tail.className = "message__tail";
  tail.textContent = dropStart(content, end);
  body.replaceChildren(blocks, tail);
  enhanceCode(body);
  element.dataset.offset = String(length(content));
}
