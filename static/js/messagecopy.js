// "Copy message": the text of a whole message, as shown (without the code
// blocks' own buttons and language labels).

const EXTRAS = ".code-copy, .code-block__lang";

export function messageText(message) {
  const body = message.querySelector(".message__body");
  if (!body) return "";
  if (message.dataset.role === "user") return body.textContent;
  // innerText keeps the line breaks between blocks; hidden extras are left out.
  const extras = [...body.querySelectorAll(EXTRAS)].filter((element) => !element.hidden);
  for (const element of extras) element.hidden = true;
  const text = body.innerText;
  for (const element of extras) element.hidden = false;
  return text.trim();
}

export function setupMessageCopy(list) {
  list.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-action=copy-message]");
    if (!button) return;
    let copied = false;
    try {
      await navigator.clipboard.writeText(messageText(button.closest(".message")));
      copied = true;
    } catch {
      copied = false;
    }
    button.textContent = copied ? "Copied" : "Copy failed";
    setTimeout(() => {
      button.textContent = "Copy message";
    }, 1500);
  });
}
