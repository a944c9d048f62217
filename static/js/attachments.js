// The conversation's attachments: the paperclip, drag and drop, and a long
// paste offered as a file; one chip per file showing upload progress, then
// the server's reading progress (polled), then Ready or the server's reason.
//
// Chips are clones of the server's <template id="tpl-chip">, filled with
// textContent only. The server decides what a file is; the size check here
// only spares a doomed upload.

import { csrfToken } from "./http.js";

const POLL_MS = 600;
const SETTLED = new Set(["ready", "failed"]);

export class Attachments {
  constructor({ url, list, input, button, offer, dropHint, textarea, dropZone }) {
    this.url = url;
    this.list = list;
    this.input = input;
    this.textarea = textarea;
    this.offer = offer;
    this.dropHint = dropHint;
    this.maxBytes = Number(list.dataset.maxBytes) || 20 * 1024 * 1024;
    this.pasteChars = Number(list.dataset.pasteChars) || 4000;
    this.pasted = "";
    this.polling = null;

    button.addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      this.addFiles(input.files);
      input.value = "";
    });
    list.addEventListener("click", (event) => {
      const remove = event.target.closest("[data-action=remove-attachment]");
      if (remove) this.remove(remove.closest(".chip"));
    });
    textarea.addEventListener("paste", (event) => this.#paste(event));
    offer.addEventListener("click", (event) => {
      const choice = event.target.closest("[data-paste]");
      if (choice) this.#resolvePaste(choice.dataset.paste);
    });
    this.#dragAndDrop(dropZone);
    this.#poll();
  }

  addFiles(files) {
    for (const file of files) this.upload(file);
  }

  /** Upload one file with a chip that shows its progress (XHR: fetch has no upload progress). */
  upload(file) {
    const chip = this.#chip({ name: file.name, status: "uploading", progress: 0 });
    if (file.size > this.maxBytes) {
      this.#update(chip, {
        status: "failed",
        error: `Larger than ${(this.maxBytes / (1024 * 1024)).toFixed(0)} MB: not uploaded.`,
      });
      return;
    }
    const body = new FormData();
    body.append("file", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", this.url);
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.setRequestHeader("Accept", "application/json");
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        this.#update(chip, { status: "uploading", progress: Math.floor((event.loaded / event.total) * 100) });
      }
    });
    request.addEventListener("load", () => {
      const data = request.response || {};
      if (request.status === 201) {
        this.#update(chip, data);
        this.#poll();
      } else {
        const message = (data.error && data.error.message) || `The upload failed (HTTP ${request.status}).`;
        this.#update(chip, { status: "failed", error: message });
      }
    });
    request.addEventListener("error", () => {
      this.#update(chip, { status: "failed", error: "The upload failed: the connection was lost." });
    });
    request.send(body);
  }

  async remove(chip) {
    const id = chip.dataset.attachmentId;
    if (id) {
      const response = await fetch(`${this.url}${encodeURIComponent(id)}/`, {
        method: "DELETE",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken() },
      });
      if (!response.ok && response.status !== 404) {
        this.#update(chip, { status: "failed", error: `Could not remove it (HTTP ${response.status}).` });
        return;
      }
    }
    chip.remove();
    this.list.hidden = this.list.children.length === 0;
  }

  // --- chips -----------------------------------------------------------------

  #chip(attachment) {
    const template = document.getElementById("tpl-chip");
    const chip = template.content.firstElementChild.cloneNode(true);
    this.list.append(chip);
    this.list.hidden = false;
    this.#update(chip, attachment);
    return chip;
  }

  #update(chip, attachment) {
    if (attachment.id) chip.dataset.attachmentId = attachment.id;
    if (attachment.name) {
      const name = chip.querySelector(".chip__name");
      name.textContent = attachment.name;
      name.title = attachment.name;
      chip.querySelector(".chip__remove").setAttribute("aria-label", `Remove ${attachment.name}`);
    }
    const status = attachment.status || chip.dataset.status;
    chip.dataset.status = status;
    const progress = chip.querySelector(".chip__progress");
    const percent = Number(attachment.progress) || 0;
    progress.value = percent;
    progress.hidden = SETTLED.has(status);
    chip.querySelector(".chip__status").textContent = describe(status, percent, attachment);
  }

  // --- polling the server's reading of new files ----------------------------

  #poll() {
    if (this.polling) return;
    const unsettled = () =>
      [...this.list.querySelectorAll(".chip[data-attachment-id]")].some(
        (chip) => chip.dataset.attachmentId && !SETTLED.has(chip.dataset.status),
      );
    if (!unsettled()) return;
    const tick = async () => {
      try {
        const response = await fetch(this.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (response.ok) {
          const { attachments } = await response.json();
          for (const attachment of attachments) {
            const chip = this.list.querySelector(`.chip[data-attachment-id="${CSS.escape(attachment.id)}"]`);
            if (chip) this.#update(chip, attachment);
          }
        }
      } catch {
        // Offline for a moment: the next tick asks again.
      }
      if (unsettled()) this.polling = setTimeout(tick, POLL_MS);
      else this.polling = null;
    };
    this.polling = setTimeout(tick, POLL_MS);
  }

  // --- long pastes -----------------------------------------------------------

  #paste(event) {
    const text = event.clipboardData ? event.clipboardData.getData("text/plain") : "";
    if (text.length <= this.pasteChars) return;
    event.preventDefault();
    this.pasted = text;
    this.offer.querySelector(".paste-offer__size").textContent = text.length.toLocaleString();
    this.offer.hidden = false;
    this.offer.querySelector("[data-paste=attach]").focus();
  }

  #resolvePaste(choice) {
    const text = this.pasted;
    this.pasted = "";
    this.offer.hidden = true;
    if (!text) return;
    if (choice === "attach") {
      const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
      this.upload(new File([text], `pasted-${stamp}.txt`, { type: "text/plain" }));
    } else {
      const { selectionStart, selectionEnd } = this.textarea;
      this.textarea.setRangeText(text, selectionStart, selectionEnd, "end");
      this.textarea.dispatchEvent(new Event("input", { bubbles: true }));
    }
    this.textarea.focus();
  }

  // --- drag and drop ---------------------------------------------------------

  #dragAndDrop(zone) {
    let depth = 0;
    const carriesFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
    const show = (on) => {
      this.dropHint.hidden = !on;
      zone.toggleAttribute("data-dropping", on);
    };
    zone.addEventListener("dragenter", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      depth += 1;
      show(true);
    });
    zone.addEventListener("dragover", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    zone.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (depth === 0) show(false);
    });
    zone.addEventListener("drop", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      depth = 0;
      show(false);
      this.addFiles(event.dataTransfer.files);
    });
  }
}

function describe(status, percent, attachment) {
  switch (status) {
    case "uploading":
      return `Uploading… ${percent}%`;
    case "pending":
      return "Waiting…";
    case "processing":
      return `Reading… ${percent}%`;
    case "ready":
      return attachment.pages ? `Ready · ${attachment.pages} page${attachment.pages === 1 ? "" : "s"}` : "Ready";
    case "failed":
      return attachment.error || "This file could not be read.";
    default:
      return "";
  }
}
