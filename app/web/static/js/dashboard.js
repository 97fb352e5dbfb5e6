// How detection is doing, for leads (a stub until the dashboard lands).
import { html } from "./html.js";

export function Dashboard({ session }) {
  return html`<section aria-labelledby="dashboard-title"><h1 id="dashboard-title">Detection</h1></section>`;
}
