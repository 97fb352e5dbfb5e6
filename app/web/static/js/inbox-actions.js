// The inbox's commands: each goes to the public API with If-Match of the version the page
// shows, and comes back as an outcome a person can read (ok, conflict, refused, ...).
import { ApiError, get, post } from "./api.js";
import { label, serverNow } from "./format.js";

export const SNOOZE_SECONDS = 3600;

// Who may do what (the API decides; this only hides what would be refused).
export const mayTriage = (session) => ["agent", "lead", "admin"].includes(session.role);
export const mayBulk = (session) => ["lead", "admin"].includes(session.role);

// name → [path suffix, body, what the outcome says when it worked]
export function commandFor(name, options = {}) {
  switch (name) {
    case "assign":
      return ["assign", options.assignee ? { assignee: options.assignee } : {}, options.assignee ? `assigned to ${options.assignee}` : "assigned to you"];
    case "acknowledge":
      return ["acknowledge", {}, "acknowledged"];
    case "snooze":
      return ["snooze", { until: new Date(serverNow() + SNOOZE_SECONDS * 1000).toISOString() }, "snoozed for 1 h"];
    case "resolve":
      return ["resolve", { resolution: options.resolution, note: options.note || "" }, `resolved as ${label(options.resolution)}`];
    default:
      throw new Error(`no command ${name}`);
  }
}

function refusal(error) {
  if (!(error instanceof ApiError)) return { kind: "error", text: `not sent (${error.message})` };
  const detail = error.body && typeof error.body === "object" && error.body.detail ? `: ${error.body.detail}` : "";
  const named = {
    412: "conflict (412): it changed since you saw it",
    409: "refused (409)",
    403: "not allowed (403)",
    404: "gone (404)",
    422: "invalid (422)",
  }[error.status];
  return { kind: error.status === 412 ? "conflict" : "refused", text: (named || `failed (${error.status})`) + (error.status === 412 ? "" : detail) };
}

const FRESH_ATTEMPTS = 4;
const FRESH_PAUSE_MS = 500;
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The issue as the API shows it once the read model has `atLeast` (a version): after a
// command, the version it made; after a conflict, the version the 412 named. The read
// model may lag a moment (503 to min_position, or an older row): asked again a few
// times; null when it could not be read (the live feed brings the change then).
async function freshRow(issueId, { minPosition, atLeast }) {
  for (let attempt = 1; attempt <= FRESH_ATTEMPTS; attempt += 1) {
    try {
      const query = minPosition ? { min_position: minPosition } : {};
      const fresh = (await get(`/api/issues/${encodeURIComponent(issueId)}`, query)).data;
      if (!atLeast || fresh.version >= atLeast) return fresh;
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 503) return null;
    }
    if (attempt < FRESH_ATTEMPTS) await pause(FRESH_PAUSE_MS);
  }
  return null;
}

// Sends one command for a row; resolves to {row, kind: "ok"|"conflict"|"refused"|"error",
// text, fresh}: `fresh` is the issue as the API shows it afterwards (after the command, or
// the newer state that made it conflict), when it could be read.
export async function send(row, name, options = {}) {
  const [path, body, done] = commandFor(name, options);
  let outcome;
  let after = {};
  try {
    const result = await post(`/api/issues/${encodeURIComponent(row.issue_id)}/${path}`, body, { ifMatch: row.version });
    outcome = { kind: "ok", text: done };
    after = { minPosition: result.data.position, atLeast: result.data.version };
  } catch (error) {
    outcome = refusal(error);
    const current = error instanceof ApiError && error.body ? error.body.current_version : undefined;
    if (Number.isInteger(current)) after = { atLeast: current };
  }
  return { row, ...outcome, fresh: await freshRow(row.issue_id, after) };
}

// Many rows, each on its own (one conflict does not stop the others); in the order given.
export async function sendAll(rows, name, options = {}) {
  return Promise.all(rows.map((row) => send(row, name, options)));
}
