// One issue: its facts, the order's facts and the evidence, the order's other issues, the
// full history, the commands its status allows (each sent with If-Match of the version
// shown), a notice when someone else changes it, and for auditors its state at any version.
import { ApiError, get, post } from "./api.js";
import { clockSpeed, dateTime, humanise, label, serverNow } from "./format.js";
import { html, useCallback, useEffect, useRef, useState } from "./html.js";
import { Actions, allowed } from "./issue-actions.js";
import { AUDIT_ROLES, Audit } from "./issue-audit.js";
import { Definitions, Sla, Timeline, text } from "./issue-parts.js";
import { shortcutsOn, typing } from "./keys.js";
import { openStream } from "./live.js";
import { Link, navigate } from "./router.js";
import { STATUSES } from "./vocabulary.js";

// Every status (domain/values.py): the feed of this order's issues, resolved ones included.

const KEYS = [
  ["m", "assign to me"],
  ["a", "acknowledge"],
  ["s", "snooze"],
  ["r", "resolve"],
  ["u / Esc", "back to the inbox"],
];

function failureText(failure) {
  if (failure instanceof ApiError) {
    const field = failure.body && failure.body.field ? ` (${failure.body.field})` : "";
    return `${failure.message}${field}`;
  }
  return `The inbox cannot be reached (${failure.message}).`;
}

// Everything the page shows of the issue, read so that the issue and the order are at
// least as new as its history: the history comes from the event store, the others from
// read models, asked to catch up with the last position the history holds.
async function read(id, minPosition) {
  const path = `/api/issues/${encodeURIComponent(id)}`;
  const history = (await get(`${path}/events`)).data.items;
  const position = Math.max(minPosition, ...history.map((event) => event.position));
  const shown = await get(path, { min_position: position });
  const issue = shown.data;
  const version = shown.etag ? Number(shown.etag.replace(/^W\//, "").replaceAll('"', "")) : issue.version;
  let order = null;
  let orderProblem = null;
  try {
    order = (await get(`/api/orders/${encodeURIComponent(issue.order_id)}`, { min_position: position })).data;
  } catch (failure) {
    orderProblem = failureText(failure);
  }
  return { issue, version, history, order, orderProblem };
}

// The order's facts the detector has (times as dates), leaving out what has not happened.
function known(facts) {
  const shown = {};
  for (const [key, value] of Object.entries(facts)) {
    if (value === null || value === undefined) continue;
    if (key === "declared") {
      // The latest event of each type the order's vertical declared: when, and its data.
      for (const [type, fact] of Object.entries(value || {})) {
        const data = Object.entries(fact?.data || {}).filter(([, v]) => v !== null && v !== undefined);
        shown[type] = [dateTime(fact?.at), ...data.map(([k, v]) => `${k} ${text(v)}`)].join(" · ");
      }
      continue;
    }
    shown[key] = key.endsWith("_at") && typeof value === "string" ? dateTime(value) : value;
  }
  return shown;
}

export function Issue({ session, id }) {
  const [shown, setShown] = useState(null); // {issue, version, history, order, orderProblem}
  const [missing, setMissing] = useState(null);
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState(null); // {kind: "ok" | "conflict" | "error", text}
  const [stale, setStale] = useState(false);
  const [drafts, setDrafts] = useState({});
  const [now, setNow] = useState(serverNow);
  const [auditVersion, setAuditVersion] = useState(null);
  const [feed, setFeed] = useState({ status: "connecting", heard: 0 }); // the feed, for tests too
  const shownAt = useRef({ version: 0, position: 0 });
  const loadedAt = useRef(0); // the largest position of the history loaded: the feed's start
  const own = useRef({ versions: new Set(), positions: new Set() }); // what our commands made
  const foreign = useRef({ version: 0, position: 0 }); // the newest change heard of others
  const inFlight = useRef(false);
  const heard = useRef([]); // feed items heard while a command of ours was in flight
  const refs = { assign: useRef(null), acknowledge: useRef(null), snooze: useRef(null), resolve: useRef(null) };
  const auditor = AUDIT_ROLES.has(session.role);

  const load = useCallback(
    async (minPosition = 0) => {
      try {
        const fresh = await read(id, minPosition);
        const before = shownAt.current.version;
        shownAt.current = { version: fresh.version, position: fresh.issue.position };
        loadedAt.current = Math.max(loadedAt.current, ...fresh.history.map((event) => event.position));
        setShown(fresh);
        // A change heard while this was read may be newer than what it read.
        const other = foreign.current;
        setStale(other.version > fresh.version || other.position > fresh.issue.position);
        // The auditor's step follows the newest version when it showed the newest.
        setAuditVersion((at) => (at === null || at === before ? fresh.version : Math.min(at, fresh.version)));
        return fresh;
      } catch (failure) {
        if (failure instanceof ApiError && failure.status === 404) setMissing(failure.message);
        else setOutcome({ kind: "error", text: `Could not read the issue: ${failureText(failure)}` });
        return null;
      }
    },
    [id],
  );

  useEffect(() => {
    load();
    // Every 30 s of the server's clock (a demo's runs faster), at most once a second.
    const tick = setInterval(() => setNow(serverNow()), Math.max(1000, 30000 / clockSpeed()));
    return () => clearInterval(tick);
  }, [load]);

  // Someone else's change: a feed item of this issue newer than what is shown that no
  // command of ours made (an `issue` item has the version, a `left` one only the position).
  const judge = useCallback((item) => {
    const seen = shownAt.current;
    const mine = own.current;
    const newer = item.version !== undefined
      ? item.version > seen.version && !mine.versions.has(item.version)
      : item.position > seen.position && !mine.positions.has(item.position);
    if (!newer) return;
    const other = foreign.current;
    foreign.current = {
      version: Math.max(other.version, item.version ?? 0),
      position: Math.max(other.position, item.version === undefined ? item.position : 0),
    };
    setStale(true);
  }, []);
  const orderId = shown?.issue.order_id;
  useEffect(() => {
    if (!orderId) return undefined;
    const heardOf = (item) => {
      if (item.issue_id !== id) return;
      setFeed((was) => ({ ...was, heard: Math.max(was.heard, item.position) }));
      if (inFlight.current) heard.current.push(item);
      else judge(item);
    };
    // From the history the page read, not from the server's head: a change made between
    // the reads and the feed's opening comes through it (then, Last-Event-ID resumes it).
    const after = loadedAt.current > 0 ? loadedAt.current : undefined;
    return openStream({ order_id: orderId, status: STATUSES, after }, {
      onIssue: heardOf,
      onLeft: heardOf,
      onStatus: (status) => setFeed((was) => ({ ...was, status })),
    });
  }, [id, orderId, judge]);

  const run = useCallback(
    async (command, body, done) => {
      if (!shown || inFlight.current) return false; // one command at a time
      setBusy(true);
      setOutcome(null);
      inFlight.current = true;
      let taken = false;
      try {
        const answer = (await post(`/api/issues/${encodeURIComponent(id)}/${command}`, body, { ifMatch: shown.version })).data;
        own.current.versions.add(answer.version);
        own.current.positions.add(answer.position);
        taken = true;
        // Saved; when the page cannot show it yet, load says why.
        if (await load(answer.position)) setOutcome({ kind: "ok", text: `${done}.` });
      } catch (failure) {
        if (failure instanceof ApiError && (failure.status === 412 || failure.status === 409)) {
          const why =
            failure.status === 412
              ? `Someone else changed this issue while you had it open (it is at version ${failure.body?.current_version ?? "newer"}, you saw ${shown.version}).`
              : `That is not allowed in the issue's current state: ${failure.message}.`;
          await load();
          setOutcome({
            kind: "conflict",
            text: `${why} Nothing was saved. The page now shows the issue as it is: check it, then send again (what you typed is kept).`,
          });
        } else {
          setOutcome({ kind: "error", text: `Not saved: ${failureText(failure)}` });
        }
      } finally {
        inFlight.current = false;
        const waiting = heard.current;
        heard.current = [];
        for (const item of waiting) judge(item);
        setBusy(false);
      }
      return taken;
    },
    [id, shown, load, judge],
  );

  // The page's keys, only while it is mounted, never while typing in a field.
  const keyState = useRef({});
  keyState.current = { shown, busy, run };
  useEffect(() => {
    const press = (event) => {
      if (!shortcutsOn() || event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
      const { shown: current, busy: working, run: send } = keyState.current;
      const may = current ? allowed(current.issue, session) : {};
      const focus = (ref) => ref.current && ref.current.focus();
      const key = event.key;
      if (key === "u" || key === "Escape") navigate("/");
      else if (key === "m" && may.assignMe && !working) send("assign", {}, "Assigned to you");
      else if (key === "a" && may.acknowledge && !working) send("acknowledge", {}, "Acknowledged");
      else if (key === "s" && may.snooze) focus(refs.snooze);
      else if (key === "r" && may.resolve) focus(refs.resolve);
      else return;
      event.preventDefault();
    };
    window.addEventListener("keydown", press);
    return () => window.removeEventListener("keydown", press);
  }, [session]);

  const kind = shown?.issue.kind;
  useEffect(() => {
    if (kind) document.title = `Issue ${humanise(kind)} — Support Inbox`;
  }, [kind]);

  const setDraft = useCallback((name, value) => setDrafts((all) => ({ ...all, [name]: value })), []);

  if (missing) {
    return html`<section aria-labelledby="issue-title">
      <h1 id="issue-title">Issue not found</h1>
      <p>${missing}</p>
      <p><${Link} href="/">Back to the inbox<//></p>
    </section>`;
  }
  if (!shown) {
    return html`<section aria-labelledby="issue-title">
      <h1 id="issue-title">Issue</h1>
      ${outcome ? html`<p class="error" role="alert">${outcome.text}</p>` : html`<p role="status">Loading…</p>`}
    </section>`;
  }

  const { issue, version, history, order, orderProblem } = shown;
  const acts = Object.keys(allowed(issue, session)).length > 0;
  const others = (order?.issues || []).filter((one) => one.issue_id !== issue.issue_id);
  const inspect = (n) => {
    setAuditVersion(n);
    document.getElementById("audit-title")?.focus();
  };
  return html`
    <article class="issue-page" aria-labelledby="issue-title">
      <p class="back"><${Link} href="/">← Inbox<//></p>
      <h1 id="issue-title">
        ${humanise(issue.kind)}
        <span class=${`badge severity-${issue.severity}`}>${issue.severity}</span>
        <span class=${`badge status-${issue.status}`} data-testid="status">${label(issue.status)}</span>
      </h1>
      <div class="live-notice" role="status" aria-live="polite" data-testid="changed-notice"
        data-feed=${feed.status} data-heard=${feed.heard}>
        ${stale && html`<p class="notice">Changed by someone else — <button type="button" class="quiet" onClick=${() => load()}>Reload</button></p>`}
      </div>

      <div class="issue-grid">
        <div class="issue-main">
          <section class="panel panel-facts" aria-labelledby="facts-title">
            <h2 id="facts-title">Issue</h2>
            <dl class="facts" data-testid="issue-facts">
              <div><dt>Status</dt><dd>${label(issue.status)}${issue.snoozed_until ? ` until ${dateTime(issue.snoozed_until)}` : ""}</dd></div>
              <div><dt>Severity</dt><dd>${issue.severity}</dd></div>
              <div><dt>Assignee</dt><dd data-testid="assignee">${issue.assignee || "nobody"}</dd></div>
              <div><dt>SLA</dt><dd><${Sla} issue=${issue} now=${now} /></dd></div>
              <div><dt>Vertical</dt><dd>${humanise(issue.vertical)}</dd></div>
              <div><dt>Country</dt><dd>${issue.country}</dd></div>
              <div><dt>City</dt><dd>${issue.city || "—"}</dd></div>
              <div><dt>Order</dt><dd>${issue.order_id}</dd></div>
              <div><dt>Detected</dt><dd>${dateTime(issue.detected_at)}</dd></div>
              <div><dt>Updated</dt><dd>${dateTime(issue.updated_at)}</dd></div>
              ${issue.resolution && html`<div><dt>Resolution</dt><dd>${label(issue.resolution)} (by ${issue.resolved_by})</dd></div>`}
              ${issue.reopen_count > 0 && html`<div><dt>Reopened</dt><dd>${issue.reopen_count}×</dd></div>`}
              <div><dt>Version</dt><dd data-testid="version">${version}</dd></div>
            </dl>
          </section>

          <section class="panel" aria-labelledby="evidence-title">
            <h2 id="evidence-title">Evidence</h2>
            <p class="help">What the detector knows: the thresholds this order crossed.</p>
            <div data-testid="evidence"><${Definitions} value=${issue.evidence} empty="No evidence recorded." /></div>
          </section>

          <section class="panel" aria-labelledby="history-title">
            <h2 id="history-title">History</h2>
            <${Timeline} events=${history} current=${auditor ? auditVersion : null} onInspect=${auditor ? inspect : null} />
          </section>
          <section class="panel" aria-labelledby="order-title">
            <h2 id="order-title">The order</h2>
            ${orderProblem && html`<p class="error">${orderProblem}</p>`}
            ${order && html`
              ${order.facts
                ? html`<div data-testid="order-facts"><${Definitions} value=${known(order.facts)} /></div>`
                : html`<p class="help">The detector has seen no events of this order.</p>`}
              <h3>Other issues of this order</h3>
              ${others.length
                ? html`<ul class="others" data-testid="other-issues">${others.map((one) => html`
                    <li key=${one.issue_id}><${Link} href=${`/issues/${encodeURIComponent(one.issue_id)}`}>${humanise(one.kind)}<//>
                      <span class="help"> · ${one.severity} · ${label(one.status)}</span></li>`)}</ul>`
                : html`<p class="help">None.</p>`}`}
          </section>

        </div>

        <aside class="issue-side" aria-label="Work on this issue">
          <section class="panel panel-actions" aria-labelledby="actions-title">
            <h2 id="actions-title">Actions</h2>
            <div role="status" aria-live="polite" data-testid="outcome-ok">
              ${outcome?.kind === "ok" && html`<p class="ok">${outcome.text}</p>`}
            </div>
            <div role="alert" data-testid="outcome-problem">
              ${outcome && outcome.kind !== "ok" && html`<p class=${outcome.kind === "conflict" ? "notice conflict" : "error"}>${outcome.text}</p>`}
            </div>
            <${Actions} issue=${issue} session=${session} busy=${busy} run=${run} drafts=${drafts} setDraft=${setDraft} refs=${refs} />
          </section>

          <section class="panel keys" aria-labelledby="keys-title">
            <h2 id="keys-title">Keys</h2>
            <dl class="keys-list">
              ${KEYS.filter(([key]) => acts || key.startsWith("u")).map(
                ([key, what]) => html`<div><dt><kbd>${key}</kbd></dt><dd>${what}</dd></div>`,
              )}
            </dl>
          </section>

          ${auditor && auditVersion !== null && html`
            <${Audit} id=${issue.issue_id} latest=${version} version=${auditVersion} setVersion=${setAuditVersion} events=${history} />`}
        </aside>
      </div>
    </article>`;
}
