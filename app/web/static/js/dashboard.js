// How detection is doing, for leads (and auditors): issues raised per hour by kind, the
// detection KPI over time and its lead times, each rule's (and each vertical's) outcomes as
// agents judged them, open issues past their SLA by country. Kinds and verticals are the
// API's keys, so those the rules file adds show as they come. Reads GET /api/detection/{overdue,rules,timeline,kpi};
// the window (?window=24h|7d) is kept in the URL.
import { ApiError, get } from "./api.js";
import { ChartFigure, PALETTE, loadChart } from "./dashboard-charts.js";
import { humanise } from "./format.js";
import { html, useEffect, useMemo, useState } from "./html.js";
import { navigate, useLocation } from "./router.js";

const WINDOWS = {
  "24h": { hours: 24, name: "Last 24 hours" },
  "7d": { hours: 24 * 7, name: "Last 7 days" },
};
const DEFAULT_WINDOW = "24h";

const percent = (share) => (share == null ? "—" : `${Math.round(share * 1000) / 10}%`);
const minutes = (value) => (value == null ? "—" : `${Math.round(value * 10) / 10} min`);

function windowOf(search) {
  const chosen = new URLSearchParams(search).get("window");
  return Object.hasOwn(WINDOWS, chosen ?? "") ? chosen : DEFAULT_WINDOW;
}

// The bucket's start as the chart's axis shows it (the browser's time zone).
function hourLabel(iso, long) {
  const options = long
    ? { weekday: "short", hour: "2-digit", minute: "2-digit" }
    : { hour: "2-digit", minute: "2-digit" };
  return new Date(iso).toLocaleString(undefined, options);
}

async function load(windowName) {
  // The server's clock is the reference (in a demo, order time runs faster than the wall's).
  const overdue = (await get("/api/detection/overdue")).data;
  const until = overdue.at;
  const since = new Date(Date.parse(until) - WINDOWS[windowName].hours * 3600 * 1000).toISOString();
  const query = { since, until };
  const [rules, timeline, kpi] = await Promise.all([
    get("/api/detection/rules", query),
    get("/api/detection/timeline", { ...query, bucket: "hour" }),
    get("/api/detection/kpi", query),
  ]);
  return { overdue, rules: rules.data, timeline: timeline.data, kpi: kpi.data };
}

function Table({ caption, head, rows }) {
  return html`
    <table class="data">
      <caption>${caption}</caption>
      <thead><tr>${head.map((name, n) => html`<th scope="col" class=${n ? "num" : ""}>${name}</th>`)}</tr></thead>
      <tbody>
        ${rows.length === 0 && html`<tr><td colspan=${head.length}>None in this window.</td></tr>`}
        ${rows.map(([first, ...rest]) => html`
          <tr><th scope="row">${first}</th>${rest.map((cell) => html`<td class="num">${cell}</td>`)}</tr>`)}
      </tbody>
    </table>`;
}

function RaisedChart({ timeline, long }) {
  const kinds = Object.keys(timeline.raised);
  const labels = timeline.starts.map((at) => hourLabel(at, long));
  const total = kinds.reduce((sum, kind) => sum + timeline.raised[kind].reduce((a, b) => a + b, 0), 0);
  const config = useMemo(() => ({
    type: "bar",
    data: {
      labels,
      datasets: kinds.map((kind, n) => ({
        label: humanise(kind),
        data: timeline.raised[kind],
        backgroundColor: PALETTE[n % PALETTE.length],
      })),
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
  }), [timeline]);
  const byKind = kinds.map((kind) => `${humanise(kind)} ${timeline.raised[kind].reduce((a, b) => a + b, 0)}`);
  const rows = timeline.starts
    .map((at, n) => [hourLabel(at, long), ...kinds.map((kind) => timeline.raised[kind][n])])
    .filter(([, ...counts]) => counts.some((count) => count > 0));
  return html`<${ChartFigure}
    id="chart-raised"
    title="Issues raised per hour, by kind"
    summary=${`Stacked bars: ${total} issues raised in ${labels.length} hours${byKind.length ? `; ${byKind.join(", ")}` : ""}.`}
    config=${config}
    table=${html`<${Table} caption="Issues raised per hour (hours with none left out)" head=${["Hour", ...kinds.map(humanise)]} rows=${rows} />`}
  />`;
}

function KpiChart({ timeline, kpi, long }) {
  const labels = timeline.starts.map((at) => hourLabel(at, long));
  const config = useMemo(() => ({
    type: "line",
    data: {
      labels,
      datasets: [
        {
          label: "Detected share (%)",
          data: timeline.kpi.map((p) => (p.detected_share == null ? null : p.detected_share * 100)),
          borderColor: PALETTE[0],
          backgroundColor: PALETTE[0],
          spanGaps: true,
          yAxisID: "share",
        },
        {
          label: "Customer contacts",
          data: timeline.kpi.map((p) => p.contacts),
          borderColor: PALETTE[4],
          backgroundColor: PALETTE[4],
          borderDash: [6, 4],
          yAxisID: "contacts",
        },
      ],
    },
    options: {
      scales: {
        share: { type: "linear", position: "left", min: 0, max: 100, title: { display: true, text: "% detected" } },
        contacts: { type: "linear", position: "right", beginAtZero: true, ticks: { precision: 0 }, grid: { drawOnChartArea: false }, title: { display: true, text: "contacts" } },
      },
    },
  }), [timeline]);
  const rows = timeline.kpi
    .map((p, n) => [labels[n], p.contacts, p.detected, p.missed, percent(p.detected_share)])
    .filter(([, contacts]) => contacts > 0);
  return html`<${ChartFigure}
    id="chart-kpi"
    title="Contacts the inbox had already detected"
    summary=${`Line: of ${kpi.detected + kpi.missed} customer contacts about a problem, ${kpi.detected} were detected before the customer called (${percent(kpi.detected_share)}), ${kpi.missed} were missed.`}
    config=${config}
    table=${html`<${Table} caption="Detection KPI per hour (hours without contacts left out)" head=${["Hour", "Contacts", "Detected", "Missed", "Detected share"]} rows=${rows} />`}
  />`;
}

function leadLabel(bucket) {
  return bucket.to_minutes == null ? `${bucket.from_minutes}+ min` : `${bucket.from_minutes}–${bucket.to_minutes} min`;
}

function LeadChart({ timeline, kpi }) {
  const buckets = timeline.lead_minutes;
  const config = useMemo(() => ({
    type: "bar",
    data: {
      labels: buckets.map(leadLabel),
      datasets: [{ label: "Detected contacts", data: buckets.map((b) => b.contacts), backgroundColor: PALETTE[2] }],
    },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }, plugins: { legend: { display: false } } },
  }), [timeline]);
  const shown = buckets.filter((b) => b.contacts > 0).map((b) => `${leadLabel(b)}: ${b.contacts}`);
  return html`<${ChartFigure}
    id="chart-lead"
    title="How long before the customer the inbox knew"
    summary=${`Histogram of detected contacts by lead time; median ${minutes(kpi.median_lead_minutes)}${shown.length ? `; ${shown.join(", ")}` : "; none in this window"}.`}
    config=${config}
    table=${html`<${Table} caption="Detected contacts by minutes between the issue and the contact" head=${["Lead time", "Contacts"]} rows=${buckets.map((b) => [leadLabel(b), b.contacts])} />`}
  />`;
}

// What became of the issues of one kind (or vertical): the columns of the rules' tables.
const OUTCOMES = ["Raised", "Escalated", "Resolved by system", "Resolved by agents", "False positive", "False positive share", "Flaps", "Median lead"];
const outcomes = (r) => [r.raised, r.escalated, r.resolved_by_system, r.resolved_by_agents, r.false_positive, percent(r.false_positive_share), r.flaps, minutes(r.median_lead_minutes)];

function RulesChart({ rules }) {
  const kinds = Object.keys(rules.by_kind);
  const series = [
    ["Raised", "raised", PALETTE[0]],
    ["Resolved by the system", "resolved_by_system", PALETTE[2]],
    ["Resolved by agents", "resolved_by_agents", PALETTE[3]],
    ["False positives", "false_positive", PALETTE[1]],
  ];
  const config = useMemo(() => ({
    type: "bar",
    data: {
      labels: kinds.map(humanise),
      datasets: series.map(([name, field, colour]) => ({
        label: name,
        data: kinds.map((kind) => rules.by_kind[kind][field]),
        backgroundColor: colour,
      })),
    },
    options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
  }), [rules]);
  const worst = kinds
    .filter((kind) => rules.by_kind[kind].false_positive_share != null)
    .sort((a, b) => rules.by_kind[b].false_positive_share - rules.by_kind[a].false_positive_share)[0];
  const rows = kinds.map((kind) => [humanise(kind), ...outcomes(rules.by_kind[kind])]);
  const t = rules.total;
  return html`<${ChartFigure}
    id="chart-rules"
    title="Each rule: raised, resolved, false positives"
    summary=${`Bars per kind of issue: ${t.raised} raised, ${t.resolved_by_system} resolved by the system, ${t.resolved_by_agents} by agents, ${t.false_positive} of those false positives (${percent(t.false_positive_share)})${worst ? `; most false positives: ${humanise(worst)} (${percent(rules.by_kind[worst].false_positive_share)})` : ""}.`}
    config=${config}
    open=${true}
    table=${html`<${Table}
      caption=${`Issues raised in the window, by kind, and what became of them (a flap: resolved by the system within ${rules.flap_minutes} minutes)`}
      head=${["Kind", ...OUTCOMES]}
      rows=${rows} />`}
  />`;
}

// The verticals the issues of the window came from (a vertical the rules file declares
// shows here once it has issues), with what became of them.
function VerticalsTable({ rules }) {
  const rows = Object.entries(rules.by_vertical).map(([vertical, r]) => [humanise(vertical), ...outcomes(r)]);
  return html`
    <section class="chart" aria-labelledby="table-verticals-title" data-testid="table-verticals">
      <h2 id="table-verticals-title">Each vertical: raised, resolved, false positives</h2>
      <div class="table-scroll" tabindex="0" role="region" aria-label="Each vertical: the numbers">
        <${Table}
          caption="Issues raised in the window, by vertical, and what became of them"
          head=${["Vertical", ...OUTCOMES]}
          rows=${rows} />
      </div>
    </section>`;
}

function OverdueChart({ overdue }) {
  const countries = Object.keys(overdue.by_country);
  const config = useMemo(() => ({
    type: "bar",
    data: {
      labels: countries,
      datasets: [{ label: "Open issues past their SLA", data: countries.map((c) => overdue.by_country[c]), backgroundColor: PALETTE[1] }],
    },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }, plugins: { legend: { display: false } } },
  }), [overdue]);
  const listed = countries.map((c) => `${c} ${overdue.by_country[c]}`);
  return html`<${ChartFigure}
    id="chart-overdue"
    title="Open issues past their SLA, by country"
    summary=${`Bars: ${overdue.total} open issues past their SLA${listed.length ? `: ${listed.join(", ")}` : ""}.`}
    config=${config}
    table=${html`<${Table} caption="Open issues past their SLA now" head=${["Country", "Issues"]} rows=${countries.map((c) => [c, overdue.by_country[c]])} />`}
  />`;
}

function Tiles({ data }) {
  const { rules, kpi, overdue } = data;
  const tiles = [
    ["Issues raised", rules.total.raised],
    ["Contacts detected", percent(kpi.detected_share)],
    ["Median lead", minutes(kpi.median_lead_minutes)],
    ["False positive share", percent(rules.total.false_positive_share)],
    ["Past SLA now", overdue.total],
  ];
  return html`<dl class="tiles">${tiles.map(([name, value]) => html`<div><dt>${name}</dt><dd>${value}</dd></div>`)}</dl>`;
}

export function Dashboard() {
  const where = useLocation();
  const windowName = windowOf(where.search);
  const [state, setState] = useState({ loading: true });
  const [round, setRound] = useState(0);

  useEffect(() => {
    let current = true;
    setState((before) => ({ ...before, loading: true }));
    Promise.all([load(windowName), loadChart()])
      .then(([data]) => current && setState({ data }))
      .catch((error) => current && setState({ error }));
    return () => {
      current = false;
    };
  }, [windowName, round]);

  function choose(event) {
    const query = new URLSearchParams(where.search);
    if (event.target.value === DEFAULT_WINDOW) query.delete("window");
    else query.set("window", event.target.value);
    const search = query.toString();
    navigate(`/dashboard${search ? `?${search}` : ""}`, { replace: true });
  }

  let body;
  if (state.error instanceof ApiError && state.error.status === 403) {
    body = html`<p class="notice" role="alert" data-testid="not-allowed">
      You are not allowed to see how detection is doing: this page is for leads and auditors.</p>`;
  } else if (state.error) {
    body = html`<p class="error" role="alert">The dashboard could not be loaded (${state.error.message}).
      <button type="button" class="quiet" onClick=${() => setRound(round + 1)}>Try again</button></p>`;
  } else if (!state.data) {
    body = html`<p class="loading" role="status">Loading…</p>`;
  } else {
    const { data } = state;
    const long = WINDOWS[windowName].hours > 24;
    body = html`
      <${Tiles} data=${data} />
      <div class="charts">
        <${RaisedChart} timeline=${data.timeline} long=${long} />
        <${KpiChart} timeline=${data.timeline} kpi=${data.kpi} long=${long} />
        <${LeadChart} timeline=${data.timeline} kpi=${data.kpi} />
        <${OverdueChart} overdue=${data.overdue} />
        <${RulesChart} rules=${data.rules} />
        <${VerticalsTable} rules=${data.rules} />
      </div>`;
  }
  return html`
    <section class="dashboard" aria-labelledby="dashboard-title" aria-busy=${state.loading ? "true" : "false"}>
      <div class="dashboard-head">
        <h1 id="dashboard-title">Detection</h1>
        <label for="dashboard-window">Window</label>
        <select id="dashboard-window" value=${windowName} onChange=${choose}>
          ${Object.entries(WINDOWS).map(([value, { name }]) => html`<option value=${value}>${name}</option>`)}
        </select>
        <button type="button" class="quiet" onClick=${() => setRound(round + 1)}>Refresh</button>
      </div>
      ${body}
    </section>`;
}
