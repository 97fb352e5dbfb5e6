// The inbox's two dialogs, native <dialog> opened modal (focus kept inside, Esc closes).
import { html, useEffect, useRef, useState } from "./html.js";
import { label } from "./format.js";
import { RESOLUTIONS } from "./inbox-model.js";

function useModal(onClose) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    dialog.showModal();
    dialog.addEventListener("close", onClose);
    return () => dialog.removeEventListener("close", onClose);
  }, []);
  return ref;
}

export function ResolveDialog({ count, onResolve, onClose }) {
  const ref = useModal(onClose);
  const [resolution, setResolution] = useState("fixed");
  const [note, setNote] = useState("");
  const submit = (event) => {
    event.preventDefault();
    onResolve({ resolution, note: note.trim() });
  };
  return html`
    <dialog ref=${ref} class="dialog" aria-labelledby="resolve-title">
      <form onSubmit=${submit}>
        <h2 id="resolve-title">Resolve ${count === 1 ? "this issue" : `${count} issues`}</h2>
        <label for="resolve-resolution">Resolution</label>
        <select id="resolve-resolution" value=${resolution} onChange=${(event) => setResolution(event.currentTarget.value)}>
          ${RESOLUTIONS.map((value) => html`<option value=${value}>${label(value)}</option>`)}
        </select>
        <label for="resolve-note">Note (optional)</label>
        <input id="resolve-note" value=${note} maxLength="4000" autocomplete="off"
          onInput=${(event) => setNote(event.currentTarget.value)} />
        <div class="dialog-buttons">
          <button type="submit">Resolve</button>
          <button type="button" class="quiet" onClick=${() => ref.current.close()}>Cancel</button>
        </div>
      </form>
    </dialog>`;
}

export function HelpDialog({ snooze, bulk, onClose }) {
  const ref = useModal(onClose);
  const keys = [
    ["j or ↓", "next issue"],
    ["k or ↑", "previous issue"],
    ["Enter or o", "open the issue"],
    ["m", "assign to me"],
    ["a", "acknowledge"],
    ["s", `snooze for ${snooze}`],
    ["r", "resolve (choose a resolution)"],
    ...(bulk ? [["x", "select or unselect for bulk actions"]] : []),
    ["?", "this help"],
    ["Esc", "close a dialog"],
  ];
  return html`
    <dialog ref=${ref} class="dialog" aria-labelledby="help-title">
      <h2 id="help-title">Keyboard shortcuts</h2>
      <table class="keys">
        <caption class="visually-hidden">Keys and what they do</caption>
        <thead><tr><th scope="col">Key</th><th scope="col">Does</th></tr></thead>
        <tbody>
          ${keys.map(([key, does]) => html`<tr key=${key}><td><kbd>${key}</kbd></td><td>${does}</td></tr>`)}
        </tbody>
      </table>
      <p class="help">Keys act on the highlighted row; they do nothing while you type in a field.</p>
      <div class="dialog-buttons">
        <button type="button" onClick=${() => ref.current.close()}>Close</button>
      </div>
    </dialog>`;
}
