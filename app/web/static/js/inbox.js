// The inbox: the queue of issues in priority order, its filters in the URL (named as
// GET /api/issues names them), counts from /api/stats, paging by the keyset cursor, kept
// live by /api/stream from the position of the page loaded, worked from the keyboard.
import { ApiError, get, prefetched } from "./api.js";
import { age, duration, humanise, label, serverNow } from "./format.js";
import { html, useCallback, useEffect, useMemo, useRef, useState } from "./html.js";
import { mayBulk, mayTriage, sendAll, SNOOZE_SECONDS } from "./inbox-actions.js";
import { FilterBar } from "./inbox-filters.js";
import { HelpDialog, ResolveDialog } from "./inbox-dialogs.js";
import {
  PAGE_SIZE,
  addPage,
  drop,
  emptyRows,
  fedTo,
  parseFilters,
  pagePosition,
  reading,
  streamQuery,
  upsert,
  visible,
} from "./inbox-model.js";
import { shortcutsOn, typing } from "./keys.js";
import { openStream } from "./live.js";
import { Link, navigate } from "./router.js";

// How long after a live change the counts are asked for again (one request for a burst).
const STATS_SETTLE_MS = 2000;
const REOPEN_MS = 3000;

function problem(error) {
  if (error instanceof ApiError) {
    const body = error.body && typeof error.body === "object" ? error.body : {};
    return `${body.detail || `HTTP ${error.status}`}${body.field ? ` (${body.field})` : ""}`;
  }
  return error.message;
}

export function Inbox({ session, search }) {
  const filters = useMemo(() => parseFilters(search), [search]);
  const [stats, setStats] = useState(null);
  const [statsProblem, setStatsProblem] = useState(null);
  const [recount, setRecount] = useState(0);
  const settling = useRef(0);
  // The newest position a live change came with: the counts asked again after it wait
  // until the counts model has it (min_position), or they would miss the change that
  // asked for them (the two models are written by different followers).
  const heard = useRef(0);

  useEffect(() => {
    const abort = new AbortController();
    (async () => {
      try {
        const query = heard.current ? { ...filters, min_position: heard.current } : filters;
        const asked = prefetched("/api/stats", query) ?? get("/api/stats", query, { signal: abort.signal });
        setStats((await asked).data);
        setStatsProblem(null);
      } catch (error) {
        if (error.name !== "AbortError") setStatsProblem(problem(error));
      }
    })();
    return () => abort.abort();
  }, [filters, recount]);
  useEffect(() => () => clearTimeout(settling.current), []);

  // A live change asks for the counts again, at most once per STATS_SETTLE_MS.
  const changed = useCallback((position) => {
    heard.current = Math.max(heard.current, position || 0);
    if (settling.current) return;
    settling.current = setTimeout(() => {
      settling.current = 0;
      setRecount((n) => n + 1);
    }, STATS_SETTLE_MS);
  }, []);

  return html`
    <section aria-labelledby="inbox-title" class="inbox">
      <h1 id="inbox-title">Inbox</h1>
      <${FilterBar} session=${session} filters=${filters} stats=${stats} />
      ${statsProblem && html`<p class="error">Counts unavailable: ${statsProblem}</p>`}
      <${Queue} key=${search} session=${session} filters=${filters} onChange=${changed} />
    </section>`;
}

function Sla({ row, now }) {
  if (row.status === "resolved") return html`<span class="muted">—</span>`;
  const left = (Date.parse(row.due_at) - now) / 1000;
  if (left > 0) return html`<span class="sla">in ${duration(left)}</span>`;
  return html`<span class="sla sla-breach"><span aria-hidden="true">⚠ </span>Breached ${duration(-left)} ago</span>`;
}

function Row({ row, now, active, selectable, selected, onSelect, onActive }) {
  return html`
    <tr
      class=${`${active ? "active " : ""}sev-row-${row.severity}`}
      data-issue=${row.issue_id}
      onfocusin=${() => onActive(row.issue_id)}
    >
      ${selectable && html`
        <td class="pick">
          <input type="checkbox" checked=${selected} aria-label=${`Select ${row.order_id}`}
            onChange=${(event) => onSelect(row.issue_id, event.currentTarget.checked)} />
        </td>`}
      <td><span class=${`sev sev-${row.severity}`}>${row.severity}</span></td>
      <td>${humanise(row.kind)}</td>
      <th scope="row" class="order">
        <${Link} href=${`/issues/${encodeURIComponent(row.issue_id)}`} id=${`open-${row.issue_id}`}>${row.order_id}<//>
      </th>
      <td>${humanise(row.vertical)}</td>
      <td>${row.city}</td>
      <td>${row.country}</td>
      <td class="when">${age(row.detected_at, now)}</td>
      <td class="when"><${Sla} row=${row} now=${now} /></td>
      <td>${row.assignee || html`<span class="muted">unassigned</span>`}</td>
      <td>${label(row.status)}</td>
    </tr>`;
}

function Results({ results, onDismiss }) {
  if (!results) return null;
  const failed = results.items.filter((item) => item.kind !== "ok").length;
  return html`
    <section class="results" aria-labelledby="results-title">
      <h2 id="results-title">
        ${results.title}: ${results.items.length - failed} ok${failed ? `, ${failed} not done` : ""}
      </h2>
      <ul data-testid="results">
        ${results.items.map((item) => html`
          <li key=${item.row.issue_id} class=${`result result-${item.kind}`}>
            <span class="result-order">${item.row.order_id}</span>: ${item.text}
          </li>`)}
      </ul>
      <button type="button" class="quiet" onClick=${onDismiss}>Dismiss results</button>
    </section>`;
}

function Queue({ session, filters, onChange }) {
  const rowsRef = useRef(null);
  if (rowsRef.current === null) rowsRef.current = emptyRows();
  const rows = rowsRef.current;
  const [revision, setRevision] = useState(0);
  const [loaded, setLoaded] = useState(false);
  const [failure, setFailure] = useState(null);
  const [more, setMore] = useState({ busy: false, problem: null });
  const [live, setLive] = useState("connecting");
  const [now, setNow] = useState(serverNow);
  const [activeId, setActiveState] = useState(null);
  // The keys may come faster than renders: they read the active row from here.
  const activeRef = useRef(null);
  const setActiveId = useCallback((issueId) => {
    activeRef.current = issueId;
    setActiveState(issueId);
  }, []);
  const [selected, setSelected] = useState(() => new Set());
  const [message, setMessage] = useState("");
  const [results, setResults] = useState(null);
  const [resolving, setResolving] = useState(null); // {targets, bulk}
  const [helping, setHelping] = useState(false);
  const [agent, setAgent] = useState("");
  const focusNext = useRef(false);
  const lastIndex = useRef(0);
  const frame = useRef(0);

  // One render per frame however many changes arrive (a burst after a reconnect).
  const bump = useCallback(() => {
    if (frame.current) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = 0;
      setRevision((n) => n + 1);
    });
  }, []);

  useEffect(() => {
    const abort = new AbortController();
    let closeStream = null;
    let reopen = 0;
    const connect = () => {
      // From the newest position the feed (or the first page) has given.
      closeStream = openStream(streamQuery(filters, rows.fed), {
        onIssue(issue) {
          fedTo(rows, issue.position);
          if (upsert(rows, issue, filters)) bump();
          onChange(issue.position);
        },
        onLeft(left) {
          fedTo(rows, left.position);
          if (drop(rows, left)) {
            setSelected((was) => {
              if (!was.has(left.issue_id)) return was;
              const next = new Set(was);
              next.delete(left.issue_id);
              return next;
            });
            bump();
          }
          onChange(left.position);
        },
        onStatus(status) {
          setLive(status);
          if (status === "closed") {
            // The browser gave up (the server refused a reconnect): start again where the
            // feed was, a little later.
            closeStream();
            reopen = setTimeout(connect, REOPEN_MS);
          }
        },
      });
    };
    (async () => {
      try {
        const query = { ...filters, limit: PAGE_SIZE };
        const page = await (prefetched("/api/issues", query) ?? get("/api/issues", query, { signal: abort.signal }));
        addPage(rows, page.data, filters);
        fedTo(rows, pagePosition(page.data, page.headers.get("Inbox-Position")));
        setLoaded(true);
        setRevision((n) => n + 1);
        connect();
      } catch (error) {
        if (error.name !== "AbortError") setFailure(problem(error));
      }
    })();
    const clock = setInterval(() => setNow(serverNow()), 1000);
    return () => {
      abort.abort();
      clearInterval(clock);
      clearTimeout(reopen);
      cancelAnimationFrame(frame.current);
      if (closeStream) closeStream();
    };
  }, []);

  const shown = useMemo(() => visible(rows), [revision]);
  const canTriage = mayTriage(session);
  const canBulk = mayBulk(session);

  // The active row: the one the keys act on; when it leaves, its neighbour takes its place.
  let active = shown.find((row) => row.issue_id === activeId);
  if (!active && activeId !== null && shown.length) active = shown[Math.min(lastIndex.current, shown.length - 1)];
  const activeIndex = active ? shown.indexOf(active) : -1;
  if (activeIndex >= 0) lastIndex.current = activeIndex;

  // Focus follows the keys; and when the active row left with the focus on it, its
  // neighbour takes both.
  const replaced = Boolean(active) && active.issue_id !== activeId;
  useEffect(() => {
    if (!active) return;
    if (replaced) setActiveId(active.issue_id);
    // The newest active row (a key pressed before this render's effect ran may have moved
    // it on), not this render's: else the older one takes focus, and the active row back.
    const link = document.getElementById(`open-${activeRef.current}`);
    if (link && (focusNext.current || (replaced && document.activeElement === document.body))) {
      focusNext.current = false;
      link.focus();
      link.closest("tr")?.scrollIntoView({ block: "nearest" });
    }
  });

  async function loadMore() {
    setMore({ busy: true, problem: null });
    // Read at least as new as the feed is (the rows' `gone` relies on it).
    const since = reading(rows, true);
    try {
      const query = { ...filters, limit: PAGE_SIZE, cursor: rows.cursor, min_position: since || undefined };
      const page = await get("/api/issues", query);
      addPage(rows, page.data, filters);
      setRevision((n) => n + 1);
      setMore({ busy: false, problem: null });
    } catch (error) {
      setMore({ busy: false, problem: problem(error) });
    } finally {
      reading(rows, false);
    }
  }

  // Commands go one after another, each with the version the row shows when it is sent
  // (so "m" then "a" in quick succession is not a conflict with oneself).
  const chain = useRef(Promise.resolve());
  function act(name, targets, options = {}, bulk = false) {
    const ids = targets.map((row) => row.issue_id);
    chain.current = chain.current.then(() =>
      run(name, ids.map((id, n) => rows.byId.get(id) || targets[n]), options, bulk).catch((error) =>
        setMessage(`Could not ${label(name)}: ${error.message}`),
      ),
    );
  }

  async function run(name, targets, options, bulk) {
    if (!targets.length) return;
    if (!canTriage) {
      setMessage(`A ${session.role} cannot change issues.`);
      return;
    }
    setMessage(`Sending ${name} for ${targets.length === 1 ? targets[0].order_id : `${targets.length} issues`}…`);
    const outcomes = await sendAll(targets, name, options);
    for (const outcome of outcomes) {
      if (outcome.fresh) upsert(rows, outcome.fresh, filters);
    }
    setRevision((n) => n + 1);
    onChange();
    if (bulk) {
      setResults({ title: `${label(name)} ${targets.length} issues`, items: outcomes });
      setMessage(`${label(name)}: done, see the results.`);
    } else {
      const [one] = outcomes;
      setMessage(`${one.row.order_id}: ${one.text}${one.kind === "conflict" ? " — the row shows its current state now; try again" : ""}`);
    }
  }

  const selectedRows = () => shown.filter((row) => selected.has(row.issue_id));
  const select = (issueId, on) =>
    setSelected((was) => {
      const next = new Set(was);
      if (on) next.add(issueId);
      else next.delete(issueId);
      return next;
    });
  const allSelected = shown.length > 0 && shown.every((row) => selected.has(row.issue_id));
  const selectAll = (on) => setSelected(on ? new Set(shown.map((row) => row.issue_id)) : new Set());

  // The keys; read through a ref so the one listener sees this render's state.
  const keys = useRef(null);
  keys.current = (event) => {
    if (!shortcutsOn() || event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.querySelector("dialog[open]") || typing(event)) return;
    const current = shown.find((row) => row.issue_id === activeRef.current) || active;
    const at = current ? shown.indexOf(current) : -1;
    const move = (by) => {
      if (!shown.length) return;
      const from = at < 0 ? (by > 0 ? -1 : shown.length) : at;
      const next = shown[Math.max(0, Math.min(shown.length - 1, from + by))];
      focusNext.current = true;
      setActiveId(next.issue_id);
    };
    const open = () => current && navigate(`/issues/${encodeURIComponent(current.issue_id)}`);
    const handlers = {
      j: () => move(1),
      ArrowDown: () => move(1),
      k: () => move(-1),
      ArrowUp: () => move(-1),
      o: open,
      Enter: () => {
        if (!(event.target instanceof Element) || !event.target.closest("a, button")) open();
        else return false; // a link or button does its own thing
      },
      m: () => current && act("assign", [current]),
      a: () => current && act("acknowledge", [current]),
      s: () => current && act("snooze", [current]),
      r: () => current && canTriage && setResolving({ targets: [current], bulk: false }),
      x: () => current && canBulk && select(current.issue_id, !selected.has(current.issue_id)),
      "?": () => setHelping(true),
    };
    const handler = handlers[event.key];
    if (handler && handler() !== false) event.preventDefault();
  };
  useEffect(() => {
    const listener = (event) => keys.current(event);
    document.addEventListener("keydown", listener);
    return () => document.removeEventListener("keydown", listener);
  }, []);

  const liveText = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", closed: "Offline, retrying…" }[live] || live;
  const columns = 10 + (canBulk ? 1 : 0);

  return html`
    <div class="queue">
      <div class="queue-bar">
        <span class=${`live-state live-${live}`} role="status" data-testid="live">
          <span aria-hidden="true" class="dot"></span>${liveText}
        </span>
        <button type="button" class="quiet" onClick=${() => setHelping(true)} aria-keyshortcuts="?">Keyboard shortcuts</button>
        <p class="message" role="status" data-testid="message">${message}</p>
      </div>
      ${canBulk && html`
        <section class="bulk" aria-label="Bulk actions">
          <span data-testid="selected-count">${selected.size} selected</span>
          <button type="button" disabled=${!selected.size} onClick=${() => act("assign", selectedRows(), {}, true)}>Assign to me</button>
          <span class="assign-other">
            <label for="bulk-agent">Agent id</label>
            <input id="bulk-agent" value=${agent} maxLength="200" autocomplete="off"
              onInput=${(event) => setAgent(event.currentTarget.value)} />
            <button type="button" disabled=${!selected.size || !agent.trim()}
              onClick=${() => act("assign", selectedRows(), { assignee: agent.trim() }, true)}>Assign to agent</button>
          </span>
          <button type="button" disabled=${!selected.size} onClick=${() => act("acknowledge", selectedRows(), {}, true)}>Acknowledge</button>
          <button type="button" disabled=${!selected.size} onClick=${() => setResolving({ targets: selectedRows(), bulk: true })}>Resolve…</button>
          <button type="button" class="quiet" disabled=${!selected.size} onClick=${() => selectAll(false)}>Clear selection</button>
        </section>`}
      <${Results} results=${results} onDismiss=${() => setResults(null)} />
      ${failure && html`<p class="error" role="alert">The inbox could not be loaded: ${failure}</p>`}
      ${!failure && !loaded && html`<p class="loading" role="status">Loading issues…</p>`}
      ${loaded && html`
        <div class="table-wrap" role="region" aria-labelledby="queue-caption" tabindex="0">
          <table class="issues">
            <caption id="queue-caption">
              Issues, most urgent first: ${shown.length} shown${rows.cursor ? ", more to load" : ""}
            </caption>
            <thead>
              <tr>
                ${canBulk && html`
                  <th scope="col" class="pick">
                    <input type="checkbox" aria-label="Select all visible issues" checked=${allSelected}
                      onChange=${(event) => selectAll(event.currentTarget.checked)} />
                  </th>`}
                <th scope="col">Severity</th>
                <th scope="col">Kind</th>
                <th scope="col">Order</th>
                <th scope="col">Vertical</th>
                <th scope="col">City</th>
                <th scope="col">Country</th>
                <th scope="col">Age</th>
                <th scope="col">SLA</th>
                <th scope="col">Assignee</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              ${shown.map((row) => html`
                <${Row} key=${row.issue_id} row=${row} now=${now} active=${active === row}
                  selectable=${canBulk} selected=${selected.has(row.issue_id)}
                  onSelect=${select} onActive=${setActiveId} />`)}
              ${!shown.length && html`<tr><td colspan=${columns} class="empty">No issues match these filters.</td></tr>`}
            </tbody>
          </table>
        </div>
        ${rows.cursor && html`
          <p class="more">
            <button type="button" onClick=${loadMore} disabled=${more.busy}>${more.busy ? "Loading…" : "Load more"}</button>
            ${more.problem && html`<span class="error" role="alert"> Could not load more: ${more.problem}</span>`}
          </p>`}`}
      ${resolving && html`
        <${ResolveDialog} count=${resolving.targets.length}
          onResolve=${(choice) => { const { targets, bulk } = resolving; setResolving(null); act("resolve", targets, choice, bulk); }}
          onClose=${() => { setResolving(null); focusNext.current = true; }} />`}
      ${helping && html`<${HelpDialog} snooze=${duration(SNOOZE_SECONDS)} bulk=${canBulk} onClose=${() => setHelping(false)} />`}
    </div>`;
}
