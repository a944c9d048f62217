// History from the server, as rendered HTML: earlier pages on demand, and
// catching up after a (re)connect with whatever happened meanwhile.

import { getFragment, parseFragment } from "./http.js";

export class History {
  constructor({ url, button, transcript, scroller, onError }) {
    this.url = url;
    this.button = button;
    this.transcript = transcript;
    this.scroller = scroller;
    this.onError = onError;
    this.catching = null;
    this.again = false;
    button?.addEventListener("click", () => this.loadEarlier());
  }

  async loadEarlier() {
    const first = this.transcript.messages()[0];
    if (!first) return;
    this.button.disabled = true;
    try {
      const { html, headers } = await getFragment(this.#url({ before: first.dataset.messageId }));
      const height = this.scroller.scrollHeight;
      this.transcript.insert(parseFragment(html), "top");
      // Keep what the reader was looking at in place.
      this.scroller.scrollTop += this.scroller.scrollHeight - height;
      this.button.hidden = headers.get("X-Has-Earlier") !== "1";
    } catch {
      this.onError("Earlier messages could not be loaded. Try again.");
    } finally {
      this.button.disabled = false;
    }
  }

  /** Show the latest page of the shown branch again (another version was chosen). */
  async reload() {
    const { html, headers } = await getFragment(this.url);
    this.transcript.replace(parseFragment(html));
    if (this.button) this.button.hidden = headers.get("X-Has-Earlier") !== "1";
    this.transcript.syncAll();
  }

  /** Fetch the branch after message `id` again (it has a new version), then sync. */
  async refreshFrom(id) {
    try {
      if (!id) {
        await this.reload();
        return;
      }
      const { html, headers } = await getFragment(this.#url({ after: id }));
      const fragment = parseFragment(html);
      if (headers.get("X-History-Reset") === "1" || !this.transcript.replaceAfter(id, fragment)) {
        this.transcript.replace(fragment);
        if (this.button) this.button.hidden = headers.get("X-Has-Earlier") !== "1";
      }
    } catch {
      // The events that follow still show the new version; only its switcher waits for a reload.
    }
    this.transcript.syncAll();
  }

  /** Fetch what came after the last shown message, then sync replies being written. */
  catchUp() {
    if (this.catching) {
      this.again = true;
      return this.catching;
    }
    this.catching = this.#catchUp().finally(() => {
      this.catching = null;
      if (this.again) {
        this.again = false;
        this.catchUp();
      }
    });
    return this.catching;
  }

  async #catchUp() {
    const last = this.transcript.lastElement();
    const version = this.transcript.version;
    try {
      const { html, headers } = await getFragment(this.#url({ after: last ? last.dataset.messageId : "" }));
      const fragment = parseFragment(html);
      if (this.transcript.version !== version) {
        // Messages arrived on the socket while this was fetched: the answer may predate
        // them, so replacing with it would wipe them. Fetch again from what is shown now.
        this.again = true;
      } else if (headers.get("X-History-Reset") === "1") {
        this.transcript.replace(fragment);
        if (this.button) this.button.hidden = headers.get("X-Has-Earlier") !== "1";
      } else {
        this.transcript.insert(fragment, "bottom");
      }
    } catch {
      // The socket's own events and the next reconnect still bring the page up to date.
    }
    this.transcript.syncAll();
  }

  #url(params) {
    return `${this.url}?${new URLSearchParams(params)}`;
  }
}
