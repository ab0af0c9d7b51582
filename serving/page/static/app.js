// The review page: ranked accounts, filters, paging, CSV export and one account's view.
// Every piece of data is put on the page with textContent (never innerHTML), so names,
// titles and topics are always shown as text. Filters and sort live in the URL's query string
// (a reload or a shared link shows the same list); "I am" is remembered in this browser.
"use strict";

const STAGES = ["ready", "in-market", "engaged", "aware", "cold"];
// accounts outside the model's population: shown with their status, never scored or ranked
const STATUS_STAGES = ["in-pipeline", "customer", "new"];
const WORK_NOW = ["in-market", "ready"];
const DEFAULTS = { stage: [], industry: "", region: "", owner: "", min_score: 0, q: "", new: false, sort: "rank", order: "asc" };
const state = { ...DEFAULTS, offset: 0, limit: 50 };
const ME = "inmarket.me"; // the owner this browser's user picked as themself
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

const words = (text) => String(text ?? "").replaceAll("_", " ");
const number = (value, digits = 0) =>
  value === null || value === undefined ? "–" : Number(value).toLocaleString("en", { maximumFractionDigits: digits });
const day = (iso) => (iso ? String(iso).slice(0, 10) : "–");

function showError(error) {
  const box = document.getElementById("error");
  box.textContent = String(error.message || error);
  box.hidden = false;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("sign-in needed");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = (body.error && body.error.message) || body.detail || detail;
    } catch (_) { /* not JSON */ }
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  document.getElementById("error").hidden = true;
  return response.json();
}

function query(withPage) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(DEFAULTS)) {
    if (Array.isArray(value)) for (const item of state[key]) params.append(key, item);
    else if (String(state[key]) !== String(value)) params.set(key, state[key]);
  }
  if (withPage) {
    params.set("offset", state.offset);
    params.set("limit", state.limit);
  }
  return params.toString();
}

// the filters and sort of the URL into the state; true when the URL had any
function readURL() {
  const params = new URLSearchParams(window.location.search);
  for (const [key, value] of Object.entries(DEFAULTS)) {
    if (Array.isArray(value)) state[key] = params.getAll(key);
    else if (!params.has(key)) state[key] = value;
    else if (key === "min_score") state[key] = Number(params.get(key)) || 0;
    else if (key === "new") state[key] = params.get(key) === "true";
    else state[key] = params.get(key);
  }
  return [...params.keys()].some((key) => key in DEFAULTS);
}

function writeURL() {
  const params = new URLSearchParams(query(false));
  // every owner, asked for: kept in the address, or a reload would go back to "my accounts"
  if (!state.owner && localStorage.getItem(ME)) params.set("owner", "");
  const search = params.toString();
  const url = `${window.location.pathname}${search ? `?${search}` : ""}${window.location.hash}`;
  window.history.replaceState(null, "", url);
}

// the form shows the state (after a reload, a shared link or a click on a stage count)
function showState() {
  for (const box of document.querySelectorAll("#f-stage input[type=checkbox]")) box.checked = state.stage.includes(box.value);
  for (const name of ["industry", "region", "owner", "min_score", "q"]) {
    const input = document.querySelector(`#filters [name="${name}"]`);
    if (input) input.value = state[name];
  }
  document.getElementById("f-new").checked = state.new;
  const newCount = document.getElementById("new-count");
  if (newCount) newCount.setAttribute("aria-pressed", String(state.new));
  for (const button of document.querySelectorAll(".stage-count")) {
    button.setAttribute("aria-pressed", String(state.stage.includes(button.dataset.stage)));
  }
}

function stageBadge(stage) {
  const known = STAGES.includes(stage) || STATUS_STAGES.includes(stage) ? stage : "unknown";
  return el("span", { class: `stage stage-${known}` }, stage);
}

// new this period (moved up into in-market or ready since the previous scoring run), or fell out
function changeMark(account) {
  const before = account.stage_before ? `${account.stage_before} ${account.score_before ?? ""}`.trim() : "not listed";
  if (account.change === "rose") return el("span", { class: "change rose", title: `new this period: ${before} before` }, "new");
  if (account.change === "fell") return el("span", { class: "change fell", title: `fell out this period: ${before} before` }, "fell out");
  return null;
}

function trendCell(trend) {
  if (trend === null || trend === undefined) return el("span", { class: "muted" }, "–");
  if (trend > 0) return el("span", { class: "up", title: `up ${trend} since the last snapshot` }, `▲ ${trend}`);
  if (trend < 0) return el("span", { class: "down", title: `down ${-trend} since the last snapshot` }, `▼ ${-trend}`);
  return el("span", { class: "flat", title: "unchanged since the last snapshot" }, "▬ 0");
}

function chips(roles, kind) {
  return el("span", { class: "chips" }, roles.map((role) => el("span", { class: `chip ${kind}` }, words(role))));
}

function accountLink(account) {
  return el(
    "a",
    { href: `#account/${encodeURIComponent(account.account_id)}`, class: "account-link" },
    el("span", { class: "name" }, account.name ?? account.account_id),
    el("span", { class: "domain" }, account.domain ?? ""),
  );
}

function renderRows(accounts) {
  const body = document.querySelector("#accounts tbody");
  body.replaceChildren(
    ...accounts.map((a) =>
      el(
        "tr",
        { dataset: { accountId: a.account_id } },
        el("td", { class: "num rank" }, a.rank),
        el("td", {}, accountLink(a)),
        el("td", { class: "num score" }, a.score),
        el("td", {}, stageBadge(a.stage), changeMark(a)),
        el("td", { class: "num" }, trendCell(a.trend)),
        el("td", { class: "num" }, number(a.people_engaged_90d)),
        el("td", { class: "num" }, number(a.departments_engaged_90d)),
        el("td", { class: "owner" }, a.owner || "–"),
        el("td", { class: "reasons" }, a.top_reasons || "–"),
        el("td", {}, chips(a.roles_missing, "missing")),
      ),
    ),
  );
  if (!accounts.length) body.append(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No account matches these filters.")));
}

function renderHeaders() {
  for (const th of document.querySelectorAll("#accounts th[data-sort]")) {
    const active = th.dataset.sort === state.sort;
    th.setAttribute("aria-sort", active ? (state.order === "asc" ? "ascending" : "descending") : "none");
  }
}

async function loadList() {
  try {
    const data = await getJSON(`/accounts?${query(true)}`);
    renderRows(data.accounts);
    renderHeaders();
    const first = data.total ? data.offset + 1 : 0;
    const last = Math.min(data.offset + data.limit, data.total);
    document.getElementById("count").textContent =
      `${number(data.total)} accounts match · showing ${number(first)}–${number(last)}`;
    const pages = Math.max(1, Math.ceil(data.total / data.limit));
    document.getElementById("page-info").textContent = `page ${Math.floor(data.offset / data.limit) + 1} of ${number(pages)}`;
    document.getElementById("prev").disabled = data.offset === 0;
    document.getElementById("next").disabled = last >= data.total;
    const filtered = query(false);
    document.getElementById("export").href = `/accounts.csv?${filtered}`;
    for (const crm of ["salesforce", "hubspot"]) {
      document.getElementById(`export-${crm}`).href = `/accounts.csv?${filtered}${filtered ? "&" : ""}format=${crm}`;
    }
  } catch (error) {
    showError(error);
  }
}

function fillSelect(id, values, label = words) {
  const select = document.getElementById(id);
  for (const value of values) select.append(el("option", { value }, label(value)));
}

function stageBoxes(stages) {
  const fieldset = document.getElementById("f-stage");
  for (const stage of stages) {
    fieldset.append(el("label", {}, el("input", { type: "checkbox", name: "stage", value: stage }), words(stage)));
  }
}

// stage counts of the accounts matching the other filters, and what the MQL rule misses there
function renderSummary(summary) {
  const statuses = { "in-pipeline": summary.statuses?.["in-pipeline"] ?? 0, customer: summary.statuses?.customer ?? 0 };
  const count = (s, n) =>
    el("button", { type: "button", class: "stage-count", dataset: { stage: s }, title: `show or hide ${s} accounts` }, stageBadge(s), ` ${number(n)}`);
  const filtered = summary.matching < summary.accounts;
  document.getElementById("summary").replaceChildren(
    el("h2", {}, filtered ? `This period, ${number(summary.matching)} of ${number(summary.accounts)} accounts (filtered)` : "This period"),
    el("p", { class: "stages" },
      STAGES.map((s) => count(s, summary.stages[s] ?? 0)),
      el("span", { class: "muted" }, " not scored: "),
      STATUS_STAGES.filter((s) => s in statuses).map((s) => count(s, statuses[s])),
    ),
    el("p", {}, el("button", { type: "button", id: "new-count", class: "new-count", title: "show only the accounts new this period, or all" },
      el("span", { class: "change rose" }, "new"), ` ${number(summary.new_this_period)} moved up into in-market or ready since the previous scoring`)),
    el("p", {}, el("strong", {}, number(summary.worked_now)), " accounts to work now (in-market or ready); ",
      el("strong", { id: "mql-missed" }, number(summary.worked_now_without_mql)),
      ` of them have nobody at ${summary.mql_threshold} lead points — the MQL rule would not have flagged them.`),
  );
  for (const button of document.querySelectorAll(".stage-count")) {
    button.addEventListener("click", () => toggleStage(button.dataset.stage));
  }
  document.getElementById("new-count").addEventListener("click", () => setFilter("new", !state.new));
  showState();
}

async function loadSummary() {
  try {
    renderSummary(await getJSON(`/summary?${query(false)}`));
  } catch (error) {
    showError(error);
  }
}

function metricsTable(model) {
  // the service formats the training run's comparison (serving/report.py comparison_table)
  const table = model.comparison_table || { columns: [], rows: [] };
  return el(
    "table",
    { class: "metrics" },
    el("thead", {}, el("tr", {}, el("th", {}, "test window"), table.columns.map((c) => el("th", { class: "num" }, c)))),
    el("tbody", {}, table.rows.map((row) =>
      el("tr", {}, el("td", {}, row.name), row.cells.map((c) => el("td", { class: "num" }, c))),
    )),
  );
}

async function loadOverview() {
  try {
    const [summary, model] = await Promise.all([getJSON(`/summary?${query(false)}`), getJSON("/model")]);
    document.getElementById("as-of").textContent = `scored as of ${day(summary.as_of)}`;
    stageBoxes([...STAGES.filter((s) => s in summary.stages), ...STATUS_STAGES]);
    fillSelect("f-industry", summary.industries);
    fillSelect("f-region", summary.regions);
    fillSelect("f-owner", summary.owners, String);
    fillSelect("f-me", summary.owners, String);
    document.getElementById("f-me").value = localStorage.getItem(ME) || "";
    renderSummary(summary);
    document.getElementById("model-card").replaceChildren(
      el("h2", {}, "Model"),
      el("p", {}, `${model.name} version ${model.version} (${model.alias}), trained ${day(model.trained_at)}; `,
        `label: ${model.label_text || words(model.label)}.`),
      ...(model.in_words || []).map((sentence) => el("p", { class: "in-words" }, sentence)),
      metricsTable(model),
    );
  } catch (error) {
    showError(error);
  }
}

// any change of filter or sort: back to the first page, into the URL, list and counts reloaded
function update() {
  state.offset = 0;
  writeURL();
  showState();
  loadList();
  loadSummary();
}

function setFilter(name, value) {
  state[name] = value;
  update();
}

function toggleStage(stage) {
  state.stage = state.stage.includes(stage) ? state.stage.filter((s) => s !== stage) : [...state.stage, stage];
  update();
}

// --- the account view -------------------------------------------------------------------

function lineChart(scored) {
  const history = scored.filter((h) => h.score !== null && h.score !== undefined);
  const width = 520, height = 150, pad = 28;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": "score history" });
  for (const y of [0, 40, 70, 90, 100]) {
    const at = height - pad - (y / 100) * (height - 2 * pad);
    chart.append(svg("line", { x1: pad, x2: width - 8, y1: at, y2: at, class: "grid" }), svg("text", { x: 2, y: at + 4, class: "axis" }, y));
  }
  if (!history.length) return chart;
  const x = (i) => pad + (history.length === 1 ? 0 : (i / (history.length - 1)) * (width - pad - 16));
  const y = (score) => height - pad - (score / 100) * (height - 2 * pad);
  chart.append(svg("polyline", { points: history.map((h, i) => `${x(i)},${y(h.score)}`).join(" "), class: "line" }));
  history.forEach((h, i) => {
    chart.append(svg("circle", { cx: x(i), cy: y(h.score), r: 4, class: "point" }, svg("title", {}, `${day(h.as_of)}: ${h.score} (${h.stage})`)));
    chart.append(svg("text", { x: x(i), y: height - 6, class: "axis", "text-anchor": "middle" }, day(h.as_of).slice(5)));
  });
  return chart;
}

function weekChart(weeks) {
  const width = 520, height = 150, pad = 24;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": "engagement by week" });
  const top = Math.max(1, ...weeks.map((w) => w.known + w.anonymous));
  const slot = (width - pad) / Math.max(weeks.length, 1);
  weeks.forEach((w, i) => {
    const scale = (n) => (n / top) * (height - 2 * pad);
    const x = pad + i * slot + 2;
    const known = scale(w.known), anonymous = scale(w.anonymous);
    const label = `week of ${day(w.week)}: ${w.known} known, ${w.anonymous} anonymous, ${w.high_intent} high-intent`;
    chart.append(
      svg("rect", { x, y: height - pad - known, width: slot - 4, height: known, class: "known" }, svg("title", {}, label)),
      svg("rect", { x, y: height - pad - known - anonymous, width: slot - 4, height: anonymous, class: "anonymous" }, svg("title", {}, label)),
      svg("text", { x: x + (slot - 4) / 2, y: height - 8, class: "axis", "text-anchor": "middle" }, day(w.week).slice(5)),
    );
  });
  chart.append(svg("text", { x: 2, y: 14, class: "axis" }, top));
  return chart;
}

function table(headers, rows) {
  return el(
    "table",
    { class: "detail" },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))),
  );
}

function reasonList(reasons, kind, withDirection = false) {
  if (!reasons.length) return el("p", { class: "muted" }, "none");
  return el("ul", { class: `reasons ${kind}` }, reasons.map((r) =>
    el("li", { title: `${r.feature}: ${r.contribution.toFixed(3)}`, class: r.contribution > 0 ? "raising" : "holding-back" },
      r.text, withDirection ? el("span", { class: "direction" }, ` — ${r.direction}`) : null)));
}

// per missing buying role, the people in the CRM holding it who have not engaged yet
function contactsToReach(reach) {
  if (!reach.length) return el("p", { class: "muted" }, "Every buying role has engaged.");
  return el("dl", { class: "contacts" }, reach.map((r) => [
    el("dt", {}, words(r.role)),
    r.people.length
      ? r.people.map((p) => el("dd", { class: "contact" }, p.name || p.title || p.person_id,
        p.title && p.name ? el("span", { class: "muted" }, ` · ${p.title}`) : null,
        p.email ? [" · ", el("a", { href: `mailto:${p.email}` }, p.email)] : null,
        p.owner ? el("span", { class: "muted" }, ` · owner ${p.owner}`) : null))
      : el("dd", { class: "muted" }, "nobody in the CRM holds this role here: find one"),
  ]));
}

const now = (reasons) => reasons.filter((r) => r.kind !== "fit");
const fit = (reasons) => [...reasons.positive, ...reasons.negative].filter((r) => r.kind === "fit");

function renderAccount(view) {
  const a = view.account;
  const people = view.people.map((p) => [
    p.anonymous ? el("em", {}, "Anonymous visitors") : (p.name || p.person_id),
    p.anonymous ? "–" : (p.title || "–"),
    p.anonymous || !p.email ? "–" : el("a", { href: `mailto:${p.email}` }, p.email),
    p.anonymous ? "–" : words(p.department || "–"),
    p.anonymous ? "–" : words(p.buying_role || "–"),
    number(p.interactions),
    number(p.opens),
    number(p.high_intent),
    day(p.last_week),
    p.topics || "–",
  ]);
  const opportunities = view.opportunities.map((o) => [
    o.opportunity_id, words(o.type || "–"), words(o.status), day(o.created_at), day(o.closed_at), number(o.amount),
  ]);
  document.getElementById("account").replaceChildren(
    el("h2", { id: "account-name" }, a.name ?? a.account_id),
    el("p", { class: "muted" }, [a.domain, words(a.industry), words(a.region), a.employee_band && `${a.employee_band} employees`, a.owner && `owner ${a.owner}`].filter(Boolean).join(" · ")),
    el("div", { class: "stats" },
      el("div", {}, el("span", { class: "big" }, a.score), el("span", {}, "score")),
      el("div", {}, stageBadge(a.stage), el("span", {}, "stage")),
      el("div", {}, trendCell(a.trend), el("span", {}, "since last snapshot")),
      el("div", {}, el("span", { class: "big" }, `${(a.probability * 100).toFixed(1)}%`), el("span", {}, "chance of a won deal in 90 days")),
    ),
    el("div", { class: "columns" },
      el("section", { id: "history" }, el("h3", {}, "Score history"), lineChart(view.history)),
      el("section", { id: "timeline" }, el("h3", {}, "Engagement by week"), weekChart(view.weeks),
        el("p", { class: "legend" }, el("span", { class: "swatch known" }), " known people ", el("span", { class: "swatch anonymous" }), " anonymous visits")),
    ),
    el("div", { class: "columns" },
      el("section", { id: "why" }, el("h3", {}, "Why"),
        el("h4", {}, "Why now: raising the score"), reasonList(now(a.reasons.positive), "positive"),
        el("h4", {}, "Holding it back"), reasonList(now(a.reasons.negative), "negative"),
        el("h4", {}, "Fit and history"), reasonList(fit(a.reasons), "fit", true),
        (a.reasons.unusual || []).length
          ? el("details", { class: "unusual" }, el("summary", {}, "Also weighed, against the usual direction"),
            reasonList(a.reasons.unusual, "unusual", true))
          : null),
      el("section", { id: "buying-group" }, el("h3", {}, "Buying group"),
        el("h4", {}, "Engaged (90 days)"), a.roles_engaged.length ? chips(a.roles_engaged, "engaged") : el("p", { class: "muted" }, "nobody yet"),
        el("h4", {}, "Not reached"), a.roles_missing.length ? chips(a.roles_missing, "missing") : el("p", { class: "muted" }, "every role engaged"),
        el("p", { class: "gap" }, a.buying_group_gap),
        el("h4", {}, "Contacts to reach"), contactsToReach(view.contacts_to_reach || [])),
    ),
    el("section", { id: "people" }, el("h3", {}, "Who engaged (13 weeks)"),
      el("p", { class: "muted" }, "Email opens are mostly made by mail privacy proxies: someone with only opens does not count as engaged."),
      people.length ? table(["Person", "Title", "Email", "Department", "Buying role", "Interactions", "Email opens", "High-intent", "Last active (week of)", "Topics"], people)
        : el("p", { class: "muted" }, "No engagement in the last 13 weeks.")),
    el("section", { id: "departments" }, el("h3", {}, "By department"),
      table(["Department", "Interactions"], view.departments.map((d) => [words(d.department), number(d.events)]))),
    el("section", { id: "opportunities" }, el("h3", {}, "Opportunities"),
      opportunities.length ? table(["Opportunity", "Type", "Status", "Created", "Closed", "Amount"], opportunities)
        : el("p", { class: "muted" }, "No opportunities, open or past.")),
  );
}

async function route() {
  const match = window.location.hash.match(/^#account\/(.+)$/);
  document.getElementById("list-view").hidden = Boolean(match);
  document.getElementById("overview").hidden = Boolean(match);
  document.getElementById("account-view").hidden = !match;
  if (!match) return;
  try {
    renderAccount(await getJSON(`/accounts/${match[1]}`));
    window.scrollTo(0, 0);
  } catch (error) {
    showError(error);
  }
}

function start() {
  const fromURL = readURL();
  const me = localStorage.getItem(ME);
  if (!fromURL && me) state.owner = me; // "my accounts" unless a link says otherwise
  const filters = document.getElementById("filters");
  filters.addEventListener("submit", (event) => event.preventDefault());
  let typing = null;
  filters.addEventListener("input", (event) => {
    const { name, value } = event.target;
    if (!(name in DEFAULTS)) return;
    clearTimeout(typing);
    if (name === "new") {
      setFilter("new", event.target.checked);
      return;
    }
    if (name === "stage") {
      state.stage = [...document.querySelectorAll("#f-stage input:checked")].map((box) => box.value);
      update();
      return;
    }
    typing = setTimeout(() => setFilter(name, name === "min_score" ? Number(value) || 0 : value), name === "q" ? 250 : 0);
  });
  document.getElementById("work-now").addEventListener("click", () => {
    const on = state.stage.length === WORK_NOW.length && WORK_NOW.every((s) => state.stage.includes(s));
    setFilter("stage", on ? [] : [...WORK_NOW]);
  });
  document.getElementById("f-me").addEventListener("change", (event) => {
    if (event.target.value) localStorage.setItem(ME, event.target.value);
    else localStorage.removeItem(ME);
  });
  document.getElementById("my-accounts").addEventListener("click", () => {
    const mine = localStorage.getItem(ME);
    if (!mine) {
      showError(new Error("Pick who you are under “I am” first: the page remembers it in this browser."));
      return;
    }
    setFilter("owner", mine);
  });
  for (const th of document.querySelectorAll("#accounts th[data-sort]")) {
    th.tabIndex = 0;
    const sort = () => {
      const key = th.dataset.sort;
      if (state.sort === key) state.order = state.order === "asc" ? "desc" : "asc";
      else state.order = key === "rank" || key === "name" ? "asc" : "desc";
      state.sort = key;
      update();
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (event) => { if (event.key === "Enter") sort(); });
  }
  document.getElementById("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadList(); });
  document.getElementById("next").addEventListener("click", () => { state.offset += state.limit; loadList(); });
  document.getElementById("back").addEventListener("click", (event) => { event.preventDefault(); window.location.hash = ""; });
  window.addEventListener("hashchange", route);
  writeURL();
  loadOverview();
  loadList();
  route();
}

document.addEventListener("DOMContentLoaded", start);
