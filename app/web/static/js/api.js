// The page's one way to the server: the public JSON API (CONTRACT §5), authenticated by
// the session cookie, with the CSRF token echoed on every change (CONTRACT §6).

export class ApiError extends Error {
  constructor(status, body, headers) {
    const detail = body && typeof body === "object" ? body.detail : undefined;
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.headers = headers;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return undefined;
}

// A URL of this origin with the query's values (arrays repeat the name; empty ones dropped).
export function url(path, query = {}) {
  const result = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== undefined && one !== null && one !== "") result.searchParams.append(name, one);
    }
  }
  return result;
}

// One request; resolves to {status, data, etag, headers}, rejects with ApiError on a 4xx or
// 5xx (a 401 also tells the page the session is gone) and with TypeError when offline.
export async function request(method, path, { query, body, ifMatch, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    const csrf = cookie("csrftoken");
    if (csrf) headers["x-csrftoken"] = csrf;
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (ifMatch !== undefined && ifMatch !== null) headers["If-Match"] = `"${ifMatch}"`;
  const response = await fetch(url(path, query), {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    if (response.status === 401 && path !== "/api/session") {
      window.dispatchEvent(new CustomEvent("inbox:unauthorized"));
    }
    throw new ApiError(response.status, data, response.headers);
  }
  return { status: response.status, data, etag: response.headers.get("ETag"), headers: response.headers };
}

export const get = (path, query, options = {}) => request("GET", path, { ...options, query });

// Reads started before the page's code needs them (main.js, as the first page loads), so
// they run while the modules evaluate and the first render happens: each is taken once,
// by the first read of exactly that path and query within a few seconds; a failed one is
// forgotten (a page that was not logged in asks again once it is).
const early = new Map();
const EARLY_MS = 10_000;

export function prefetch(path, query = {}) {
  const key = url(path, query).href;
  const pending = get(path, query);
  pending.catch(() => {
    if (early.get(key)?.pending === pending) early.delete(key);
  });
  early.set(key, { pending, at: Date.now() });
}

export function prefetched(path, query = {}) {
  const key = url(path, query).href;
  const entry = early.get(key);
  early.delete(key);
  return entry && Date.now() - entry.at < EARLY_MS ? entry.pending : undefined;
}

export const post = (path, body, options = {}) => request("POST", path, { ...options, body });

// The session: who this browser is logged in as (null when it is not).
export async function currentSession() {
  try {
    return (await (prefetched("/api/session") ?? get("/api/session"))).data;
  } catch (error) {
    if (error instanceof ApiError && [401, 404, 405].includes(error.status)) return null;
    throw error;
  }
}

// Log in with a token, or with a one-time ticket from a login link.
export async function startSession(credentials) {
  return (await post("/api/session", credentials)).data;
}

export async function endSession() {
  await request("DELETE", "/api/session");
}
