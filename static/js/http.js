// JSON calls to the site: the CSRF token from Django's cookie, errors as exceptions with the server's words.
import { _, fmt } from "./i18n.js";

export function csrfToken() {
  return document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] ?? "";
}

export async function request(method, url, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRFToken"] = csrfToken();
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  let data = {};
  try {
    data = await response.json();
  } catch {
    // an HTML error page: fall through with the status
  }
  if (!response.ok) {
    const error = new Error(data.error || fmt(_("The server answered %(status)s."), { status: response.status }));
    error.code = data.code;
    error.status = response.status;
    throw error;
  }
  return data;
}

export const getJSON = (url) => request("GET", url);
export const postJSON = (url, body = {}) => request("POST", url, body);
