// Same-origin requests from the page: CSRF header on every POST, errors as exceptions.

/** The CSRF token Django put in the page (any form's hidden input) or its cookie. */
export function csrfToken(form) {
  const input = (form || document).querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** POST a form's fields; resolves to {ok, status, data} with the JSON body. */
export async function postForm(form) {
  const response = await fetch(form.action, {
    method: "POST",
    body: new FormData(form),
    credentials: "same-origin",
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
  });
  let data = {};
  try {
    data = await response.json();
  } catch {
    data = {};
  }
  return { ok: response.ok, status: response.status, data };
}

/** GET a server-rendered HTML fragment; resolves to {html, headers}. */
export async function getFragment(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (response.redirected && new URL(response.url).pathname.startsWith("/accounts/login")) {
    window.location.reload(); // the session ended: the page will show the login form
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return { html: await response.text(), headers: response.headers };
}

/** Parse trusted server HTML (already sanitised) into nodes without running anything. */
export function parseFragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  return template.content;
}

/** POST fields (an object) as a form to `url`; resolves to {ok, status, data} with the JSON body. */
export async function postFields(url, fields) {
  const body = new FormData();
  for (const [name, value] of Object.entries(fields)) body.append(name, value);
  const response = await fetch(url, {
    method: "POST",
    body,
    credentials: "same-origin",
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
  });
  let data = {};
  try {
    data = await response.json();
  } catch {
    data = {};
  }
  return { ok: response.ok, status: response.status, data };
}
