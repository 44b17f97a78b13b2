// The collector's web page (docs/web.md). Plain JavaScript, no framework: it
// reads only the JSON API under /api/v1/ and draws with uPlot. Every string
// that comes from an agent or a probe (host, process name, command line,
// site, alert text) reaches the page through textContent or a canvas, never
// through innerHTML: they are untrusted.
"use strict";

const POLL_MS = 5000;
const TOKEN_KEY = "apm-api-token";
const WINDOWS = [["15m", 900], ["1h", 3600], ["6h", 21600], ["1d", 86400], ["7d", 604800]];
const MAX_ROWS_PER_HOST = 50;

const $ = (id) => document.getElementById(id);

// ---- state, kept in the URL's hash so a link shows the same view -------------

function readHash() {
  const q = new URLSearchParams(location.hash.slice(1));
  const w = Number(q.get("w"));
  return { p: q.get("p") || "", w: WINDOWS.some(([, s]) => s === w) ? w : 3600 };
}

function writeHash(next) {
  const cur = readHash();
  const s = Object.assign(cur, next);
  const q = new URLSearchParams();
  if (s.p) q.set("p", s.p);
  if (s.w !== 3600) q.set("w", String(s.w));
  const h = q.toString();
  if (location.hash.slice(1) !== h) location.hash = h;
}

// ---- formatting ------------------------------------------------------------

function bytes(n) {
  if (n === null || n === undefined || !isFinite(n)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (n < 0 ? "-" : "") + (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : 1)) + " " + u[i];
}

function ratePerHour(bps) {
  if (!bps) return "–";
  return (bps > 0 ? "+" : "") + bytes(bps * 3600) + "/h";
}

function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

function clock(t) {
  return t ? new Date(t * 1000).toLocaleString() : "–";
}

// ---- DOM helpers: text only ---------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function showError(msg) {
  const e = $("error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

// ---- the API ------------------------------------------------------------------

async function api(path, opts) {
  const r = await fetch("/api/v1/" + path, Object.assign({ cache: "no-store" }, opts || {}));
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const err = new Error((body && body.error) || `${r.status} ${r.statusText}`);
    err.status = r.status;
    throw err;
  }
  return body;
}

// The API token: asked once when a write is refused, kept for this tab's session.
function askToken(why) {
  return new Promise((resolve) => {
    const d = $("token-dialog");
    $("token-error").textContent = why || "";
    $("token-error").hidden = !why;
    $("token-input").value = "";
    const done = (v) => {
      $("token-form").onsubmit = null;
      $("token-cancel").onclick = null;
      d.close();
      resolve(v);
    };
    $("token-form").onsubmit = (ev) => { ev.preventDefault(); done($("token-input").value.trim()); };
    $("token-cancel").onclick = () => done(null);
    d.showModal();
    $("token-input").focus();
  });
}

async function write(path, body, method = "POST") {
  for (let attempt = 0; attempt < 3; attempt++) {
    const headers = { "Content-Type": "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    try {
      const opts = { method, headers };
      if (body !== undefined) opts.body = JSON.stringify(body);
      return await api(path, opts);
    } catch (e) {
      if (e.status !== 401) throw e;
      const t = await askToken(token ? "That token was refused: " + e.message : "");
      if (!t) throw new Error("cancelled: this collector needs its API token to change alerts");
      sessionStorage.setItem(TOKEN_KEY, t);
    }
  }
  throw new Error("the API token was refused three times");
}

// ---- urgency ------------------------------------------------------------------

const CLASS_RANK = { leak: 5, growing: 4, bloat: 2, warmup: 2, sawtooth: 1, stable: 0 };

// Larger is more urgent: firing alerts, then pending, then the soonest exhaustion,
// then the class of the verdict, then the fastest growth.
function urgency(p) {
  let u = 0;
  for (const a of p.alerts) {
    if (a.acked || a.silenced) continue;
    u = Math.max(u, (a.state === "firing" ? 3e6 : 2e6) + (a.severity === "critical" ? 5e5 : 0));
  }
  const f = p.forecast;
  if (f) {
    if (f.time_to_exhaustion !== null && f.time_to_exhaustion !== undefined)
      u = Math.max(u, 1e6 + 4e5 / (1 + f.time_to_exhaustion / 3600));
    u += (CLASS_RANK[f.class] || 0) * 1e4 + Math.min(9999, Math.max(0, f.rate) / 1000);
  }
  return u + (p.live ? 1 : 0);
}

// ---- the model of one poll ------------------------------------------------------

const view = { data: null, chart: null, chartKey: "", polling: false };

async function load() {
  // Live processes only (the collector's process-grace decides), and the one in the URL.
  const [status, hosts, procs, forecasts, alerts, silences] = await Promise.all([
    api("status"), api("hosts"), api("processes?live=true"), api("forecasts"),
    api("alerts?state=active"), api("silences"),
  ]);
  const now = status.time;
  const byId = new Map();
  const want = readHash().p;
  if (want && !procs.processes.some((p) => p.id === want)) {
    // A process no longer live, linked to: found among its host's processes.
    const host = want.split(":").slice(0, -2).join(":");
    const all = await api("processes?host=" + encodeURIComponent(host));
    procs.processes.push(...all.processes.filter((p) => p.id === want));
  }
  for (const p of procs.processes) byId.set(p.id, Object.assign({ forecast: null, alerts: [] }, p));
  for (const f of forecasts.forecasts) {
    const p = byId.get(f.process);
    if (p && f.metric === "rss") p.forecast = f;
  }
  for (const a of alerts.alerts) {
    const p = byId.get(a.process);
    if (p) p.alerts.push(a);
  }
  for (const p of byId.values()) p.urgency = urgency(p);
  const sorted = [...byId.values()].sort((a, b) => b.urgency - a.urgency || a.id.localeCompare(b.id));
  const hostRank = new Map();
  for (const p of sorted) if (!hostRank.has(p.host)) hostRank.set(p.host, p.urgency);
  const hostList = [...hosts.hosts].sort(
    (a, b) => (hostRank.get(b.host) || 0) - (hostRank.get(a.host) || 0) || a.host.localeCompare(b.host));
  return { now, status, hosts: hostList, procs: sorted, byId, alerts: alerts.alerts,
    silences: silences.silences };
}

// ---- rendering --------------------------------------------------------------------

function classBadge(f) {
  const cls = f ? f.class : "none";
  return el("span", { class: "badge c-" + cls }, f ? f.class : "no verdict");
}

function renderHosts(d, focusId) {
  const box = $("hosts");
  box.replaceChildren();
  for (const h of d.hosts) {
    const procs = d.procs.filter((p) => p.host === h.host && p.live);
    const age = d.now - h.last_seen;
    const head = el("h3", {}, h.host, " ",
      el("span", { class: "muted" }, `agent ${h.agent_id}, ${procs.length} live processes, seen ${duration(age)} ago`));
    const tbody = el("tbody");
    for (const p of procs.slice(0, MAX_ROWS_PER_HOST)) {
      const f = p.forecast;
      const row = el("tr", { class: p.id === focusId ? "focus" : "", "data-process": p.id, tabindex: "0",
        on: { click: () => writeHash({ p: p.id }), keydown: (ev) => { if (ev.key === "Enter") writeHash({ p: p.id }); } } },
        el("td", {}, el("a", { href: "#p=" + encodeURIComponent(p.id) }, p.name || "?"),
          p.alerts.length ? el("span", { class: "badge alert" }, "alert") : null),
        el("td", { class: "num" }, p.pid),
        el("td", {}, classBadge(f)),
        el("td", { class: "num" }, f ? bytes(f.value) : "–"),
        el("td", { class: "num" }, f ? ratePerHour(f.rate) : "–"),
        el("td", { class: "num" }, f && f.time_to_exhaustion !== null ? duration(f.time_to_exhaustion) : "–"));
      row.querySelector("a").addEventListener("click", (ev) => { ev.preventDefault(); writeHash({ p: p.id }); });
      tbody.append(row);
    }
    const more = procs.length > MAX_ROWS_PER_HOST
      ? el("p", { class: "muted" }, `${procs.length - MAX_ROWS_PER_HOST} more, less urgent`) : null;
    box.append(el("div", { class: "host" }, head,
      el("div", { class: "scroll" }, el("table", { class: "rows procs" },
        el("thead", {}, el("tr", {}, ...["process", "pid", "verdict", "memory", "rate", "to limit"].map((t) => el("th", {}, t)))),
        tbody)), more));
  }
  if (!d.hosts.length) box.append(el("p", { class: "muted" }, "No agent has reported yet."));
}

function renderAlerts(d) {
  const tbody = $("alerts").querySelector("tbody");
  tbody.replaceChildren();
  for (const a of d.alerts) {
    const acts = el("td", { class: "acts" });
    if (a.silenced) {
      acts.append(el("span", { class: "muted" }, `silenced by #${a.silenced_by}`));
    } else if (a.acked) {
      acts.append(el("span", { class: "muted" }, "acked until " + clock(a.ack_until) + " "),
        el("button", { type: "button", on: { click: () => act(a, 0, "") } }, "Unack"));
    } else {
      acts.append(el("button", { type: "button", class: "ack", on: { click: () => act(a, 7200, "") } }, "Ack"),
        el("button", { type: "button", class: "silence", on: { click: () => silence(a) } }, "Silence…"));
    }
    const what = el("td", {},
      el("a", { href: "#p=" + encodeURIComponent(a.process || "") }, a.summary),
      a.ack_comment ? el("div", { class: "muted" }, "“" + a.ack_comment + "”") : null);
    tbody.append(el("tr", { "data-alert": String(a.id), class: a.acked || a.silenced ? "acked" : "" },
      el("td", {}, el("span", { class: "badge sev-" + a.severity }, a.severity)),
      el("td", {}, a.state), what, acts));
  }
  $("alerts-none").hidden = d.alerts.length > 0;
  $("alerts-title").textContent = `Alerts (${d.alerts.filter((a) => !a.acked && !a.silenced).length} open)`;
}

function renderSilences(d) {
  const tbody = $("silences").querySelector("tbody");
  tbody.replaceChildren();
  for (const s of d.silences) {
    const acts = el("td", { class: "acts" });
    if (s.state !== "expired")
      acts.append(el("button", { type: "button", class: "expire", on: { click: () => expire(s) } }, "Expire"));
    tbody.append(el("tr", { "data-silence": String(s.id), class: s.state === "expired" ? "acked" : "" },
      el("td", {}, `#${s.id} ${s.state}`),
      el("td", {}, el("code", {}, s.matchers.map((m) => m.text).join(" ")),
        s.comment ? el("div", { class: "muted" }, "“" + s.comment + "”") : null),
      el("td", {}, clock(s.state === "pending" ? s.starts_at : s.ends_at)),
      el("td", {}, s.created_by || ""), acts));
  }
  $("silences-none").hidden = d.silences.length > 0;
  $("silences-title").textContent = `Silences (${d.silences.filter((s) => s.state === "active").length} active)`;
}

async function expire(s) {
  try {
    await write(`silences/${s.id}`, undefined, "DELETE");
    showError("");
    await refresh();
  } catch (e) {
    showError(`silence ${s.id}: ${e.message}`);
  }
}

async function act(a, forS, comment) {
  try {
    await write(`alerts/${a.id}/ack`, { for: forS, comment });
    showError("");
    await refresh();
  } catch (e) {
    showError(`alert ${a.id}: ${e.message}`);
  }
}

// A matcher with its value quoted as the collector parses it (docs/alerts.md, "Silences").
const matcher = (name, value) => `${name}="${String(value).replace(/[\\"]/g, (c) => "\\" + c)}"`;

// A silence by matcher (docs/alerts.md, "Silences"): prefilled with the alert's rule,
// host and process name, editable; it mutes every alert they match, later ones too.
function silence(a) {
  const d = $("act-dialog");
  $("act-what").textContent = "Silence alerts like: " + a.summary;
  const lines = [matcher("alertname", a.rule), matcher("host", a.host)];
  if (a.name) lines.push(matcher("process", a.name));
  $("act-matchers").value = lines.join("\n");
  $("act-comment").value = "";
  $("act-form").onsubmit = async (ev) => {
    ev.preventDefault();
    d.close();
    const matchers = $("act-matchers").value.split("\n").map((l) => l.trim()).filter((l) => l);
    try {
      await write("silences", { matchers, duration: Number($("act-for").value),
        comment: $("act-comment").value, created_by: $("act-author").value });
      showError("");
      await refresh();
    } catch (e) {
      showError(`silence: ${e.message}`);
    }
  };
  $("act-cancel").onclick = () => d.close();
  d.showModal();
}

function renderHealth(d) {
  const s = d.status;
  const g = (mod, key) => (s[mod] && typeof s[mod][key] === "number" ? s[mod][key] : null);
  const rows = [
    ["version", `${s.version} (${s.commit})`],
    ["up", duration(s.time - s.started)],
    ["agents connected", g("ingest", "connections_active")],
    ["samples ingested", g("ingest", "samples")],
    ["series stored", g("store", "series")],
    ["store on disk", bytes(g("store", "bytes_on_disk"))],
    ["store commits", g("store", "commits")],
    ["samples dropped", g("store", "dropped")],
    ["HTTP requests", g("http", "requests")],
    ["API errors", g("api", "errors")],
    ["refused writes (no token)", g("api", "unauthorized")],
  ];
  const dl = $("health");
  dl.replaceChildren();
  for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", {}, v === null ? "–" : v));
  $("updated").textContent = "updated " + new Date(s.time * 1000).toLocaleTimeString();
}

function verdictText(p) {
  const f = p.forecast;
  const firing = p.alerts.find((a) => a.state === "firing") || p.alerts[0];
  const parts = [];
  if (!f) return firing ? firing.summary : "No verdict yet: the analysis has not judged this process.";
  const conf = f.confidence ? ` (confidence ${Math.round(f.confidence * 100)} %)` : "";
  parts.push(`${f.class}${conf}.`);
  // A firing alert's sentence already says rate, forecast and suspect.
  if (firing) return parts.concat(firing.summary).join(" ");
  if (f.rate) parts.push(`The post-GC floor grows ${ratePerHour(f.rate)}` +
    (f.growing_since ? ` since ${clock(f.growing_since)}` : "") + (f.steady ? ", steadily." : "."));
  if (f.doubt) parts.push(`No verdict yet because of ${f.doubt === "evidence" ? "too little history" : f.doubt}` +
    (f.verdict_by ? `; one by ${clock(f.verdict_by)} at the latest.` : "."));
  if (f.exhaustion_t) parts.push(`Reaches its ${bytes(f.limit)} ${f.limit_source} limit in ` +
    `${duration(f.time_to_exhaustion)} (${duration(f.time_to_exhaustion_lo)} – ${f.time_to_exhaustion_hi === null ? "∞" : duration(f.time_to_exhaustion_hi)}).`);
  if (f.native === true) parts.push("Python's traced memory does not grow with it: native code or fragmentation.");
  if (f.suspects && f.suspects.length) parts.push(`Top suspect ${f.suspects[0].site} ${ratePerHour(f.suspects[0].rate)}.`);
  return parts.join(" ");
}

// The cone: from the last judged sample to the limit, between the earliest and the
// latest plausible exhaustion; n points along time for uPlot's band fill.
function cone(f, tEnd) {
  if (!f || !f.limit || f.exhaustion_lo_t === null || f.exhaustion_lo_t === undefined) return null;
  const t0 = f.time, v0 = f.value, L = f.limit;
  const xs = [], hi = [], lo = [], mid = [];
  const at = (tx, t) => (tx && tx > t0 ? Math.min(L, v0 + (L - v0) * (t - t0) / (tx - t0)) : v0);
  const n = 24;
  for (let i = 0; i <= n; i++) {
    const t = t0 + (Math.max(tEnd, t0 + 1) - t0) * i / n;
    xs.push(t);
    hi.push(at(f.exhaustion_lo_t, t));
    lo.push(at(f.exhaustion_hi_t, t));
    mid.push(at(f.exhaustion_t, t));
  }
  return { xs, hi, lo, mid };
}

async function renderFocus(d, p, win) {
  $("focus-title").textContent = `${p.name || "?"} (pid ${p.pid}) on ${p.host}`;
  $("focus-title").title = p.cmdline || "";
  $("verdict").textContent = verdictText(p);
  $("verdict").className = "verdict c-" + (p.forecast ? p.forecast.class : "none");
  renderWindows(win);

  const chartBox = $("chart");
  const width = Math.max(200, Math.floor(chartBox.clientWidth || 600));
  const list = await api(`series?process_id=${encodeURIComponent(p.id)}&metric=rss`);
  const series = list.series[0];
  let xs = [], ys = [];
  if (series) {
    const from = Math.max(d.now - win, series.first);
    const step = Math.max(0.001, (Math.max(series.last, d.now) - from) / width);
    const r = await api(`series/${series.id}/samples?from=${from.toFixed(3)}&step=${step.toFixed(3)}`);
    xs = r.samples.map((s) => s[0]);
    ys = r.samples.map((s) => s[1]);
  }
  const f = p.forecast;
  const span = xs.length ? xs[xs.length - 1] - xs[0] : win;
  // The future shown: to the latest plausible exhaustion (the whole cone), between a quarter
  // of the past span and half as much again as the past, so the history keeps 40 % or more.
  const t0 = f ? f.time : d.now;
  const target = f ? (f.exhaustion_hi_t || f.exhaustion_t || t0 + span * 0.5) : t0;
  const c = cone(f, Math.min(Math.max(target + span * 0.05, t0 + span * 0.25), t0 + Math.max(60, span * 1.5)));
  const allX = [...xs];
  if (c) allX.push(...c.xs);
  const order = allX.map((x, i) => [x, i]).sort((a, b) => a[0] - b[0]);
  const X = [], mem = [], lim = [], hi = [], lo = [], mid = [];
  for (const [x, i] of order) {
    X.push(x);
    mem.push(i < xs.length ? ys[i] : null);
    const k = i - xs.length;
    hi.push(k >= 0 ? c.hi[k] : null);
    lo.push(k >= 0 ? c.lo[k] : null);
    mid.push(k >= 0 ? c.mid[k] : null);
    lim.push(f && f.limit ? f.limit : null);
  }
  chartBox.dataset.points = String(xs.length);
  chartBox.dataset.cone = String(c ? c.xs.length : 0);
  chartBox.dataset.process = p.id;
  $("legend").textContent = series
    ? `${xs.length} points (one per ${duration(Math.max(1, span / Math.max(1, xs.length)))}), memory (RSS)` +
      (f && f.limit ? `, ${f.limit_source} limit ${bytes(f.limit)}` : ", no limit known") +
      (c ? ", forecast cone to exhaustion" : "")
    : "No RSS series for this process.";
  drawChart(chartBox, width, [X, mem, lim, hi, lo, mid]);
  await renderSites(p, win);
}

const BYTE_INCRS = [];
for (let k = 0; k <= 5; k++) for (let m = 1; m < 1024; m *= 2) BYTE_INCRS.push(m * 1024 ** k);

function drawChart(box, width, data) {
  const opts = {
    width, height: Math.max(180, Math.min(320, Math.round(width * 0.45))),
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.05, 1)] } },
    // Ticks at powers of two of KiB, MiB, GiB, so the labels read 256 MiB, not 268.4 MB.
    axes: [{}, { values: (u, vals) => vals.map((v) => bytes(v)), size: 84, incrs: BYTE_INCRS }],
    series: [
      {},
      { label: "memory", stroke: "#2b6cb0", width: 2, spanGaps: true, points: { show: false } },
      { label: "limit", stroke: "#c53030", width: 1, dash: [6, 4], points: { show: false } },
      { label: "earliest", stroke: "rgba(221,107,32,0.6)", width: 1, points: { show: false } },
      { label: "latest", stroke: "rgba(221,107,32,0.6)", width: 1, points: { show: false } },
      { label: "forecast", stroke: "#dd6b20", width: 1.5, dash: [3, 3], points: { show: false } },
    ],
    bands: [{ series: [3, 4], fill: "rgba(221,107,32,0.15)" }],
    legend: { show: true },
  };
  if (view.chart) view.chart.destroy();
  box.replaceChildren();
  view.chart = new uPlot(opts, data, box);
}

function renderWindows(win) {
  let bar = $("windows");
  if (!bar) {
    bar = el("div", { id: "windows", class: "windows", role: "group", "aria-label": "time window" });
    for (const [label, s] of WINDOWS)
      bar.append(el("button", { type: "button", "data-w": String(s), on: { click: () => writeHash({ w: s }) } }, label));
    $("verdict").after(bar);
  }
  for (const b of bar.querySelectorAll("button")) b.classList.toggle("on", Number(b.dataset.w) === win);
}

function sparkline(points) {
  const c = el("canvas", { width: "120", height: "28", class: "spark" });
  const g = c.getContext("2d");
  if (!g || points.length < 2) return c;
  const t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1;
  const vs = points.map((p) => p[1]);
  const lo = Math.min(...vs), hi = Math.max(...vs);
  g.strokeStyle = "#dd6b20";
  g.lineWidth = 1.5;
  g.beginPath();
  points.forEach(([t, v], i) => {
    const x = 2 + (116 * (t - t0)) / Math.max(1e-9, t1 - t0);
    const y = 26 - (24 * (v - lo)) / Math.max(1, hi - lo);
    if (i) g.lineTo(x, y); else g.moveTo(x, y);
  });
  g.stroke();
  return c;
}

async function renderSites(p, win) {
  const tbody = $("sites").querySelector("tbody");
  let sites = [];
  try {
    sites = (await api(`sites?process=${encodeURIComponent(p.id)}&window=${Math.min(win, 86400)}&limit=10`)).sites;
  } catch (e) {
    showError("sites: " + e.message);
  }
  tbody.replaceChildren();
  for (const s of sites) {
    // The sampler's standard error: relative while the rate stands out of it, else absolute.
    const e = s.rate_err_bytes_per_s, r = s.rate_bytes_per_s;
    const err = !e ? "" : Math.abs(r) > e ? ` ± ${Math.round((100 * e) / Math.abs(r))} %` : ` ± ${bytes(e * 3600)}/h`;
    tbody.append(el("tr", {},
      el("td", { class: "site" }, s.site),
      el("td", { class: "num" }, (s.size_growth >= 0 ? "+" : "") + bytes(s.size_growth)),
      el("td", { class: "num" }, ratePerHour(s.rate_bytes_per_s) + err),
      el("td", { class: "num" }, bytes(s.size)),
      el("td", {}, sparkline(s.points || []))));
  }
  $("sites").hidden = sites.length === 0;
  $("sites-none").hidden = sites.length > 0;
}

// ---- the loop ------------------------------------------------------------------------

async function refresh() {
  if (view.polling) return;
  view.polling = true;
  try {
    const d = await load();
    view.data = d;
    const st = readHash();
    // The landing page: the most urgent process, without a click.
    const focus = d.byId.get(st.p) || d.procs.find((p) => p.live) || d.procs[0];
    renderHealth(d);
    renderAlerts(d);
    renderSilences(d);
    renderHosts(d, focus ? focus.id : "");
    if (focus) await renderFocus(d, focus, st.w);
    document.body.dataset.ready = "1";
    showError("");
  } catch (e) {
    showError("Could not reach the collector's API: " + e.message);
  } finally {
    view.polling = false;
  }
}

window.addEventListener("hashchange", () => refresh());
let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(refresh, 200);
});
refresh();
setInterval(refresh, POLL_MS);
