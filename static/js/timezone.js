// The reader's time zone, named for the server in a cookie, so the sidebar's date
// groups (Today, Yesterday, …) and server-rendered times follow the reader's day,
// not UTC's. Display only: the server trusts the name for nothing else.

const COOKIE = "tz";
// IANA names: "Pacific/Auckland", "America/Argentina/Buenos_Aires", "Etc/GMT+5".
const NAME = /^[A-Za-z0-9_+\/-]{1,64}$/;

/** Set the cookie; true when the page was rendered in another zone than this
 * browser's and the cookie is new, so what it grouped by date should be fetched again. */
export function rememberTimeZone() {
  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch {
    return false;
  }
  if (!NAME.test(zone)) return false;
  const match = document.cookie.match(/(?:^|;\s*)tz=([^;]*)/);
  const previous = match ? match[1] : "";
  if (previous !== zone) {
    const secure = window.location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `${COOKIE}=${zone}; Path=/; Max-Age=31536000; SameSite=Lax${secure}`;
  }
  return previous !== zone && document.documentElement.dataset.timeZone !== zone;
}
