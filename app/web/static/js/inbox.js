// The inbox: the queue of issues, live (a stub until the inbox page lands).
import { html } from "./html.js";

export function Inbox({ session }) {
  return html`<section aria-labelledby="inbox-title"><h1 id="inbox-title">Inbox</h1></section>`;
}
