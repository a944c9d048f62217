// The sidebar's conversation list: more pages as one scrolls (no cap), live
// search as one types (results with snippets, no reload), and pin/unpin in place.
// The server renders every piece (`/conversations/` fragments); this module only
// asks for them and puts them in place.

import { getFragment, parseFragment, postForm } from "./http.js";

const SEARCH_DELAY_MS = 200;

export function setupSidebarList() {
  const nav = document.getElementById("sidebar-list");
  const list = document.getElementById("conversation-list");
  const more = document.getElementById("sidebar-more");
  const form = document.getElementById("search-form");
  const input = document.getElementById("search-q");
  const note = document.getElementById("search-note");
  if (!nav || !list || !more) return null;

  let loading = null; // the page being fetched, so a scroll asks once
  let searchAbort = null;
  let searchTimer = null;
  let query = input ? input.value.trim() : "";

  const listUrl = (q) => {
    const params = new URLSearchParams({ archived: nav.dataset.archived || "0" });
    if (nav.dataset.current) params.set("current", nav.dataset.current);
    if (q) params.set("q", q);
    return `${nav.dataset.listUrl}?${params}`;
  };

  const setNext = (url) => {
    more.dataset.nextUrl = url || "";
    more.hidden = !url;
  };

  // The "show more" link is in view (or the list is shorter than the sidebar).
  const moreInView = () => {
    if (more.hidden) return false;
    const box = nav.getBoundingClientRect();
    const link = more.getBoundingClientRect();
    return link.top < box.bottom + 200 && box.height > 0;
  };

  async function loadMore() {
    const url = more.dataset.nextUrl;
    if (!url || loading) return loading;
    loading = (async () => {
      try {
        const { html, headers } = await getFragment(url);
        if (more.dataset.nextUrl !== url) return; // a search replaced the list meanwhile
        append(list, parseFragment(html));
        setNext(headers.get("X-Next-Url"));
      } finally {
        loading = null;
      }
    })();
    await loading;
    if (moreInView()) await loadMore();
  }

  async function show(q) {
    searchAbort?.abort();
    const controller = new AbortController();
    searchAbort = controller;
    nav.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(listUrl(q), {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
        signal: controller.signal,
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const html = await response.text();
      if (controller !== searchAbort) return;
      query = q;
      list.replaceChildren(parseFragment(html));
      setNext(response.headers.get("X-Next-Url"));
      if (note) note.textContent = q ? `Results for “${q}”` : "";
      const address = new URL(window.location.href);
      if (q) address.searchParams.set("q", q);
      else address.searchParams.delete("q");
      window.history.replaceState(window.history.state, "", address);
      if (moreInView()) loadMore();
    } catch (error) {
      if (error.name !== "AbortError" && note) note.textContent = "Search failed: the server could not be reached.";
    } finally {
      if (controller === searchAbort) nav.removeAttribute("aria-busy");
    }
  }

  more.addEventListener("click", (event) => {
    event.preventDefault();
    loadMore();
  });
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(
      (entries) => {
        if (entries.some((entry) => entry.isIntersecting)) loadMore();
      },
      { root: nav, rootMargin: "0px 0px 200px 0px" },
    ).observe(more);
  }

  if (form && input) {
    input.addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => show(input.value.trim()), SEARCH_DELAY_MS);
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(searchTimer);
      show(input.value.trim());
    });
    document.addEventListener("click", (event) => {
      if (!event.target.closest("[data-search-clear]")) return;
      event.preventDefault();
      input.value = "";
      show("");
    });
  }

  list.addEventListener("submit", async (event) => {
    const pin = event.target.closest("form[data-pin]");
    if (!pin) return;
    event.preventDefault();
    const button = pin.querySelector("button");
    if (button) button.disabled = true;
    try {
      const { ok } = await postForm(pin);
      if (!ok) throw new Error("not saved");
      await show(query);
    } catch {
      if (note) note.textContent = "That was not saved: try again.";
      if (button) button.disabled = false;
    }
  });

  return { loadMore, show, refresh: () => show(query) };
}

/** Add a page of groups: a group that continues the last one joins it. */
function append(list, fragment) {
  for (const node of [...fragment.children]) {
    const last = list.querySelector("section[data-group]:last-of-type");
    if (node.matches("section[data-group]") && last && last.dataset.group === node.dataset.group) {
      last.querySelector("ul").append(...node.querySelectorAll("ul > li"));
    } else if (node.matches("section[data-group]")) {
      list.append(node);
    }
  }
}
