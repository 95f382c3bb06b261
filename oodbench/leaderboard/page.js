// oodbench leaderboard page: sortable tables, a details panel per row, ROC/PR curves of ticked rows as inline SVG.
// Everything it needs is in the #data block; it loads nothing.
// URL hash: #select=ID|METHOD|top,...&open=ID&sort=COLUMN:asc|desc (what the page shows; shareable)
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const selected = [];  // ticked record ids in the order they were ticked; the position picks the colour
let openId = null;
let lastSort = null;  // "key:asc|desc" of the last sorted column, kept in the URL hash

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

function fmt(v, kind) {
  if (v === null || v === undefined) return "n/a";
  if (kind === "pct") return (100 * v).toFixed(2);
  if (kind === "int") return String(Math.round(v));
  return String(v);
}

function rowOf(id) {
  for (const t of DATA.tables) for (const r of t.rows) if (r.id === id) return [t, r];
  return [null, null];
}

function colourOf(id) {
  const i = selected.indexOf(id);
  return i < 0 ? null : COLOURS[i % COLOURS.length];
}

function compare(a, b, key, dir) {
  const x = a[key], y = b[key];
  if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;  // undefined values last
  if (y === null || y === undefined) return -1;
  return (typeof x === "number" ? x - y : String(x).localeCompare(String(y))) * dir;
}

function sortRows(t) {
  if (t.sort) t.rows.sort((a, b) => compare(a, b, t.sort.key, t.sort.dir === "asc" ? 1 : -1));
}

function buildTable(t) {
  const tbody = el("tbody");
  const heads = t.columns.map(c => {
    const th = el("th", {scope: "col", title: "sort by " + c.label}, c.label + (c.kind === "pct" ? " %" : ""));
    if (t.sort && t.sort.key === c.key) th.setAttribute("aria-sort", t.sort.dir === "asc" ? "ascending" : "descending");
    th.addEventListener("click", () => {  // first click: descending (numbers) ; again: the other way
      const dir = t.sort && t.sort.key === c.key && t.sort.dir === "desc" ? "asc" : "desc";
      t.sort = {key: c.key, dir};
      lastSort = c.key + ":" + dir;
      sortRows(t);
      saveHash();
      redraw();
    });
    return th;
  });
  const table = el("table", {class: "board"}, el("thead", {}, el("tr", {}, el("th", {class: "sel", title: "draw curves"}, "plot"), ...heads)), tbody);
  fillBody(t, tbody);
  const notes = el("ol", {class: "notes"}, ...t.notes.map(n => el("li", {}, n)));
  return el("section", {}, el("h2", {}, t.title), el("p", {class: "info"}, t.info), table, t.notes.length ? notes : null);
}

function fillBody(t, tbody) {
  tbody.replaceChildren(...t.rows.map(r => {
    const box = el("input", {type: "checkbox", "aria-label": "plot " + r.method});
    box.checked = selected.includes(r.id);
    box.addEventListener("click", ev => { ev.stopPropagation(); toggle(r.id); });
    const cells = t.columns.map(c => {
      const unranked = c.key === "rank" && (r.rank === null || r.rank === undefined);  // a degenerate split
      const td = el("td", {class: c.kind === "text" ? "text" : ""}, unranked ? "\u2013" : fmt(r[c.key], c.kind));
      if (c.key === "method" && r.note) td.append(el("sup", {}, "[" + r.note + "]"));
      if (c.key === "method" && r.panels) td.append(el("span", {class: "info"}, ` (${r.panels} score map${r.panels > 1 ? "s" : ""})`));
      return td;
    });
    const tr = el("tr", {"data-id": r.id, class: r.id === openId ? "open" : "", onclick: () => openDetails(r.id)}, el("td", {}, box), ...cells);
    tr.style.borderLeftColor = colourOf(r.id) || "transparent";
    return tr;
  }));
}

function redraw() {
  const root = document.getElementById("tables");
  root.replaceChildren(...DATA.tables.map(buildTable));
  drawPlots();
  drawGallery();
}

function toggle(id) {
  const i = selected.indexOf(id);
  if (i < 0) selected.push(id); else selected.splice(i, 1);
  saveHash();
  redraw();
}

const W = 460, H = 350, M = {l: 52, r: 14, t: 30, b: 44};
function sx(v) { return M.l + v * (W - M.l - M.r); }
function sy(v) { return H - M.b - v * (H - M.t - M.b); }

function plotSvg(title, xlabel, ylabel, series, extra) {
  const parts = [`<svg class="plot" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${title}">`];
  parts.push(`<text x="${W / 2}" y="18" text-anchor="middle" font-weight="600">${title}</text>`);
  for (let k = 0; k <= 5; k++) {
    const v = k / 5, label = v.toFixed(1);
    parts.push(`<line x1="${sx(v)}" y1="${sy(0)}" x2="${sx(v)}" y2="${sy(1)}" stroke="#e4e7ea"/>`);
    parts.push(`<line x1="${sx(0)}" y1="${sy(v)}" x2="${sx(1)}" y2="${sy(v)}" stroke="#e4e7ea"/>`);
    parts.push(`<text x="${sx(v)}" y="${sy(0) + 16}" text-anchor="middle" font-size="11">${label}</text>`);
    parts.push(`<text x="${sx(0) - 6}" y="${sy(v) + 4}" text-anchor="end" font-size="11">${label}</text>`);
  }
  parts.push(`<rect x="${sx(0)}" y="${sy(1)}" width="${sx(1) - sx(0)}" height="${sy(0) - sy(1)}" fill="none" stroke="#55606b"/>`);
  parts.push(`<text x="${(sx(0) + sx(1)) / 2}" y="${H - 8}" text-anchor="middle" font-size="12">${xlabel}</text>`);
  parts.push(`<text transform="translate(14 ${(sy(0) + sy(1)) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${ylabel}</text>`);
  parts.push(extra || "");
  for (const s of series) {
    const pts = s.x.map((x, i) => `${sx(x).toFixed(1)},${sy(s.y[i] === null ? 0 : s.y[i]).toFixed(1)}`).join(" ");
    parts.push(`<polyline points="${pts}" fill="none" stroke="${s.colour}" stroke-width="2.5" stroke-linejoin="round"/>`);
  }
  parts.push("</svg>");
  return parts.join("");
}

function drawPlots() {
  const area = document.getElementById("plot-area"), legend = document.getElementById("legend");
  legend.replaceChildren();
  if (!selected.length) {
    area.replaceChildren(el("p", {class: "hint"}, "Tick rows in the tables to draw their ROC and PR curves."));
    return;
  }
  const roc = [], pr = [];
  for (const id of selected) {
    const [t, r] = rowOf(id), c = DATA.records[id].curves, colour = colourOf(id);
    const empty = !c || !c.roc.fpr.length;
    if (!empty) {
      roc.push({x: c.roc.fpr, y: c.roc.tpr, colour});
      pr.push({x: c.pr.recall, y: c.pr.precision, colour});
    }
    legend.append(el("li", {}, el("span", {class: "swatch", style: "background:" + colour}),
      `${r.method} \u2014 ${t.title}: AUROC ${fmt(r.auroc, "pct")}, AP ${fmt(r.ap, "pct")}, FPR95 ${fmt(r.fpr95, "pct")}` +
      (empty ? " (no curve: the split lacks one class)" : "")));
  }
  const tpr95 = `<line x1="${sx(0)}" y1="${sy(0.95)}" x2="${sx(1)}" y2="${sy(0.95)}" stroke="#999" stroke-dasharray="4 3"/>` +
    `<text x="${sx(1) - 4}" y="${sy(0.95) + 14}" text-anchor="end" font-size="10" fill="#777">TPR 95 %</text>`;
  area.innerHTML = plotSvg("ROC", "false positive rate", "true positive rate", roc, tpr95) +
    plotSvg("Precision\u2013recall", "recall", "precision", pr, "");
}

function drawGallery() {
  const gallery = document.getElementById("gallery");
  const figures = [];
  for (const id of selected) {
    const [t, r] = rowOf(id);
    for (const p of DATA.panels[id] || []) {
      figures.push(el("figure", {}, el("img", {src: p.src, alt: p.name}),
        el("figcaption", {}, `${r.method} \u2014 ${t.title}: ${p.name}`)));
    }
  }
  gallery.replaceChildren(...(figures.length ? [el("h2", {}, "Example score maps of the ticked rows"), ...figures] : []));
}

function flat(v) {  // a one-level object reads better as "key value, key value" than as JSON
  if (v === null || typeof v !== "object") return fmt(v, "text");
  if (Array.isArray(v) || Object.values(v).some(x => x !== null && typeof x === "object")) return JSON.stringify(v);
  return Object.entries(v).map(([k, x]) => k + " " + fmt(x, "text")).join(", ") || "(none)";
}

function kvTable(obj) {
  return el("table", {}, ...Object.entries(obj || {}).map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, flat(v)))));
}

function categoryTable(categories) {  // metrics.categories: one row per frame category
  const cols = [["pixel", "auroc", "AUROC %"], ["pixel", "ap", "AP %"], ["pixel", "fpr95", "FPR95 %"],
    ["components", "siou", "sIoU %"], ["components", "ppv", "PPV %"], ["components", "f1_mean", "mean F1 %"]];
  const head = el("tr", {}, el("th", {}, "category"), el("th", {}, "frames"), ...cols.map(c => el("th", {}, c[2])));
  const rows = Object.entries(categories).map(([name, c]) => el("tr", {}, el("th", {}, name), el("td", {}, fmt(c.num_images, "int")),
    ...cols.map(([part, key]) => el("td", {}, fmt(c[part] ? c[part][key] : null, "pct")))));
  return el("table", {class: "categories"}, el("thead", {}, head), el("tbody", {}, ...rows));
}

function instanceSummary(metrics) {  // instance AP of score components and, for meta methods, of the meta segments
  const out = {};
  for (const [name, m] of [["score components", metrics.instances], ["meta segments", (metrics.segments || {}).instances]]) {
    if (m) out[name] = `AP ${fmt(m.ap, "pct")} %, AP50 ${fmt(m.ap50, "pct")} % (${fmt(m.num_pred_instances, "int")} predicted, ${fmt(m.num_gt_instances, "int")} ground truth)`;
  }
  return Object.keys(out).length ? kvTable(out) : el("p", {}, "no instance metrics");
}

function openDetails(id) {
  openId = id;
  const [t, r] = rowOf(id), rec = DATA.records[id], panel = document.getElementById("details");
  const close = el("button", {onclick: () => {
    openId = null; panel.hidden = true; document.body.classList.remove("with-details"); saveHash(); redraw();
  }}, "close");
  const choice = rec.metrics.components ? rec.metrics.components.threshold_choice : null;
  panel.replaceChildren(close, el("h3", {}, `${r.method} on ${t.title}`),
    kvTable({record: rec.file, "content address": id, "rank rule": r.note ? t.notes[r.note - 1] : "best record of this method"}),
    el("h4", {}, "Component threshold"), choice ? kvTable(choice) : el("p", {}, "no component metrics"),
    el("h4", {}, "Instances (OoDIS rules)"), instanceSummary(rec.metrics),
    ...(rec.metrics.categories ? [el("h4", {}, "Per category"), categoryTable(rec.metrics.categories)] : []),
    el("h4", {}, "Conventions"), kvTable(rec.conventions),
    el("h4", {}, "Provenance"), kvTable(rec.provenance),
    el("h4", {}, "Dataset"), kvTable(rec.dataset),
    el("h4", {}, "Cost"), kvTable(rec.cost),
    ...(DATA.panels[id] || []).map(p => el("figure", {}, el("img", {src: p.src, alt: p.name}), el("figcaption", {}, p.name))),
    el("details", {}, el("summary", {}, "method configuration"), el("pre", {}, JSON.stringify(rec.method, null, 1))),
    el("details", {}, el("summary", {}, "all metrics"), el("pre", {}, JSON.stringify(rec.metrics, null, 1))));
  panel.hidden = false;
  document.body.classList.add("with-details");
  saveHash();
  redraw();
}

function saveHash() {
  const parts = [];
  if (selected.length) parts.push("select=" + selected.join(","));
  if (openId) parts.push("open=" + openId);
  if (lastSort) parts.push("sort=" + lastSort);
  try { history.replaceState(null, "", "#" + parts.join("&")); } catch (e) { /* some local-file settings refuse; harmless */ }
}

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const sort = (params.get("sort") || "").split(":");
  if (sort[0]) {
    lastSort = sort[0] + ":" + (sort[1] === "asc" ? "asc" : "desc");
    for (const t of DATA.tables) if (t.columns.some(c => c.key === sort[0])) {
      t.sort = {key: sort[0], dir: sort[1] === "asc" ? "asc" : "desc"};
      sortRows(t);
    }
  }
  if (!params.has("select") && !params.has("open")) {  // first visit: the three best rows of the first table
    if (DATA.tables.length) selected.push(...DATA.tables[0].rows.slice(0, 3).map(r => r.id));
    return;
  }
  for (const token of (params.get("select") || "").split(",").filter(Boolean))
    for (const t of DATA.tables) for (const r of t.rows)
      if ((token === r.id || token === r.method || (token === "top" && r.rank === 1)) && !selected.includes(r.id)) selected.push(r.id);
  const open = params.get("open");
  if (open && DATA.records[open]) openId = open;
}

document.getElementById("rules").textContent = DATA.rules;
document.getElementById("units").textContent = DATA.units;
readHash();
if (openId) openDetails(openId); else redraw();
