// The inbox's filters: every change is a new URL (named as GET /api/issues names its
// parameters), so a view can be bookmarked, shared and gone back to; the counts beside
// each value come from GET /api/stats with the same filters. The verticals and kinds offered
// are the rules file's (GET /api/rules), with any the URL or the counts name besides.
import { html, useEffect, useState } from "./html.js";
import { humanise, label } from "./format.js";
import { MAX_FILTER_LENGTH, SEVERITIES, STATUSES, choices, filtersHref } from "./inbox-model.js";
import { Link, navigate } from "./router.js";
import { useRules } from "./rules.js";

// How many of the most frequent countries and cities are offered as one-click filters.
const TOP = 8;
const WIDE = "(min-width: 700px)";

function apply(filters, changes) {
  navigate(filtersHref({ ...filters, ...changes }));
}

// `declared`: the values the rules declare (null: every value is one, or the rules are not
// read yet); a value they do not declare says so.
function Choices({ name, legend, values, filters, counts, named = label, declared = null }) {
  const chosen = filters[name];
  const toggle = (value, on) =>
    apply(filters, { [name]: on ? [...chosen, value] : chosen.filter((one) => one !== value) });
  return html`
    <fieldset class="choices">
      <legend>${legend}</legend>
      ${values.map((value) => {
        const id = `filter-${name}-${value}`;
        const count = counts ? counts[value] : undefined;
        return html`
          <span class="choice" key=${value}>
            <input type="checkbox" id=${id} checked=${chosen.includes(value)}
              onChange=${(event) => toggle(value, event.currentTarget.checked)} />
            <label for=${id}>${named(value)}${declared && !declared.has(value) && html` <span class="muted">(not in the rules)</span>`}${count !== undefined && html` <span class="count">${count}</span>`}</label>
          </span>`;
      })}
    </fieldset>`;
}

// "FI, SE" → ["FI", "SE"] (each bounded as the API bounds a query text).
function values(text) {
  return [...new Set(text.split(",").map((one) => one.trim()).filter(Boolean))].map((one) => one.slice(0, MAX_FILTER_LENGTH));
}

function Frequent({ name, counts, filters, what }) {
  if (!counts) return null;
  const top = Object.entries(counts).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, TOP);
  if (!top.length) return null;
  return html`
    <p class="frequent">
      <span class="frequent-title">${what}:</span>
      ${top.map(([value, count]) => html`
        <${Link} key=${value} href=${filtersHref({ ...filters, [name]: [value] })}>${value || "(none)"} <span class="count">${count}</span><//>`)}
    </p>`;
}

export function FilterBar({ session, filters, stats }) {
  const { rules, problem } = useRules();
  const verticals = (rules?.verticals || []).map((one) => one.name);
  const kinds = (rules?.kinds || []).map((one) => one.name);
  const [country, setCountry] = useState(filters.country.join(", "));
  const [city, setCity] = useState(filters.city.join(", "));
  useEffect(() => {
    setCountry(filters.country.join(", "));
    setCity(filters.city.join(", "));
  }, [filters]);
  const mine = filters.assignee.length === 1 && filters.assignee[0] === session.sub;
  const submit = (event) => {
    event.preventDefault();
    apply(filters, { country: values(country), city: values(city) });
  };
  const active = Object.values(filters).reduce((n, chosen) => n + chosen.length, 0);
  const filtered = active > 0;
  // Open on a wide window; on a narrow one the table comes first, the filters a tap away.
  const [wide] = useState(() => window.matchMedia(WIDE).matches);
  return html`
    <details class="filter-panel" open=${wide}>
    <summary>Filters${active ? ` (${active} chosen)` : ""}${stats ? `: ${stats.total} issues` : ""}</summary>
    <form class="filters" aria-label="Filters" onSubmit=${submit}>
      <${Choices} name="status" legend="Status" values=${STATUSES} filters=${filters} counts=${stats?.by_status} />
      <${Choices} name="severity" legend="Severity" values=${SEVERITIES} filters=${filters} counts=${stats?.by_severity} />
      <${Choices} name="vertical" legend="Vertical" values=${choices(verticals, filters.vertical, stats?.by_vertical)}
        filters=${filters} counts=${stats?.by_vertical} named=${humanise} declared=${rules && new Set(verticals)} />
      <details class="kinds" open=${filters.kind.length > 0}>
        <summary>Kind${filters.kind.length ? ` (${filters.kind.length} chosen)` : ""}</summary>
        <${Choices} name="kind" legend="Kind" values=${choices(kinds, filters.kind, stats?.by_kind)}
          filters=${filters} counts=${stats?.by_kind} named=${humanise} declared=${rules && new Set(kinds)} />
      </details>
      ${problem && html`<p class="error" data-testid="rules-problem">The rules file's verticals and kinds could not be read (${problem}): only those chosen or counted are offered.</p>`}
      <div class="texts">
        <span class="text-filter">
          <label for="filter-country">Country</label>
          <input id="filter-country" value=${country} maxLength="400" autocomplete="off" placeholder="e.g. FI, SE"
            aria-describedby="filter-texts-help" onInput=${(event) => setCountry(event.currentTarget.value)} />
        </span>
        <span class="text-filter">
          <label for="filter-city">City</label>
          <input id="filter-city" value=${city} maxLength="400" autocomplete="off" placeholder="e.g. Helsinki"
            aria-describedby="filter-texts-help" onInput=${(event) => setCity(event.currentTarget.value)} />
        </span>
        <button type="submit">Apply</button>
        <span class="choice mine">
          <input type="checkbox" id="filter-mine" checked=${mine}
            onChange=${(event) => apply(filters, { assignee: event.currentTarget.checked ? [session.sub] : [] })} />
          <label for="filter-mine">Assigned to me</label>
        </span>
        ${filtered && html`<${Link} href="/" class="clear">Clear filters<//>`}
      </div>
      <p class="help" id="filter-texts-help">Several values: separate them with commas. Counts: issues in this view (without a status filter, every status but resolved).</p>
      <${Frequent} name="country" what="Countries" counts=${stats?.by_country} filters=${filters} />
      <${Frequent} name="city" what="Cities" counts=${stats?.by_city} filters=${filters} />
      ${stats && html`<p class="total" data-testid="total">${stats.total} issues in this view</p>`}
    </form>
    </details>`;
}
