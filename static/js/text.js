// Text helpers that count like the server: offsets on the wire are Python
// string lengths (code points), not JavaScript's UTF-16 units, so an emoji is
// one character on both sides.

/** Number of code points in `text`. */
export function length(text) {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // A high surrogate followed by a low one is a single code point.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** `text` without its first `count` code points. */
export function dropStart(text, count) {
  if (count <= 0) return text;
  let i = 0;
  let n = 0;
  while (i < text.length && n < count) {
    const c = text.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < text.length ? 2 : 1;
    n++;
  }
  return text.slice(i);
}

/** A random UUID v4: the idempotency key of a send. */
export function uuid4() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // Plain-http deployments are not a secure context and lack randomUUID.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
