// What a person may do to one issue: only the commands its status allows and the role may
// send (CONTRACT §3, §6). Each goes through `run(command, body)`, which sends it with
// If-Match of the version shown and says whether it was taken. What was typed lives in
// `drafts` (the page's), so a conflict or a form that comes and goes never loses it.
import { label, serverNow } from "./format.js";
import { ACTIONS, RESOLUTIONS } from "./vocabulary.js";
import { html } from "./html.js";

export const MAX_TEXT = 4000; // domain.values.MAX_TEXT_LENGTH

const TRIAGE = new Set(["agent", "lead", "admin"]);
const LEADS = new Set(["lead", "admin"]);

// Which commands the issue's status and the caller's role allow now.
export function allowed(issue, session) {
  const none = {};
  if (!issue || !TRIAGE.has(session.role)) return none;
  const resolved = issue.status === "resolved";
  return {
    assignMe: !resolved && issue.assignee !== session.sub,
    assignOther: !resolved && LEADS.has(session.role),
    unassign: !resolved && LEADS.has(session.role) && issue.assignee != null,
    acknowledge: issue.status === "open",
    wake: issue.status === "snoozed",
    note: true,
    action: !resolved,
    snooze: !resolved,
    resolve: !resolved,
    reopen: resolved,
  };
}

// Snooze times are on the server's clock (in a demo, order time), which judges them.
function later(hours) {
  return new Date(serverNow() + hours * 3600 * 1000);
}

function tomorrowMorning() {
  const when = new Date(serverNow());
  when.setDate(when.getDate() + 1);
  when.setHours(9, 0, 0, 0);
  return when;
}

// A time as a datetime-local field writes it (the browser's time zone, to the minute).
function fieldTime(ms) {
  const when = new Date(ms);
  const two = (n) => String(n).padStart(2, "0");
  return `${when.getFullYear()}-${two(when.getMonth() + 1)}-${two(when.getDate())}T${two(when.getHours())}:${two(when.getMinutes())}`;
}

export const SNOOZES = [
  ["1 h", () => later(1)],
  ["4 h", () => later(4)],
  ["Tomorrow 09:00", tomorrowMorning],
];

function Field({ id, name, children }) {
  return html`<div class="field"><label for=${id}>${name}</label>${children}</div>`;
}

export function Actions({ issue, session, busy, run, drafts, setDraft, refs }) {
  const may = allowed(issue, session);
  if (!Object.keys(may).length) {
    return html`<p class="help" data-testid="no-actions">Your role (${session.role}) reads issues; it does not act on them.</p>`;
  }
  const draft = (name) => drafts[name] ?? "";
  const input = (name) => (event) => setDraft(name, event.currentTarget.value);
  const submit = (handler) => async (event) => {
    event.preventDefault();
    await handler();
  };
  const clearing = (names) => (done) => {
    if (done) for (const name of names) setDraft(name, "");
  };

  const note = () => run("notes", { text: draft("note") }, "Note added").then(clearing(["note"]));
  const action = () => {
    const details = draft("details").trim();
    return run("actions", { action: draft("action") || ACTIONS[0], details: details ? { text: details } : {} }, "Action recorded")
      .then(clearing(["details"]));
  };
  const snoozeUntil = () => {
    const until = new Date(draft("until"));
    return run("snooze", { until: until.toISOString() }, "Snoozed").then(clearing(["until"]));
  };
  const resolve = () =>
    run("resolve", { resolution: draft("resolution"), note: draft("resolveNote") }, "Resolved").then(
      clearing(["resolution", "resolveNote"]),
    );
  const reopen = () => run("reopen", { reason: draft("reason") }, "Reopened").then(clearing(["reason"]));
  const assignOther = () => run("assign", { assignee: draft("assignee").trim() }, "Assigned").then(clearing(["assignee"]));

  return html`
    <div class="actions" data-testid="actions">
      <div class="buttons">
        ${may.assignMe && html`<button type="button" disabled=${busy} ref=${refs.assign}
          onClick=${() => run("assign", {}, "Assigned to you")}>Assign to me</button>`}
        ${may.acknowledge && html`<button type="button" disabled=${busy} ref=${refs.acknowledge}
          onClick=${() => run("acknowledge", {}, "Acknowledged")}>Acknowledge</button>`}
        ${may.wake && html`<button type="button" disabled=${busy} onClick=${() => run("wake", {}, "Woken")}>Wake now</button>`}
        ${may.unassign && html`<button type="button" class="quiet" disabled=${busy}
          onClick=${() => run("unassign", {}, "Unassigned")}>Unassign</button>`}
      </div>

      ${may.assignOther && html`
        <form class="action-form" aria-labelledby="assign-other-title" onSubmit=${submit(assignOther)}>
          <h3 id="assign-other-title">Assign to someone</h3>
          <${Field} id="assignee" name="Agent id">
            <input id="assignee" value=${draft("assignee")} onInput=${input("assignee")} required maxlength="200" autocomplete="off" />
          <//>
          <button type="submit" disabled=${busy || !draft("assignee").trim()}>Assign</button>
        </form>`}

      ${may.note && html`
        <form class="action-form" aria-labelledby="note-title" onSubmit=${submit(note)}>
          <h3 id="note-title">Note</h3>
          <${Field} id="note" name="Note text">
            <textarea id="note" rows="3" maxlength=${MAX_TEXT} value=${draft("note")} onInput=${input("note")}></textarea>
          <//>
          <button type="submit" disabled=${busy || !draft("note").trim()}>Add note</button>
        </form>`}

      ${may.action && html`
        <form class="action-form" aria-labelledby="action-title" onSubmit=${submit(action)}>
          <h3 id="action-title">Action taken</h3>
          <${Field} id="action" name="Action">
            <select id="action" value=${draft("action") || ACTIONS[0]} onChange=${input("action")}>
              ${ACTIONS.map((one) => html`<option value=${one}>${label(one)}</option>`)}
            </select>
          <//>
          <${Field} id="details" name="Details (optional)">
            <input id="details" value=${draft("details")} onInput=${input("details")} maxlength=${MAX_TEXT} autocomplete="off" />
          <//>
          <button type="submit" disabled=${busy}>Record action</button>
        </form>`}

      ${may.snooze && html`
        <form class="action-form" aria-labelledby="snooze-title" onSubmit=${submit(snoozeUntil)}>
          <h3 id="snooze-title">Snooze</h3>
          <div class="buttons" role="group" aria-label="Snooze for">
            ${SNOOZES.map(([name, when], index) => html`
              <button type="button" class="quiet" disabled=${busy} ref=${index === 0 ? refs.snooze : undefined}
                onClick=${() => run("snooze", { until: when().toISOString() }, `Snoozed (${name})`)}>${name}</button>`)}
          </div>
          <${Field} id="until" name="Or until">
            <input id="until" type="datetime-local" min=${fieldTime(serverNow())} value=${draft("until")} onInput=${input("until")} />
          <//>
          <button type="submit" disabled=${busy || !draft("until")}>Snooze until then</button>
        </form>`}

      ${may.resolve && html`
        <form class="action-form" aria-labelledby="resolve-title" onSubmit=${submit(resolve)}>
          <h3 id="resolve-title">Resolve</h3>
          <${Field} id="resolution" name="Resolution">
            <select id="resolution" ref=${refs.resolve} value=${draft("resolution")} onChange=${input("resolution")} required>
              <option value="">Choose…</option>
              ${RESOLUTIONS.map((one) => html`<option value=${one}>${label(one)}</option>`)}
            </select>
          <//>
          <${Field} id="resolve-note" name="Resolution note (optional)">
            <textarea id="resolve-note" rows="2" maxlength=${MAX_TEXT} value=${draft("resolveNote")} onInput=${input("resolveNote")}></textarea>
          <//>
          <button type="submit" disabled=${busy || !draft("resolution")}>Resolve</button>
        </form>`}

      ${may.reopen && html`
        <form class="action-form" aria-labelledby="reopen-title" onSubmit=${submit(reopen)}>
          <h3 id="reopen-title">Reopen</h3>
          <${Field} id="reason" name="Reason">
            <input id="reason" value=${draft("reason")} onInput=${input("reason")} required maxlength=${MAX_TEXT} autocomplete="off" />
          <//>
          <button type="submit" disabled=${busy || !draft("reason").trim()}>Reopen</button>
        </form>`}
    </div>`;
}
