// The inbox's commands: each goes to the public API with If-Match of the version the page
// shows, and comes back as an outcome a person can read (ok, conflict, refused, ...).
import { ApiError, get, post } from "./api.js";
import { label } from "./format.js";

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
      return ["snooze", { until: new Date(Date.now() + SNOOZE_SECONDS * 1000).toISOString() }, "snoozed for 1 h"];
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

// Sends one command for a row; resolves to {row, kind: "ok"|"conflict"|"refused"|"error",
// text, fresh}: `fresh` is the issue as the API shows it afterwards (after the command, or
// the newer state that made it conflict), when it could be read.
export async function send(row, name, options = {}) {
  const [path, body, done] = commandFor(name, options);
  let outcome;
  let minPosition;
  try {
    const result = await post(`/api/issues/${encodeURIComponent(row.issue_id)}/${path}`, body, { ifMatch: row.version });
    outcome = { kind: "ok", text: done };
    minPosition = result.data.position;
  } catch (error) {
    outcome = refusal(error);
  }
  let fresh = null;
  try {
    fresh = (await get(`/api/issues/${encodeURIComponent(row.issue_id)}`, minPosition ? { min_position: minPosition } : {})).data;
  } catch {
    fresh = null; // the live feed brings the change; the outcome above is what matters here
  }
  return { row, ...outcome, fresh };
}

// Many rows, each on its own (one conflict does not stop the others); in the order given.
export async function sendAll(rows, name, options = {}) {
  return Promise.all(rows.map((row) => send(row, name, options)));
}
