// GET /api/stream as EventSource: the browser sends the session cookie, and on a dropped
// connection reconnects by itself with Last-Event-ID, so the feed resumes where it was.
import { url } from "./api.js";

// Opens a feed with the inbox's filters; calls onIssue(issue) for `event: issue` and
// onLeft(left) for `event: left`, onStatus("live" | "reconnecting"). Returns a closer.
export function openStream(query, { onIssue, onLeft, onStatus } = {}) {
  const source = new EventSource(url("/api/stream", query), { withCredentials: true });
  source.addEventListener("issue", (event) => onIssue?.(JSON.parse(event.data)));
  source.addEventListener("left", (event) => onLeft?.(JSON.parse(event.data)));
  source.addEventListener("open", () => onStatus?.("live"));
  source.addEventListener("error", () => onStatus?.(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting"));
  return () => source.close();
}
