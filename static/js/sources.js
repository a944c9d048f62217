// A reply's sources under it: numbered citations, each opening on the quoted
// passage (<details>), as the server renders them (documents/_sources.html).
// Built with textContent only: names and snippets are the users' files' words.

export function renderSources(element, sources) {
  const list = element.querySelector(".sources");
  // No `sources` at all (a final state replayed without them): keep what the server rendered.
  if (!list || sources === undefined) return;
  list.replaceChildren();
  const items = Array.isArray(sources) ? sources : [];
  const base = (document.getElementById("main") || {}).dataset?.attachmentsUrl || "";
  items.forEach((source, index) => {
    const item = document.createElement("li");
    item.className = "source";
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.append(span("source__number", `[${source.number || index + 1}]`), " ", span("source__name", source.name || "file"));
    if (source.page) summary.append(" ", span("source__page", `p. ${source.page}`));
    const quote = document.createElement("blockquote");
    quote.className = "source__quote";
    quote.textContent = source.snippet || "";
    details.append(summary, quote);
    if (source.attachment_id && base) {
      const link = document.createElement("a");
      link.className = "source__file";
      link.href = `${base}${encodeURIComponent(source.attachment_id)}/download/`;
      link.textContent = `Download ${source.name || "file"}`;
      details.append(link);
    }
    item.append(details);
    list.append(item);
  });
  list.hidden = items.length === 0;
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}
