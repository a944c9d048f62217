// Message times in the reader's own time zone: the hour on the message, the
// full date on hover (the <time>'s title). The server's UTC text stays without JavaScript.

const SHORT = { hour: "2-digit", minute: "2-digit" };
const LONG = { dateStyle: "medium", timeStyle: "short" };

export function localizeTimes(root) {
  for (const time of root.querySelectorAll("time[datetime]")) {
    const date = new Date(time.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    time.textContent = date.toLocaleTimeString([], SHORT);
    time.title = date.toLocaleString([], LONG);
  }
}

/** Set a <time> to an ISO moment (a message made live from the socket). */
export function setTime(time, iso) {
  if (!time || !iso) return;
  time.setAttribute("datetime", iso);
  localizeTimes(time.parentElement);
}
