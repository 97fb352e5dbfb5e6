// The pages' keyboard shortcuts: whether they are on (WCAG 2.1.4: a person may turn the
// single-key ones off, e.g. for speech input, where a spoken word would fire them), and
// whether a key press is typing into a field rather than a command.

const STORED = "inbox.single-key-shortcuts";

function stored() {
  try {
    return localStorage.getItem(STORED) !== "off";
  } catch (error) {
    console.warn(`Shortcuts setting not readable (${error.message}): on`);
    return true;
  }
}

let on = stored();

// On unless switched off in this browser (kept in localStorage; in this tab if it cannot be).
export function shortcutsOn() {
  return on;
}

export function setShortcutsOn(value) {
  on = Boolean(value);
  try {
    localStorage.setItem(STORED, on ? "on" : "off");
  } catch (error) {
    console.warn(`Shortcuts setting not kept (${error.message}): for this tab only`);
  }
}

// A key typed into a text field, a list or editable text is text, not a command; on a
// checkbox, radio or button it is a command (they take no characters).
export function typing(event) {
  const target = event.target;
  if (!(target instanceof Element)) return false;
  if (target instanceof HTMLElement && target.isContentEditable) return true;
  if (target.closest("textarea, select")) return true;
  const input = target.closest("input");
  return Boolean(input) && !["checkbox", "radio", "button", "submit", "reset"].includes(input.type);
}
