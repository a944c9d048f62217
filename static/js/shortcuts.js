// Keyboard shortcuts: Ctrl/Cmd+K focuses the conversation search (every page);
// Esc stops a running reply (the chat page), unless Esc is closing something else.

export function setupSearchShortcut() {
  document.addEventListener("keydown", (event) => {
    if (event.key.toLowerCase() !== "k" || !(event.ctrlKey || event.metaKey) || event.altKey) return;
    const search = document.getElementById("search-q");
    if (!search) return;
    event.preventDefault();
    const layout = document.getElementById("layout");
    const toggle = document.getElementById("sidebar-toggle");
    // On a phone the search lives in the drawer: open it first.
    if (toggle && getComputedStyle(toggle).display !== "none" && !layout?.hasAttribute("data-sidebar-open")) {
      toggle.click();
    }
    search.focus();
    search.select();
  });
}

export function setupStopShortcut({ stop }) {
  // Capture phase: decide before the menus and the drawer close themselves on this Esc.
  document.addEventListener(
    "keydown",
    (event) => {
      if (event.key !== "Escape" || event.defaultPrevented) return;
      if (document.querySelector("details.menu[open]")) return;
      if (document.getElementById("layout")?.hasAttribute("data-sidebar-open")) return;
      if (event.target instanceof Element && event.target.closest(".message__editor")) return;
      if (stop()) event.preventDefault();
    },
    true,
  );
}
