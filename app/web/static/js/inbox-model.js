// The inbox's state without the page: its filters as the URL names them (the names and
// values of GET /api/issues), the priority order, and the rows kept by issue_id, each
// change applied once (an issue's row position only grows, so the newer one wins).
import { STATUSES } from "./vocabulary.js";

export { RESOLUTIONS, SEVERITIES, STATUSES } from "./vocabulary.js";

// GET /api/issues's filters, in the order the URL writes them.
export const FILTERS = ["status", "severity", "kind", "vertical", "country", "city", "assignee", "order_id"];
// Without a status filter the inbox leaves resolved issues out (CONTRACT §5).
export const DEFAULT_STATUSES = STATUSES.filter((status) => status !== "resolved");
// The longest a text filter may be (the API's bound on a query text).
export const MAX_FILTER_LENGTH = 200;
export const PAGE_SIZE = 50;

// "?city=Helsinki&status=open&status=snoozed" → {status: ["open", "snoozed"], city: ["Helsinki"], ...}
export function parseFilters(search) {
  const params = new URLSearchParams(search);
  const filters = {};
  for (const name of FILTERS) {
    const values = [...new Set(params.getAll(name).map((value) => value.trim()).filter(Boolean))];
    filters[name] = values;
  }
  return filters;
}

// The inverse: "/?status=open&city=Helsinki" (no "?" when nothing is filtered).
export function filtersHref(filters) {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    for (const value of filters[name] || []) params.append(name, value);
  }
  const query = params.toString();
  return query ? `/?${query}` : "/";
}

// The values a filter of the rules file's names (vertical, kind) offers: the declared ones in
// the rules' order, then, sorted, any the URL chooses or the counts hold that the rules no
// longer declare (a bookmarked view, issues raised under an older file), so each still shows.
export function choices(declared, chosen = [], counts = {}) {
  const known = new Set(declared);
  const others = [...new Set([...chosen, ...Object.keys(counts || {})])].filter((value) => !known.has(value));
  return [...declared, ...others.sort()];
}

// The query of the feed for this view: with the view's statuses spelled out, so that an
// issue resolved (or snoozed out of an "open" view) comes as `event: left`.
export function streamQuery(filters, after) {
  return { ...filters, status: filters.status.length ? filters.status : DEFAULT_STATUSES, after };
}

// Whether a row (as the API shows it) is in the view on the fields that change.
export function inView(row, filters) {
  const statuses = filters.status.length ? filters.status : DEFAULT_STATUSES;
  if (!statuses.includes(row.status)) return false;
  if (filters.severity.length && !filters.severity.includes(row.severity)) return false;
  if (filters.assignee.length && !filters.assignee.includes(row.assignee)) return false;
  return true;
}

// The API's priority sort: priority DESC, detected_at ASC, issue_id ASC.
export function byPriority(a, b) {
  if (a.priority !== b.priority) return b.priority - a.priority;
  const at = Date.parse(a.detected_at) - Date.parse(b.detected_at);
  if (at !== 0) return at;
  return a.issue_id < b.issue_id ? -1 : a.issue_id > b.issue_id ? 1 : 0;
}

// The rows one view holds. `boundary` is the last row of the last page loaded while more
// follow: a live row sorting after it is kept but not shown (the next page brings it in
// its place). `gone` remembers the position at which an issue left, so an older page
// loaded after it cannot bring it back.
//
// `gone` would grow for the tab's life; an entry is needed only while a row older than it
// can still come. The feed brings only positions after `fed` (the newest it has given),
// and every page still to come is asked with min_position of `fed` then (`readingFrom`,
// while one is on its way: it may hold rows as old as that). So an entry at or below both
// is dropped, whenever the map has doubled since the last time (GONE_PRUNE_AT at least).
export const GONE_PRUNE_AT = 1000;

export function emptyRows() {
  return { byId: new Map(), gone: new Map(), boundary: null, cursor: null, fed: 0, readingFrom: null, pruneAt: GONE_PRUNE_AT };
}

// The feed (or a page) has given everything up to `position`.
export function fedTo(rows, position) {
  rows.fed = Math.max(rows.fed, position);
}

// A page is asked for (`on`), with min_position of the returned position; or it came.
export function reading(rows, on) {
  rows.readingFrom = on ? rows.fed : null;
  return rows.fed;
}

function forgetOld(rows) {
  const below = Math.min(rows.fed, rows.readingFrom ?? Infinity);
  for (const [issueId, position] of rows.gone) {
    if (position <= below) rows.gone.delete(issueId);
  }
  rows.pruneAt = Math.max(GONE_PRUNE_AT, 2 * rows.gone.size);
}

function remember(rows, issueId, position) {
  rows.gone.set(issueId, Math.max(position, rows.gone.get(issueId) ?? 0));
  if (rows.gone.size >= rows.pruneAt) forgetOld(rows);
}

function newer(rows, row) {
  const had = rows.byId.get(row.issue_id);
  if (had && had.position >= row.position) return false;
  const left = rows.gone.get(row.issue_id);
  return left === undefined || left < row.position;
}

// Puts a row in (or takes it out when it is not in the view any more); true when it changed.
export function upsert(rows, row, filters) {
  if (!newer(rows, row)) return false;
  if (!inView(row, filters)) {
    const dropped = rows.byId.delete(row.issue_id);
    remember(rows, row.issue_id, row.position);
    return dropped;
  }
  rows.gone.delete(row.issue_id);
  rows.byId.set(row.issue_id, row);
  return true;
}

// `event: left`: the issue is outside the view now.
export function drop(rows, left) {
  const had = rows.byId.get(left.issue_id);
  if (had && had.position > left.position) return false;
  const dropped = rows.byId.delete(left.issue_id);
  remember(rows, left.issue_id, left.position);
  return dropped;
}

// A page of GET /api/issues: its items, and where the next one starts.
export function addPage(rows, page, filters) {
  for (const item of page.items) upsert(rows, item, filters);
  rows.cursor = page.next_cursor;
  rows.boundary = page.next_cursor && page.items.length ? page.items[page.items.length - 1] : null;
}

// Where the feed of a view loaded from this page starts: the page reflects every change
// up to the position its header names, and up to each of its rows' positions (the read
// model applies changes in position order), so nothing after the largest is lost.
export function pagePosition(page, header) {
  const named = /^[0-9]{1,19}$/.test(header || "") ? Number(header) : 0;
  return Math.max(named, ...page.items.map((item) => item.position));
}

// What the table shows, in priority order.
export function visible(rows) {
  const shown = [...rows.byId.values()];
  const inRange = rows.boundary ? shown.filter((row) => byPriority(row, rows.boundary) <= 0) : shown;
  return inRange.sort(byPriority);
}
