// A search hit opened (`/c/<id>/?m=<message id>`): the server rendered the branch
// the hit lives in and outlined it. Here: bring it into view, and when it is not
// the branch the conversation shows, remember the choice on the server (the
// version switcher's POST), so a reload and every other tab agree. The GET
// itself changes nothing.

import { postFields } from "./http.js";

export async function openSearchHit(root, list, { pinned, versionUrl, onError }) {
  const hitId = root.dataset.hit;
  if (hitId) {
    const hit = list.querySelector(`.message[data-message-id="${CSS.escape(hitId)}"]`);
    if (hit) {
      pinned.unpin();
      hit.scrollIntoView({ block: "center" });
    }
  }
  const target = root.dataset.showVersion;
  let kept = true;
  if (target) {
    try {
      const { ok, data } = await postFields(versionUrl, { message_id: target });
      if (!ok) {
        kept = false;
        onError((data.error && data.error.message) || "The match's version could not be kept. Try again.");
      }
    } catch {
      kept = false;
      onError("The match's version could not be kept: the server could not be reached.");
    }
  }
  // The address stops naming the hit, so a later reload shows the remembered
  // branch (this one, or whichever version is chosen after it).
  const address = new URL(window.location.href);
  if (kept && address.searchParams.has("m")) {
    address.searchParams.delete("m");
    window.history.replaceState(window.history.state, "", address);
  }
}
