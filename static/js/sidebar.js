// The sidebar drawer on narrow screens: a toggle button, a backdrop, Escape to close.

export function setupSidebar() {
  const layout = document.getElementById("layout");
  const toggle = document.getElementById("sidebar-toggle");
  const backdrop = document.getElementById("sidebar-backdrop");
  const sidebar = document.getElementById("sidebar");
  if (!layout || !toggle || !sidebar) return;

  const label = toggle.querySelector(".visually-hidden");
  const set = (open) => {
    layout.toggleAttribute("data-sidebar-open", open);
    toggle.setAttribute("aria-expanded", String(open));
    if (label) label.textContent = open ? "Hide conversations" : "Show conversations";
    if (backdrop) backdrop.hidden = !open;
    if (open) sidebar.querySelector("input, button, a")?.focus();
  };

  toggle.addEventListener("click", () => set(!layout.hasAttribute("data-sidebar-open")));
  backdrop?.addEventListener("click", () => {
    set(false);
    toggle.focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && layout.hasAttribute("data-sidebar-open")) {
      set(false);
      toggle.focus();
    }
  });
}
