// One issue: facts, evidence, history, actions (a stub until the issue page lands).
import { html } from "./html.js";

export function Issue({ session, id }) {
  return html`<section aria-labelledby="issue-title"><h1 id="issue-title">Issue ${id}</h1></section>`;
}
