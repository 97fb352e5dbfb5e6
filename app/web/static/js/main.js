// The page's entry: who is logged in (GET /api/session), then the page the URL names.
import { currentSession, endSession, prefetch, startSession } from "./api.js";
import { setServerClock } from "./format.js";
import { html, render, useEffect, useRef, useState } from "./html.js";
import { Inbox } from "./inbox.js";
import { PAGE_SIZE, parseFilters } from "./inbox-model.js";
import { setShortcutsOn, shortcutsOn } from "./keys.js";
import { Login } from "./login.js";
import { Link, navigate, route, useLocation } from "./router.js";

// Who sees the detection dashboard (the API decides what each may read; this only hides a
// link that would answer 403).
const DASHBOARD_ROLES = new Set(["lead", "auditor", "admin"]);

// A login link (`inbox up` prints one) carries a one-time ticket in the fragment, which no
// server sees or logs; it is taken out of the address at once.
function takeTicket() {
  const ticket = new URLSearchParams(location.hash.slice(1)).get("ticket");
  if (ticket) history.replaceState(null, "", location.pathname === "/login" ? "/" : location.pathname + location.search);
  return ticket;
}

// Each page's name in the window's title (the issue page adds the issue's kind once read).
const TITLES = { inbox: "Inbox", issue: "Issue", dashboard: "Detection", missing: "Not found" };
const title = (name) => `${name} — Support Inbox`;

// WCAG 2.1.4: the pages' single-character keys can be switched off (they are on at first).
function ShortcutsSwitch() {
  const [on, setOn] = useState(shortcutsOn);
  const change = (event) => {
    setShortcutsOn(event.currentTarget.checked);
    setOn(shortcutsOn());
  };
  return html`<label class="switch"><input type="checkbox" checked=${on} onChange=${change} /> Single-key shortcuts</label>`;
}

function Shell({ session, onLogout, children }) {
  const where = useLocation();
  const current = (page) => (route(where.path).page === page ? "page" : undefined);
  return html`
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <span class="brand">Support Inbox</span>
      <nav aria-label="Pages">
        <${Link} href="/" aria-current=${current("inbox")}>Inbox<//>
        ${DASHBOARD_ROLES.has(session.role) && html`<${Link} href="/dashboard" aria-current=${current("dashboard")}>Detection<//>`}
      </nav>
      <${ShortcutsSwitch} />
      <span class="who" data-testid="who">${session.name || session.sub} · ${session.role}</span>
      <button type="button" class="quiet" onClick=${onLogout}>Log out</button>
    </header>
    <main id="main" tabindex="-1">${children}</main>`;
}

// The issue page and the dashboard are fetched when first shown: the inbox, where agents
// land, loads only its own modules (index.html preloads exactly what this file imports).
const LAZY = {
  issue: () => import("./issue.js").then((module) => module.Issue),
  dashboard: () => import("./dashboard.js").then((module) => module.Dashboard),
};

function useLazyPage(name) {
  const [pages, setPages] = useState({});
  const [failed, setFailed] = useState(null);
  useEffect(() => {
    if (!LAZY[name] || pages[name]) return;
    LAZY[name]()
      .then((component) => setPages((was) => ({ ...was, [name]: component })))
      .catch((failure) => setFailed(`This page could not be loaded (${failure.message}): reload to try again.`));
  }, [name]);
  return { component: pages[name], failed };
}

function App() {
  const [session, setSessionState] = useState(undefined); // undefined: asking; null: none
  // A session brings the server's clock: the page's "now" from then on (format.js).
  const setSession = (value) => {
    if (value) setServerClock(value);
    setSessionState(value);
  };
  const [problem, setProblem] = useState(null);
  const where = useLocation();

  useEffect(() => {
    const gone = () => setSession(null);
    window.addEventListener("inbox:unauthorized", gone);
    (async () => {
      const ticket = takeTicket();
      if (ticket) {
        try {
          setSession(await startSession({ ticket }));
          return;
        } catch {
          setProblem("That login link has expired or was used already: log in with a token.");
        }
      }
      try {
        setSession(await currentSession());
      } catch (failure) {
        setProblem(`The inbox cannot be reached (${failure.message}).`);
        setSession(null);
      }
    })();
    return () => window.removeEventListener("inbox:unauthorized", gone);
  }, []);

  // A client-side page change names the page and takes focus to it (as a page load would
  // for a screen reader); the first page keeps the browser's own start.
  const shownPath = useRef(where.path);
  const loggedIn = Boolean(session);
  useEffect(() => {
    if (!loggedIn) return;
    document.title = title(TITLES[route(where.path).page]);
    if (shownPath.current === where.path) return;
    shownPath.current = where.path;
    document.getElementById("main")?.focus();
  }, [where.path, loggedIn]);

  const lazyPage = useLazyPage(route(where.path).page);

  async function logout() {
    await endSession();
    setSession(null);
    navigate("/", { replace: true });
  }

  if (session === undefined) return html`<p class="loading" role="status">Loading…</p>`;
  if (session === null) {
    return html`<${Login} problem=${problem} onLogin=${(started) => { setProblem(null); setSession(started); }} />`;
  }
  const page = route(where.path);
  let view;
  if (page.page === "inbox") view = html`<${Inbox} session=${session} search=${where.search} />`;
  else if (LAZY[page.page] && !lazyPage.component) {
    view = lazyPage.failed
      ? html`<p class="error" role="alert">${lazyPage.failed}</p>`
      : html`<p class="loading" role="status">Loading…</p>`;
  } else if (page.page === "issue") {
    const Issue = lazyPage.component;
    view = html`<${Issue} session=${session} id=${page.id} key=${page.id} />`;
  } else if (page.page === "dashboard") {
    const Dashboard = lazyPage.component;
    view = html`<${Dashboard} session=${session} />`;
  }
  else view = html`<h1>Not found</h1><p>No page here. <${Link} href="/">Back to the inbox<//></p>`;
  return html`<${Shell} session=${session} onLogout=${logout}>${view}<//>`;
}

// The first page's reads start now, not after the first render: who is logged in, the
// rules (rules.js takes them: the inbox's filters) and, on the inbox, its first page and
// counts (inbox.js takes them; a login link asks nothing yet).
if (!location.hash.includes("ticket=")) {
  prefetch("/api/session");
  prefetch("/api/rules");
  if (route(location.pathname).page === "inbox") {
    const filters = parseFilters(location.search);
    prefetch("/api/issues", { ...filters, limit: PAGE_SIZE });
    prefetch("/api/stats", filters);
  }
}

render(html`<${App} />`, document.getElementById("app"));
