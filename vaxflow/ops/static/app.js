// vaxflow ops dashboard: polls the ops service and draws SVG charts. Plain JS, no build step, no
// external assets (the machines that run vaxflow have no internet access).
"use strict";

const REFRESH_MS = 2000;
const MAX_POINTS = 720;
const STATUS_COLOUR = {
  OK: "#1f9d55", WARN: "#d69e00", ERR: "#d64545", STOP: "#b42318", STALL: "#9b3fbf", REWIND: "#1b8db3",
};
const PALETTE = ["#2f6fde", "#e07b24", "#2aa198", "#c2417a", "#6c71c4", "#859900", "#b58900", "#586e75"];
const SVG_NS = "http://www.w3.org/2000/svg";

const state = { points: [], since: 0 };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function fmt(n) {
  if (n === null || n === undefined) return "–";
  if (typeof n !== "number") return String(n);
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 90) return s.toFixed(1) + "s";
  if (s < 5400) return (s / 60).toFixed(1) + "m";
  return (s / 3600).toFixed(1) + "h";
}

function clock(t) { return new Date(t * 1000).toLocaleTimeString(); }

// A line chart: series = [{name, colour, points: [[t, v], ...]}]; strip = [[t, status], ...] drawn
// as a coloured band under the plot so a status change is visible in time.
function lineChart(container, title, series, strip, yFormat) {
  const W = 640, H = 170, L = 48, R = 10, T = 18, B = 34;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  const text = svg("text", { x: L, y: 12, class: "title" });
  text.textContent = title;
  root.append(text);
  const all = series.flatMap((s) => s.points);
  const times = all.map((p) => p[0]).concat((strip || []).map((p) => p[0]));
  if (!times.length) {
    const empty = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick" });
    empty.textContent = "no samples yet";
    root.append(empty);
    container.replaceChildren(root);
    return;
  }
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1);
  const vmax = Math.max(1, ...all.map((p) => p[1]));
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / vmax) * (H - T - B);
  root.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  root.append(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  for (const frac of [0, 0.5, 1]) {
    const v = vmax * frac;
    const tick = svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end", class: "tick" });
    tick.textContent = yFormat ? yFormat(v) : fmt(v);
    root.append(tick);
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const tick = svg("text", { x: x(t), y: H - B + 12, "text-anchor": anchor, class: "tick" });
    tick.textContent = clock(t);
    root.append(tick);
  }
  if (strip && strip.length) {
    for (let i = 0; i < strip.length; i++) {
      const [t, status] = strip[i];
      const next = i + 1 < strip.length ? strip[i + 1][0] : t1;
      root.append(svg("rect", {
        x: x(t), y: H - B + 16, width: Math.max(1, x(next) - x(t)), height: 6,
        fill: STATUS_COLOUR[status] || "#8a93a3",
      }));
    }
  }
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    root.append(svg("path", { d, fill: "none", stroke: s.colour || PALETTE[i % PALETTE.length], "stroke-width": 1.6 }));
  });
  let lx = L + 4;
  series.forEach((s, i) => {
    const label = svg("text", { x: lx, y: H - 2, class: "tick", fill: s.colour || PALETTE[i % PALETTE.length] });
    label.textContent = "■ " + s.name;
    root.append(label);
    lx += 14 + 7 * s.name.length;
  });
  container.replaceChildren(root);
}

function groupSeries(group, index) {
  const byPartition = new Map();
  const strip = [];
  for (const point of state.points) {
    const g = point.groups[group];
    if (!g) continue;
    strip.push([point.at, g.status]);
    for (const [p, values] of Object.entries(g.partitions)) {
      if (!byPartition.has(p)) byPartition.set(p, []);
      byPartition.get(p).push([point.at, values[index]]);
    }
  }
  const series = [...byPartition.entries()]
    .sort((a, b) => Number(a[0]) - Number(b[0]))
    .map(([p, points], i) => ({ name: "p" + p, colour: PALETTE[i % PALETTE.length], points }));
  return { series, strip };
}

function renderGroups(lag) {
  const container = $("groups");
  const groups = lag ? lag.groups : [];
  for (const g of groups) {
    let card = container.querySelector(`.card[data-group="${CSS.escape(g.group)}"]`);
    if (!card) {
      card = el("div", { class: "card", "data-group": g.group },
        el("div", { class: "head" }, el("span", { class: "name", text: g.group }), el("span", { class: "badge status" })),
        el("div", { class: "facts" }),
        el("div", { class: "charts" },
          el("div", { class: "chart lag-offsets" }),
          el("div", { class: "chart lag-seconds" })));
      container.append(card);
    }
    card.dataset.status = g.status;
    const badge = card.querySelector(".status");
    badge.textContent = g.status;
    badge.dataset.status = g.status;
    const facts = card.querySelector(".facts");
    facts.replaceChildren(
      el("span", {}, "topic ", el("b", { text: g.topic })),
      el("span", {}, "lag ", el("b", { class: "total-lag", text: fmt(g.total_lag) })),
      el("span", {}, "oldest ", el("b", { class: "max-lag-seconds", text: fmtSeconds(g.max_lag_seconds) })),
      el("span", {}, "members ", el("b", { text: `${g.members} (${g.state})` })),
    );
    const offsets = groupSeries(g.group, 0);
    lineChart(card.querySelector(".lag-offsets"), "lag (offsets) per partition", offsets.series, offsets.strip, fmt);
    const seconds = groupSeries(g.group, 1);
    lineChart(card.querySelector(".lag-seconds"), "lag (seconds: age of the oldest unconsumed record)",
      seconds.series, seconds.strip, fmtSeconds);
  }
}

function renderPartitions(lag) {
  const body = $("partitions").querySelector("tbody");
  const rows = [];
  for (const g of lag ? lag.groups : []) {
    for (const p of g.partitions) {
      const badge = el("span", { class: "badge", "data-status": p.status, text: p.status });
      rows.push(el("tr", { "data-group": g.group, "data-partition": String(p.partition) },
        el("td", { text: g.group }), el("td", { class: "num", text: String(p.partition) }),
        el("td", { class: "num", text: p.committed === null ? "–" : String(p.committed) }),
        el("td", { class: "num", text: String(p.log_end) }), el("td", { class: "num", text: String(p.lag) }),
        el("td", { class: "num", text: fmtSeconds(p.lag_seconds) }),
        el("td", { class: "num", text: p.held === null ? "" : String(p.held) }),
        el("td", { text: p.owner || "–" }), el("td", {}, badge), el("td", { text: p.reason })));
    }
  }
  body.replaceChildren(...rows);
}

function bars(container, counts, emptyText, limit = 15) {
  const all = Object.entries(counts || {}).sort((a, b) => b[1] - a[1]);
  const entries = all.slice(0, limit);
  if (all.length > limit) {
    entries.push([`${all.length - limit} other reasons`, all.slice(limit).reduce((n, e) => n + e[1], 0)]);
  }
  if (!entries.length) {
    container.replaceChildren(el("div", { class: "empty", text: emptyText }));
    return;
  }
  const max = Math.max(...entries.map((e) => e[1]));
  container.replaceChildren(...entries.map(([label, n]) => {
    const fill = el("div", { class: "fill" });
    fill.style.width = `${(100 * n) / max}%`;
    return el("div", { class: "bar", "data-reason": label },
      el("span", { class: "label", title: label, text: label }), el("div", { class: "track" }, fill),
      el("span", { class: "count", text: fmt(n) }));
  }));
}

function renderWindows(overview) {
  const container = $("windows");
  const batcher = overview.lag ? overview.lag.batcher : null;
  if (!batcher) {
    $("held-total").textContent = "–";
    $("open-total").textContent = "–";
    container.replaceChildren(el("div", { class: "empty",
      text: "batcher metrics not configured (VAXFLOW_OPS_BATCHER_METRICS_URLS)" }));
    return;
  }
  const held = Object.values(batcher.held).reduce((a, b) => a + b, 0);
  const open = Object.values(batcher.open_windows).reduce((a, b) => a + b, 0);
  $("held-total").textContent = fmt(held);
  $("open-total").textContent = fmt(open);
  const parts = [];
  if (batcher.by_key.length) {
    const rows = batcher.by_key.map((k) => el("tr", {}, el("td", { text: k.vaccine_type }), el("td", { text: k.sender_ods }),
      el("td", { class: "num", text: String(k.open_windows) }), el("td", { class: "num", text: String(k.held) })));
    parts.push(el("table", { id: "windows-by-key" },
      el("thead", {}, el("tr", {}, el("th", { text: "vaccine type" }), el("th", { text: "sender" }),
        el("th", { text: "open windows" }), el("th", { text: "held" }))), el("tbody", {}, ...rows)));
  } else {
    parts.push(el("div", { class: "empty",
      text: "per vaccine type and sender: the batcher does not export vaxflow_batcher_key_open_windows yet; per partition:" }));
  }
  const partitions = Object.keys(batcher.open_windows).sort((a, b) => Number(a) - Number(b));
  parts.push(el("table", { id: "windows-by-partition" },
    el("thead", {}, el("tr", {}, el("th", { text: "valid partition" }), el("th", { text: "open windows" }),
      el("th", { text: "held events" }))),
    el("tbody", {}, ...partitions.map((p) => el("tr", {}, el("td", { text: p }),
      el("td", { class: "num", text: String(batcher.open_windows[p]) }),
      el("td", { class: "num", text: String(batcher.held[p] ?? 0) }))))));
  if (batcher.errors.length) parts.push(el("div", { class: "empty", text: "scrape errors: " + batcher.errors.join("; ") }));
  container.replaceChildren(...parts);
}

function renderActivity(a) {
  $("files-sent").textContent = fmt(a.files_sent);
  $("files-acked").textContent = fmt(a.files_acknowledged);
  $("infack-refused").textContent = fmt(a.infack_refused);
  $("busack-rows").textContent = fmt(a.busack_failed_rows);
  $("rows-sent").textContent = fmt(a.rows_sent);
  $("resends").textContent = fmt(a.resends);
  $("rejected-total").textContent = fmt(a.rejected_total);
  $("deadletter-total").textContent = fmt(a.deadletter_total);
  bars($("rejected-reasons"), a.rejected_by_reason, "no rejected events");
  bars($("deadletter-reasons"), a.deadletter_by_reason, "no dead-lettered files");
  bars($("redriven"), a.redriven, "nothing redriven");
  const sent = state.points.map((p) => [p.at, p.files_sent]);
  const acked = state.points.map((p) => [p.at, p.files_acknowledged]);
  lineChart($("files-chart"), "files sent and acknowledged", [
    { name: "sent", colour: "#2f6fde", points: sent },
    { name: "acknowledged", colour: "#1f9d55", points: acked },
  ], null, fmt);
}

function render(overview) {
  const lag = overview.lag;
  $("window-samples").textContent = overview.window_samples;
  $("last-sample").textContent = lag ? clock(lag.at) : "–";
  $("sample-took").textContent = overview.sample_seconds + "s";
  const error = $("sample-error");
  error.hidden = !overview.last_error;
  error.textContent = overview.last_error || "";
  const worst = lag ? lag.groups.map((g) => g.status) : [];
  const overall = worst.includes("ERR") ? "ERR" : worst.includes("WARN") ? "WARN" : lag ? "OK" : "";
  $("overall").textContent = overall ? "pipeline " + overall : "waiting for the first sample";
  $("overall").dataset.status = overall;
  renderGroups(lag);
  renderPartitions(lag);
  renderWindows(overview);
  renderActivity(overview.activity);
  document.body.dataset.loaded = "true";
}

async function fetchJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

async function refresh() {
  try {
    const [overview, history] = await Promise.all([
      fetchJSON("/api/overview"), fetchJSON(`/api/history?since=${state.since}`),
    ]);
    state.points.push(...history.points);
    if (state.points.length > MAX_POINTS) state.points.splice(0, state.points.length - MAX_POINTS);
    if (state.points.length) state.since = state.points[state.points.length - 1].at;
    render(overview);
  } catch (err) {
    const error = $("sample-error");
    error.hidden = false;
    error.textContent = "ops service unreachable: " + err.message;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
