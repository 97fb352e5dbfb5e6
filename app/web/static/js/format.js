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

export function age(iso, now = Date.now()) {
  return duration((now - Date.parse(iso)) / 1000);
}

export function dateTime(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

// "in_progress" → "in progress"
export function label(value) {
  return value == null ? "" : String(value).replaceAll("_", " ");
}
