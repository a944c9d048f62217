// The shown conversation: applies the socket's message events to the list,
// deduplicated by message id, following branch changes, asking `sync` on a gap.
//
// A reply being written is shown as the server's HTML of its finished
// markdown blocks (`message.blocks`) followed by the unfinished tail as
// plain text. Offsets count code points, as the server does (text.js).
//
// Events: "running" {running} when a reply starts or ends anywhere;
// "created" {message} for every `message.created`, duplicates included (the
// composer and the editor use it as the acknowledgement of a send);
// "stale" when an event refers to history this page has not got;
// "forked" {parentId} when an edit or a regeneration made a new version (the
// page then fetches that part of the branch, rendered with its version switcher).

import { enhanceCode } from "./codecopy.js";
import { createMessage, finishMessage, isLive, reopenMessage } from "./render.js";
import { dropStart, length } from "./text.js";
import { localizeTimes } from "./times.js";

// Ask again for a gap only after this long: a sync answer takes a round trip.
const SYNC_RETRY_MS = 1000;

export class Transcript extends EventTarget {
  constructor(list, { send }) {
    super();
    this.list = list;
    this.send = send;
    this.live = new Map(); // message id -> what is held of a reply being written
    this.version = 0; // counts messages added live: a fetch older than one must not replace them
    this.wasRunning = false;
    this.adopt(this.messages());
  }

  get running() {
    return this.live.size > 0;
  }

  messages() {
    return [...this.list.querySelectorAll(":scope > .message[data-message-id]")];
  }

  element(id) {
    return id ? this.list.querySelector(`:scope > .message[data-message-id="${CSS.escape(id)}"]`) : null;
  }

  lastElement() {
    const all = this.messages();
    return all.length ? all[all.length - 1] : null;
  }

  /** Take over server-rendered message elements (the page's, or fetched ones once inserted). */
  adopt(elements) {
    for (const element of elements) {
      if (element.dataset.role === "assistant" && isLive(element)) this.#track(element);
      enhanceCode(element);
      localizeTimes(element);
    }
    this.#changed();
  }

  /** Insert server-rendered messages at the top (older) or the bottom (newer), skipping known ones. */
  insert(fragment, where) {
    const fresh = [...fragment.querySelectorAll(".message[data-message-id]")].filter(
      (element) => !this.element(element.dataset.messageId),
    );
    if (where === "top") this.list.prepend(...fresh);
    else this.list.append(...fresh);
    this.adopt(fresh);
    return fresh.length;
  }

  /** Show exactly these server-rendered messages (the branch changed while we were away). */
  replace(fragment) {
    this.live.clear();
    this.list.replaceChildren(...fragment.querySelectorAll(".message[data-message-id]"));
    this.adopt(this.messages());
  }

  /** Show these server-rendered messages in place of everything after message `id`. */
  replaceAfter(id, fragment) {
    const anchor = this.element(id);
    if (!anchor) return false;
    while (anchor.nextElementSibling) this.#remove(anchor.nextElementSibling);
    const fresh = [...fragment.querySelectorAll(".message[data-message-id]")];
    this.list.append(...fresh);
    this.adopt(fresh);
    return true;
  }

  /** Ask the server for everything after what we hold of each reply being written. */
  syncAll() {
    for (const [id, held] of this.live) {
      held.syncAt = 0;
      this.#requestSync(id, held);
    }
  }

  apply(frame) {
    switch (frame.type) {
      case "message.created":
        this.#created(frame.message);
        break;
      case "message.delta":
        this.#delta(frame);
        break;
      case "message.blocks":
        this.#blocks(frame);
        break;
      case "message.completed":
        this.#finished(frame, null);
        break;
      case "message.failed":
        this.#finished(frame, frame.error || { message: "The reply failed." });
        break;
      case "message.continued":
        this.#continued(frame);
        break;
      default:
        return;
    }
    this.#changed();
  }

  #created(message) {
    if (!message || !message.id) return;
    if (message.role !== "system" && !this.element(message.id)) {
      const last = this.lastElement();
      const parentId = message.parent_id || "";
      if (last && last.dataset.messageId !== parentId) {
        // An edit or a regeneration forked a new branch at the parent: what was
        // shown after the parent belongs to the old branch.
        const parent = this.element(parentId);
        if (parent) {
          while (parent.nextElementSibling) this.#remove(parent.nextElementSibling);
          this.dispatchEvent(new CustomEvent("forked", { detail: { parentId } }));
        } else if (!parentId) {
          for (const element of this.messages()) this.#remove(element);
          this.dispatchEvent(new CustomEvent("forked", { detail: { parentId } }));
        } else {
          // The parent is not on the page: fetch the branch instead of guessing.
          this.dispatchEvent(new CustomEvent("stale"));
          this.dispatchEvent(new CustomEvent("created", { detail: { message } }));
          return;
        }
      }
      const element = createMessage(message);
      this.list.append(element);
      this.version += 1;
      if (element.dataset.role === "assistant" && isLive(element)) this.#track(element);
    }
    this.dispatchEvent(new CustomEvent("created", { detail: { message } }));
  }

  #delta({ message_id: id, offset, text }) {
    const held = this.live.get(id);
    if (!held || typeof text !== "string" || typeof offset !== "number") return;
    const have = held.renderedEnd + held.tailLength;
    if (offset > have) {
      this.#requestSync(id, held); // we missed something: ask for it
      return;
    }
    const size = length(text);
    if (offset + size <= have) return; // already held (a replay after sync)
    const fresh = dropStart(text, have - offset);
    held.text.appendData(fresh);
    held.tailLength += size - (have - offset);
    held.syncAt = 0;
  }

  #blocks({ message_id: id, start, end, html }) {
    const held = this.live.get(id);
    if (!held || typeof html !== "string") return;
    // Append the next finished blocks, or take a full re-render from 0; a
    // later block with a hole before it waits for the final HTML.
    if (start !== 0 && start !== held.renderedEnd) return;
    if (end < held.renderedEnd) return;
    const cut = end - held.renderedEnd;
    const tail = cut >= held.tailLength ? "" : dropStart(held.text.data, cut);
    if (start === 0) held.blocks.innerHTML = html; // sanitised by the server
    else held.blocks.insertAdjacentHTML("beforeend", html); // sanitised by the server
    enhanceCode(held.blocks);
    held.renderedEnd = end;
    held.text.data = tail;
    held.tailLength = length(tail);
    held.body.dataset.renderedEnd = String(end);
  }

  #finished(frame, error) {
    const element = this.element(frame.message_id);
    this.live.delete(frame.message_id);
    if (!element) return;
    finishMessage(element, {
      status: frame.status,
      html: frame.html,
      usage: frame.usage,
      error,
      sources: frame.sources,
      finishReason: frame.finish_reason,
      model: frame.model,
    });
  }

  #continued({ message, html, end }) {
    const element = message && this.element(message.id);
    if (!element || this.live.has(message.id) || typeof message.content !== "string") return;
    reopenMessage(element, { content: message.content, html, end: Number(end) || 0 });
    this.#track(element);
  }

  #track(element) {
    const body = element.querySelector(".message__body");
    const tail = element.querySelector(".message__tail");
    const text = document.createTextNode(tail.textContent);
    tail.replaceChildren(text); // one text node the deltas append to
    this.live.set(element.dataset.messageId, {
      element,
      body,
      blocks: element.querySelector(".message__blocks"),
      text,
      renderedEnd: Number(body.dataset.renderedEnd || 0),
      tailLength: length(text.data),
      syncAt: 0,
    });
  }

  #remove(element) {
    this.live.delete(element.dataset.messageId);
    element.remove();
  }

  #requestSync(id, held) {
    const now = Date.now();
    if (now - held.syncAt < SYNC_RETRY_MS) return;
    held.syncAt = now;
    this.send({ type: "sync", message_id: id, offset: held.renderedEnd + held.tailLength });
  }

  #changed() {
    const running = this.running;
    if (running !== this.wasRunning) {
      this.wasRunning = running;
      this.dispatchEvent(new CustomEvent("running", { detail: { running } }));
    }
  }
}
