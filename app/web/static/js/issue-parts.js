// Pieces of the issue page that only show what the API returned: a definition list of any
// object (evidence, facts, event data), the SLA, the timeline of the issue's history.
// Everything from the API goes into the page as text (htm makes text nodes).
import { age, dateTime, duration, label } from "./format.js";
import { html } from "./html.js";

// A value as text: nested objects and lists as JSON, times as they were sent.
export function text(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// An object as a definition list, its keys and values as text.
export function Definitions({ value, className = "facts", empty = "Nothing recorded." }) {
  const entries = value && typeof value === "object" && !Array.isArray(value) ? Object.entries(value) : [];
  if (!entries.length) return html`<p class="help">${empty}</p>`;
  return html`<dl class=${className}>
    ${entries.map(([key, one]) => html`<div><dt>${label(key)}</dt><dd>${text(one)}</dd></div>`)}
  </dl>`;
}

// When the SLA falls due, and whether it was missed.
export function Sla({ issue, now }) {
  const due = Date.parse(issue.due_at);
  const until = (due - now) / 1000;
  if (issue.status === "resolved") {
    const late = Date.parse(issue.resolved_at) > due;
    return html`<span class=${late ? "sla breached" : "sla"}>${dateTime(issue.due_at)} · ${late ? "resolved after breach" : "met"}</span>`;
  }
  if (until < 0) {
    return html`<span class="sla breached" data-testid="sla">Breached ${duration(until)} ago (due ${dateTime(issue.due_at)})</span>`;
  }
  return html`<span class="sla" data-testid="sla">Due in ${duration(until)} (${dateTime(issue.due_at)})</span>`;
}

// Who did it: the name when the API sends one, else the id.
export function actor(data) {
  if (!data) return "—";
  if (data.by_name && data.by_name !== data.by) return `${data.by_name} (${data.by})`;
  return data.by ?? "—";
}

const SAID = { note_added: ["text"], reopened: ["reason"], resolved: ["note"] };
// Who did it is in the entry's head; what every event of the issue repeats, in its facts.
const HIDDEN = new Set(["by", "by_name", "order_id", "kind", "vertical", "country", "city"]);
// Shown in a part of their own: the evidence, an action's details, the detector's rule.
const SHOWN_APART = new Set(["evidence", "details", "rule"]);
// Values that are names of the contract (action kinds, resolutions): shown as words.
const NAMED = new Set(["action", "resolution", "resolved_by", "previous_status"]);

// The SLA table a detected event records ({low: 60, ...}) as one line: "low 60 min · …".
function slaLine(value) {
  if (!value || typeof value !== "object" || Array.isArray(value)) return value;
  return Object.entries(value).map(([severity, minutes]) => `${severity} ${text(minutes)} min`).join(" · ");
}

// The rule behind an event the detector caused (its data's `rule`, where recorded): which
// rule of which rules version, and the tier that fired, e.g. "rule prescription_check_pending,
// tier ≥ 10 min → medium, rules 9cc5e3a…" (the whole version on hover and in data-version).
// Nothing for an event without one (a person's, or one recorded before rules were).
const COUNTED = { courier_reassigned_repeatedly: "unassignments" }; // the rest count minutes

function RuleRecord({ rule }) {
  if (!rule || typeof rule !== "object" || Array.isArray(rule)) return null;
  const tier = rule.tier && typeof rule.tier === "object" ? rule.tier : null;
  const version = rule.version == null ? "" : String(rule.version);
  const short = version.length > 7 ? `${version.slice(0, 7)}…` : version;
  const unit = COUNTED[rule.name] ?? "min";
  return html`<p class="rule" data-testid="rule" data-version=${version}>
    rule <code>${text(rule.name)}</code>${tier && `, tier ≥ ${text(tier.threshold)} ${unit} → ${text(tier.severity)}`}${version && html`, rules <code title=${version}>${short}</code>`}${rule.reason && ` · ${text(rule.reason)}`}
  </p>`;
}

function EventData({ event }) {
  const data = event.data || {};
  const said = (SAID[event.type] || []).filter((key) => data[key]);
  // An action's details: the page sends {text}; another client may send any object.
  const given = data.details && typeof data.details === "object" ? Object.keys(data.details) : [];
  const details = !given.length ? null
    : given.length === 1 && typeof data.details.text === "string" ? { details: data.details.text } : data.details;
  const rest = Object.fromEntries(
    Object.entries(data)
      .filter(([key]) => !HIDDEN.has(key) && !said.includes(key) && !SHOWN_APART.has(key))
      .map(([key, value]) => [key, NAMED.has(key) ? label(value) : key === "sla_minutes" ? slaLine(value) : value]),
  );
  return html`
    ${said.map((key) => html`<p class="said" data-testid="said">${text(data[key])}</p>`)}
    <${RuleRecord} rule=${data.rule} />
    ${Object.keys(rest).length > 0 && html`<${Definitions} value=${rest} className="facts small" />`}
    ${data.evidence && html`<details class="more"><summary>Evidence</summary>
      <${Definitions} value=${data.evidence} className="facts small" /></details>`}
    ${details && html`<${Definitions} value=${details} className="facts small" />`}`;
}

// The issue's history, oldest first; auditors may open the state at each entry.
export function Timeline({ events, current, onInspect }) {
  if (!events.length) return html`<p class="help">No history.</p>`;
  return html`<ol class="timeline" data-testid="timeline">
    ${events.map((event) => html`
      <li class=${current === event.version ? "entry current" : "entry"} key=${event.position}>
        <div class="entry-head">
          <strong class="what">${label(event.type)}</strong>
          <span class="by">by ${actor(event.data)}</span>
          <time datetime=${event.occurred_at} title=${dateTime(event.occurred_at)}>${dateTime(event.occurred_at)} · ${age(event.occurred_at)} ago</time>
          <span class="version">v${event.version}</span>
          ${onInspect && html`<button type="button" class="quiet small" onClick=${() => onInspect(event.version)}
            aria-label=${`State at version ${event.version}`}>State at v${event.version}</button>`}
        </div>
        <${EventData} event=${event} />
      </li>`)}
  </ol>`;
}
