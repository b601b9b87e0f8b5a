// vesyncd dashboard: SVG charts drawn by our own code (no library; see docs/http.md).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;

function svgEl(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function formatW(w) {
  if (w === null || w === undefined) return "–";
  return Math.abs(w) >= 10000 ? `${(w / 1000).toFixed(2)} kW` : `${Number(w).toFixed(1)} W`;
}

function formatWh(wh) {
  if (wh >= 1000) return `${(wh / 1000).toFixed(2)} kWh`;
  return `${wh.toFixed(wh >= 10 || wh === 0 ? 0 : wh >= 0.1 ? 2 : 4)} Wh`;
}

const pad = (n) => String(n).padStart(2, "0");
const clock = (ms) => { const d = new Date(ms); return `${pad(d.getHours())}:${pad(d.getMinutes())}`; };

// The card's sparkline: the last hour, scaled to its peak.
function drawSpark(svg, points, now) {
  const shown = points.filter(([t]) => t >= now - HOUR_MS);
  svg.replaceChildren();
  if (!shown.length) return;
  const max = Math.max(1, ...shown.map(([, w]) => w));
  const xy = shown.map(([t, w]) => `${(120 * (1 - (now - t) / HOUR_MS)).toFixed(2)},${(29 - 28 * w / max).toFixed(2)}`);
  xy.push(`120,${(29 - 28 * shown[shown.length - 1][1] / max).toFixed(2)}`);
  svg.append(svgEl("title", {}, `last hour, peak ${max.toFixed(1)} W`), svgEl("polyline", { points: xy.join(" ") }));
}

// The detail page's live chart: a line over a time axis (the last hour or the last 24 h), with a
// gap wherever readings are missing for longer than `gapMs`.
function drawLive(container, points, now, spanMs, gapMs) {
  const W = 380, H = 190, left = 44, right = 8, top = 10, bottom = 20;
  const shown = points.filter(([t]) => t >= now - spanMs && t <= now + 60000);
  const max = niceMax(Math.max(1, ...shown.map(([, w]) => w)));
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "live-svg",
                            "aria-label": `power over the last ${spanMs === HOUR_MS ? "hour" : "24 hours"}` });
  const x = (t) => left + (W - left - right) * (1 - (now - t) / spanMs);
  const y = (w) => top + (H - top - bottom) * (1 - w / max);
  for (let i = 0; i <= 4; i++) {
    svg.append(svgEl("line", { x1: left, x2: W - right, y1: y(max * i / 4), y2: y(max * i / 4) }),
               svgEl("text", { x: left - 4, y: y(max * i / 4) + 3, "text-anchor": "end" }, `${+(max * i / 4).toFixed(1)} W`));
  }
  const ticks = spanMs === HOUR_MS ? 4 : 6;
  for (let i = 0; i <= ticks; i++) {
    const t = now - spanMs + spanMs * i / ticks;
    svg.append(svgEl("text", { x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" }, clock(t)));
  }
  let run = [];
  const flush = () => {
    if (run.length === 1) svg.append(svgEl("circle", { class: "dot-point", cx: run[0][0], cy: run[0][1], r: 2 }));
    if (run.length > 1) svg.append(svgEl("polyline", { class: "line", points: run.map((p) => p.join(",")).join(" ") }));
    run = [];
  };
  let previous = null;
  for (const [t, w] of shown) {
    if (previous !== null && t - previous > gapMs) flush();
    run.push([x(t).toFixed(1), y(w).toFixed(1)]);
    previous = t;
  }
  flush();
  // Machine-readable figures, for people with screen readers (and for the browser test).
  svg.dataset.points = String(shown.length);
  svg.dataset.last = shown.length ? String(shown[shown.length - 1][1]) : "";
  svg.prepend(svgEl("title", {}, shown.length ? `latest ${shown[shown.length - 1][1]} W, peak ${Math.max(...shown.map(([, w]) => w))} W`
                                              : "no readings yet"));
  container.replaceChildren(svg);
}

// Energy history bars (per hour of a day, per day of a month, per month of a year).
function drawBars(container, doc) {
  const W = 600, H = 260, left = 40, bottom = 22, top = 10;
  const buckets = doc.buckets;
  const max = niceMax(Math.max(...buckets.map((b) => b.wh)));
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `energy per ${doc.unit}` });
  for (let i = 0; i <= 4; i++) {
    const y = top + (H - top - bottom) * (1 - i / 4);
    svg.append(svgEl("line", { x1: left, x2: W, y1: y, y2: y }),
               svgEl("text", { x: left - 4, y: y + 3, "text-anchor": "end" }, formatWh(max * i / 4)));
  }
  const slot = (W - left) / buckets.length;
  const every = Math.ceil(buckets.length / 12);
  buckets.forEach((b, i) => {
    const h = (H - top - bottom) * b.wh / max;
    const bar = svgEl("rect", { class: "bar", x: left + i * slot + slot * 0.15, width: slot * 0.7,
                                y: H - bottom - h, height: Math.max(h, 0) });
    const cost = (b.cost === undefined || b.cost === null) ? "" : `, ${money(b.cost, doc.currency)}`;
    bar.append(svgEl("title", {}, `${b.label}: ${formatWh(b.wh)}${cost}`));
    svg.append(bar);
    if (i % every === 0) svg.append(svgEl("text", { x: left + (i + 0.5) * slot, y: H - 6, "text-anchor": "middle" }, shortLabel(b.label)));
  });
  container.replaceChildren(svg);
}

function shortLabel(label) {
  // 2026-11-05 -> 5, 2026-11 -> Nov; hour labels are short already.
  let m = /^\d{4}-\d{2}-(\d{2})$/.exec(label);
  if (m) return String(Number(m[1]));
  m = /^(\d{4})-(\d{2})$/.exec(label);
  if (m) return new Date(Number(m[1]), Number(m[2]) - 1, 1).toLocaleString(undefined, { month: "short" });
  return label;
}

function money(value, currency) {
  if (value === null || value === undefined || !currency) return "–";
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(value);
  } catch (e) {
    return `${Number(value).toFixed(2)} ${currency}`;
  }
}
