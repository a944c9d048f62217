// A copy button on every code block of rendered messages.

export function enhanceCode(root) {
  for (const pre of root.querySelectorAll("pre")) {
    if (pre.classList.contains("has-copy") || !pre.closest(".message__body")) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "code-copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy code");
    pre.classList.add("has-copy");
    pre.prepend(button);
  }
}

export function setupCodeCopy(root) {
  root.addEventListener("click", async (event) => {
    const button = event.target.closest(".code-copy");
    if (!button) return;
    const code = button.parentElement.querySelector("code");
    const text = code ? code.textContent : "";
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch {
      copied = false;
    }
    button.textContent = copied ? "Copied" : "Copy failed";
    setTimeout(() => {
      button.textContent = "Copy";
    }, 1500);
  });
}
