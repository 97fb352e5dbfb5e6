// The dashboard's charts: Chart.js (vendored, a UMD script: loaded once with a script
// element, then window.Chart), each drawn on a canvas that says what it shows (role="img",
// aria-label) next to the same numbers as a table.
import { html, useEffect, useRef } from "./html.js";

let loading;

// Chart.js, loaded on first use (CSP: a script file of this origin, no inline code).
export function loadChart() {
  if (window.Chart) return Promise.resolve(window.Chart);
  loading ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "/static/vendor/chart.umd.min.js";
    script.onload = () => resolve(window.Chart);
    script.onerror = () => {
      loading = undefined;
      script.remove();
      reject(new Error("the chart library did not load"));
    };
    document.head.append(script);
  });
  return loading;
}

// Colours with at least 3:1 contrast on white, one per series (the kinds of issue).
export const PALETTE = [
  "#1d4ed8", "#b91c1c", "#047857", "#7c3aed", "#b45309", "#0e7490",
  "#be185d", "#4d7c0f", "#6d28d9", "#9a3412", "#374151",
];

// One chart: `config` is a Chart.js configuration (drawn again when it changes); `table` is
// the same data as a table, for screen readers and whoever wants the numbers.
export function ChartFigure({ id, title, summary, config, table, open = false }) {
  const canvas = useRef(null);
  useEffect(() => {
    if (!config || !window.Chart) return undefined;
    const chart = new window.Chart(canvas.current, {
      ...config,
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        ...config.options,
      },
    });
    return () => chart.destroy();
  }, [config]);
  return html`
    <figure class="chart" aria-labelledby=${`${id}-title`} data-testid=${id}>
      <h2 id=${`${id}-title`}>${title}</h2>
      <div class="chart-box">
        <canvas ref=${canvas} role="img" aria-label=${summary}></canvas>
      </div>
      <details open=${open}>
        <summary>${title}: the numbers</summary>
        <div class="table-scroll" tabindex="0" role="region" aria-label=${`${title}: the numbers`}>
          ${table}
        </div>
      </details>
    </figure>`;
}
