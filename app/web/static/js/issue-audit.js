// For auditors: the issue as it was at any version (GET /api/issues/{id}/state?version=N),
// stepped through with previous / next, a slider, or an entry of the timeline; each step
// says what that version changed against the one before it.
import { ApiError, get } from "./api.js";
import { dateTime, label } from "./format.js";
import { html, useEffect, useState } from "./html.js";
import { actor, text } from "./issue-parts.js";

export const AUDIT_ROLES = new Set(["auditor", "admin"]);

const SHOWN = [
  "status", "severity", "assignee", "resolution", "resolved_by", "resolved_at", "snoozed_until",
  "reopen_count", "updated_at", "evidence", "notes", "actions",
];

// A field's value as text; times as dates.
function shown(key, value) {
  if (typeof value === "string" && (key.endsWith("_at") || key.endsWith("_until"))) return dateTime(value);
  return text(value);
}

function changes(before, after) {
  if (!after) return [];
  return SHOWN.filter((key) => !before || JSON.stringify(before[key]) !== JSON.stringify(after[key]));
}

export function Audit({ id, latest, version, setVersion, events }) {
  const [states, setStates] = useState({ at: null, before: null });
  const [problem, setProblem] = useState(null);

  useEffect(() => {
    let live = true;
    setProblem(null);
    const at = (n) => get(`/api/issues/${encodeURIComponent(id)}/state`, { version: n }).then((r) => r.data);
    Promise.all([at(version), version > 1 ? at(version - 1) : Promise.resolve(null)])
      .then(([now, before]) => live && setStates({ at: now, before, version }))
      .catch((failure) => {
        if (!live) return;
        setProblem(failure instanceof ApiError ? failure.message : `The inbox cannot be reached (${failure.message}).`);
      });
    return () => {
      live = false;
    };
  }, [id, version]);

  const changed = states.version === version ? changes(states.before, states.at) : [];
  const event = events.find((one) => one.version === version);
  const step = (by) => setVersion(Math.min(latest, Math.max(1, version + by)));
  return html`
    <section class="panel audit" aria-labelledby="audit-title" data-testid="audit">
      <h2 id="audit-title" tabindex="-1">State at a version</h2>
      <div class="stepper">
        <button type="button" class="quiet" disabled=${version <= 1} onClick=${() => step(-1)}>Previous version</button>
        <label for="audit-version">Version</label>
        <input id="audit-version" type="range" min="1" max=${latest} step="1" value=${version}
          onInput=${(e) => setVersion(Number(e.currentTarget.value))} aria-valuetext=${`version ${version} of ${latest}`} />
        <button type="button" class="quiet" disabled=${version >= latest} onClick=${() => step(1)}>Next version</button>
      </div>
      <p role="status" data-testid="audit-version">Version ${version} of ${latest}${event ? ` · ${label(event.type)} by ${actor(event.data)}` : ""}</p>
      ${problem && html`<p class="error" role="alert">${problem}</p>`}
      ${states.at && states.version === version && html`
        <p data-testid="audit-changed">${version === 1 ? "Version 1: the issue was raised." : changed.length ? `Changed: ${changed.map(label).join(", ")}` : "No field shown here changed."}</p>
        <dl class="facts audit-state">
          ${SHOWN.map((key) => html`
            <div class=${changed.includes(key) && version > 1 ? "changed" : ""}>
              <dt>${label(key)}${changed.includes(key) && version > 1 ? " (changed)" : ""}</dt>
              <dd>${shown(key, states.at[key])}${changed.includes(key) && states.before
                ? html`<span class="was"> (was ${shown(key, states.before[key])})</span>` : ""}</dd>
            </div>`)}
        </dl>`}
    </section>`;
}
