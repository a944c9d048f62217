// The sidebar drawer on narrow screens: a toggle button, a backdrop, Escape to close.
// While open it takes the focus and keeps it: Tab and Shift+Tab cycle inside it.

const FOCUSABLE =
  "a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select, textarea, [tabindex]:not([tabindex='-1'])";

function focusables(container) {
  return [...container.querySelectorAll(FOCUSABLE)].filter((item) => item.getClientRects().length > 0);
}

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
    // After the frame that shows it: an element still hidden cannot take the focus.
    if (open) requestAnimationFrame(() => focusables(sidebar)[0]?.focus());
  };

  toggle.addEventListener("click", () => set(!layout.hasAttribute("data-sidebar-open")));
  backdrop?.addEventListener("click", () => {
    set(false);
    toggle.focus();
  });
  document.addEventListener("keydown", (event) => {
    if (!layout.hasAttribute("data-sidebar-open")) return;
    if (event.key === "Escape") {
      set(false);
      toggle.focus();
    } else if (event.key === "Tab") {
      trapTab(event, sidebar);
    }
  });
}

function trapTab(event, container) {
  const items = focusables(container);
  if (!items.length) return;
  const first = items[0];
  const last = items[items.length - 1];
  const inside = container.contains(document.activeElement);
  if (event.shiftKey && (document.activeElement === first || !inside)) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && (document.activeElement === last || !inside)) {
    event.preventDefault();
    first.focus();
  }
}
