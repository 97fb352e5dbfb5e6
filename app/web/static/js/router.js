// Client-side navigation between the pages the shell serves: "/" (the inbox, its filters in
// the query string, named as GET /api/issues names them), "/issues/{id}", "/dashboard".
import { html, useEffect, useState } from "./html.js";

export function navigate(href, { replace = false } = {}) {
  history[replace ? "replaceState" : "pushState"](null, "", href);
  window.dispatchEvent(new Event("inbox:navigate"));
}

export function useLocation() {
  const read = () => ({ path: location.pathname, search: location.search });
  const [where, setWhere] = useState(read);
  useEffect(() => {
    const changed = () => setWhere(read());
    window.addEventListener("popstate", changed);
    window.addEventListener("inbox:navigate", changed);
    return () => {
      window.removeEventListener("popstate", changed);
      window.removeEventListener("inbox:navigate", changed);
    };
  }, []);
  return where;
}

// An issue's id is a UUID (CONTRACT §2): anything else in its place is no issue's page,
// and never goes into an API path.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function route(path) {
  if (path === "/" || path === "/login") return { page: "inbox" };
  const issue = path.match(/^\/issues\/([^/]+)$/);
  if (issue) {
    let id;
    try {
      id = decodeURIComponent(issue[1]);
    } catch {
      return { page: "missing" }; // a malformed escape is no id either
    }
    return UUID.test(id) ? { page: "issue", id } : { page: "missing" };
  }
  if (path === "/dashboard") return { page: "dashboard" };
  return { page: "missing" };
}

// A link that navigates without a reload (a modified click opens a tab as usual).
export function Link({ href, children, ...rest }) {
  const click = (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(href);
  };
  return html`<a href=${href} onClick=${click} ...${rest}>${children}</a>`;
}
