// How times and names are shown on every page.

const units = [
  ["d", 86400],
  ["h", 3600],
  ["min", 60],
  ["s", 1],
];

// 3725 s → "1h 2min" (the two largest units); negative → the same, the caller says "ago".
export function duration(seconds) {
  let rest = Math.abs(Math.round(seconds));
  if (rest < 1) return "0s";
  const parts = [];
  for (const [unit, size] of units) {
    if (rest >= size && parts.length < 2) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join(" ");
}

// The server's clock, as GET and POST /api/session told it: `now` then, and how fast it runs
// (a demo's order time runs faster than the wall clock; 1 in production). Every "now" the
// page computes (ages, SLAs, snooze times) is this one: the server judges by its own.
const clock = { at: Date.now(), received: Date.now(), speed: 1 };

export function setServerClock(session) {
  const at = Date.parse(session?.now);
  const speed = Number(session?.clock_speed);
  clock.received = Date.now();
  clock.at = Number.isFinite(at) ? at : clock.received;
  clock.speed = Number.isFinite(speed) && speed > 0 ? speed : 1;
}

// Milliseconds since the epoch on the server's clock.
export function serverNow() {
  return clock.at + (Date.now() - clock.received) * clock.speed;
}

// How many times faster than the wall clock the server's clock runs.
export function clockSpeed() {
  return clock.speed;
}

// How long ago; a time ahead of now (clocks a moment apart) is "0s", never a positive age.
export function age(iso, now = serverNow()) {
  return duration(Math.max(0, (now - Date.parse(iso)) / 1000));
}

export function dateTime(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

// "in_progress" → "in progress"
export function label(value) {
  return value == null ? "" : String(value).replaceAll("_", " ");
}

// A name of the rules file (a kind of issue, a vertical) as words:
// "prescription_check_pending" → "Prescription check pending".
export function humanise(name) {
  const words = label(name);
  return words.charAt(0).toUpperCase() + words.slice(1);
}
