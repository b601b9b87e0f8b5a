// vesyncd dashboard: plain JavaScript, no build step, no third-party code.
"use strict";

const state = { csrf: null, plugs: new Map(), points: new Map(), events: null, detail: null };
const HOUR_MS = 3600 * 1000;
const $ = (sel, root = document) => root.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";

class HttpError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let doc = null;
  try { doc = await response.json(); } catch (e) { doc = null; }
  if (response.status === 401 && path !== "/api/session") showLogin();
  if (!response.ok) throw new HttpError(response.status, doc);
  return doc;
}

const plugPath = (id) => `/api/plugs/${encodeURIComponent(id)}`;

// -- session -----------------------------------------------------------------------------

function showLogin(message) {
  state.csrf = null;
  if (state.events) { state.events.close(); state.events = null; }
  setLive(false);
  $("#login").hidden = false;
  $("#plugs").hidden = true;
  $("#detail").hidden = true;
  $("#empty").hidden = true;
  $("#logout").hidden = true;
  $("#login-error").textContent = message || "";
  $("#token").focus();
}

async function start() {
  try {
    const session = await api("GET", "/api/session");
    state.csrf = session.csrf;
  } catch (e) {
    showLogin(e.status === 401 ? "" : e.message);
    return;
  }
  $("#login").hidden = true;
  $("#plugs").hidden = false;
  $("#logout").hidden = !state.csrf;
  await loadPlugs();
  openEvents();
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const button = $("#login button");
  button.disabled = true;
  try {
    const session = await api("POST", "/api/session", { token: $("#token").value.trim() });
    state.csrf = session.csrf;
    $("#token").value = "";
    await start();
  } catch (e) {
    $("#login-error").textContent = e.status === 401 ? "That is not the control token." : e.message;
  } finally {
    button.disabled = false;
  }
});

$("#logout").addEventListener("click", async () => {
  try { await api("DELETE", "/api/session"); } catch (e) { /* already gone */ }
  state.plugs.clear();
  $("#plugs").replaceChildren();
  showLogin();
});

// -- plugs -------------------------------------------------------------------------------

async function loadPlugs() {
  try {
    const doc = await api("GET", "/api/plugs");
    $("#plugs").replaceChildren();
    state.plugs.clear();
    for (const plug of doc.plugs) render(plug);
    updateEmpty();
    await Promise.all(doc.plugs.map(loadPower));
  } catch (e) {
    if (e.status !== 401) showMessage(e.message);
  }
}

async function loadPower(plug) {
  try {
    const doc = await api("GET", `${plugPath(plug.id)}/power`);
    const mine = state.points.get(plug.id) || [];
    const merged = doc.points.map(([t, w]) => [t * 1000, w]).concat(mine);
    merged.sort((a, b) => a[0] - b[0]);
    state.points.set(plug.id, merged);
    drawSpark(plug.id);
  } catch (e) { /* the sparkline fills from live events */ }
}

function showMessage(text) {
  const el = $("#message");
  el.textContent = text || "";
  el.hidden = !text;
}

function updateEmpty() {
  $("#empty").hidden = state.plugs.size > 0 || !$("#login").hidden;
}

const fmt = (value, digits, unit) => (value === null || value === undefined) ? "–" : `${Number(value).toFixed(digits)} ${unit}`;

function card(id) {
  return document.querySelector(`.card[data-id="${CSS.escape(id)}"]`);
}

function render(plug) {
  state.plugs.set(plug.id, plug);
  let el = card(plug.id);
  if (!el) {
    el = $("#card-template").content.firstElementChild.cloneNode(true);
    el.dataset.id = plug.id;
    $(".relay", el).addEventListener("change", (ev) => switchPlug(plug.id, ev.target));
    $(".name", el).addEventListener("click", () => startRename(plug.id));
    $(".details", el).addEventListener("click", () => openDetail(plug.id));
    insertSorted(el, plug);
  }
  el.classList.toggle("online", plug.online);
  el.classList.toggle("offline", !plug.online);
  const name = $(".name", el);
  if (!name.querySelector("input")) {
    name.textContent = plug.alias || plug.id;
    name.title = `${plug.id} – click to rename`;
  }
  $(".dot", el).title = plug.online ? "online" : "offline";
  const relay = $(".relay", el);
  if (!relay.dataset.busy) {
    relay.checked = plug.relay === "on";
    relay.disabled = !plug.online;
  }
  el.dataset.relay = plug.relay || "unknown";
  $(".watts", el).textContent = fmt(plug.power_w, 1, "W");
  $(".volts", el).textContent = fmt(plug.voltage_v, 1, "V");
  $(".today", el).textContent = fmt(plug.energy_today_kwh, 3, "kWh");
  $(".lifetime", el).textContent = fmt(plug.energy_lifetime_kwh, 3, "kWh");
  if (state.detail === plug.id) $("#detail-name").textContent = plug.alias || plug.id;
  updateEmpty();
}

function insertSorted(el, plug) {
  const key = (plug.alias || plug.id).toLowerCase();
  const container = $("#plugs");
  for (const other of container.children) {
    const p = state.plugs.get(other.dataset.id);
    if (p && (p.alias || p.id).toLowerCase() > key) { container.insertBefore(el, other); return; }
  }
  container.appendChild(el);
}

async function switchPlug(id, input) {
  const el = card(id);
  const want = input.checked ? "on" : "off";
  input.dataset.busy = "1";
  input.disabled = true;
  $(".card-error", el).textContent = "";
  try {
    const plug = await api("POST", `${plugPath(id)}/${want}`);
    delete input.dataset.busy;
    render(plug);
  } catch (e) {
    delete input.dataset.busy;
    $(".card-error", el).textContent = e.message;
    const plug = state.plugs.get(id);
    if (plug) render(plug);
  }
}

function startRename(id) {
  const el = card(id);
  const name = $(".name", el);
  if (name.querySelector("input")) return;
  const plug = state.plugs.get(id);
  const input = document.createElement("input");
  input.value = plug.alias || "";
  input.placeholder = plug.id;
  input.maxLength = 64;
  input.setAttribute("aria-label", "new name");
  name.replaceChildren(input);
  input.focus();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    if (save && input.value.trim() !== (plug.alias || "")) {
      try {
        render(await api("PUT", `${plugPath(id)}/alias`, { alias: input.value.trim() || null }));
        $(".card-error", el).textContent = "";
      } catch (e) {
        $(".card-error", el).textContent = e.message;
      }
    }
    name.replaceChildren();
    render(state.plugs.get(id));
  };
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") finish(true);
    if (ev.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}

// -- sparklines --------------------------------------------------------------------------

function addPoint(id, atMs, watts) {
  if (typeof watts !== "number") return;
  const points = state.points.get(id) || [];
  points.push([atMs, watts]);
  const cutoff = Date.now() - HOUR_MS;
  while (points.length && (points[0][0] < cutoff || points.length > 2000)) points.shift();
  state.points.set(id, points);
  drawSpark(id);
}

function drawSpark(id) {
  const el = card(id);
  if (!el) return;
  const svg = $(".spark", el);
  const now = Date.now();
  const points = (state.points.get(id) || []).filter(([t]) => t >= now - HOUR_MS);
  svg.replaceChildren();
  if (!points.length) return;
  const max = Math.max(1, ...points.map(([, w]) => w));
  const xy = points.map(([t, w]) => `${(120 * (1 - (now - t) / HOUR_MS)).toFixed(2)},${(29 - 28 * w / max).toFixed(2)}`);
  xy.push(`120,${(29 - 28 * points[points.length - 1][1] / max).toFixed(2)}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", xy.join(" "));
  const title = document.createElementNS(SVG, "title");
  title.textContent = `last hour, peak ${max.toFixed(1)} W`;
  svg.append(title, line);
}

// -- live events -------------------------------------------------------------------------

// Every event is the one event shape of docs/control.md ({event, plug, name, alias, at, ts, data}),
// plus "state": the plug's current state when the daemon knows the plug.
const KINDS = ["plug_new", "online", "offline", "relay", "runtime", "energy", "rssi", "alias", "power_on", "forgotten",
               "plug_conflict", "plug_pending"];

function setLive(on) {
  const el = $("#live");
  el.classList.toggle("on", on);
  el.classList.toggle("off", !on);
  el.textContent = on ? "live" : "offline";
}

function openEvents() {
  if (state.events) state.events.close();
  const source = new EventSource("/api/events");
  state.events = source;
  source.onopen = () => setLive(true);
  source.onerror = () => {
    setLive(false);
    if (source.readyState === EventSource.CLOSED) setTimeout(start, 3000);
  };
  for (const kind of KINDS) source.addEventListener(kind, (ev) => onEvent(JSON.parse(ev.data)));
}

function onEvent(event) {
  if (event.event === "forgotten") {
    state.plugs.delete(event.plug);
    const el = card(event.plug);
    if (el) el.remove();
    updateEmpty();
    return;
  }
  if (event.state) render(event.state);
  if (event.event === "runtime") addPoint(event.plug, event.ts * 1000, event.data.power_w);
  if (event.event === "energy" && state.detail === event.plug) loadChart();
  if (event.event === "plug_conflict") {
    const el = card(event.plug);
    const fields = Array.isArray(event.data.fields) ? event.data.fields.join(", ") : "";
    // Plug-supplied values only ever reach the page as text.
    if (el) $(".card-error", el).textContent = `A device logged in with this plug's id but a different ${fields || "identity"}.`;
  }
}

// -- detail view: energy bar charts ------------------------------------------------------

const pad = (n) => String(n).padStart(2, "0");

function todayValue(period) {
  const d = new Date();
  if (period === "day") return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (period === "month") return `${d.getFullYear()}-${pad(d.getMonth() + 1)}`;
  return String(d.getFullYear());
}

function shift(period, value, step) {
  const [y, m, d] = value.split("-").map(Number);
  if (period === "day") {
    const t = new Date(y, m - 1, d + step);
    return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}`;
  }
  if (period === "month") {
    const t = new Date(y, m - 1 + step, 1);
    return `${t.getFullYear()}-${pad(t.getMonth() + 1)}`;
  }
  return String(y + step);
}

function openDetail(id) {
  state.detail = id;
  state.period = "day";
  state.value = todayValue("day");
  $("#period").value = "day";
  const plug = state.plugs.get(id);
  $("#detail-name").textContent = plug ? (plug.alias || plug.id) : id;
  $("#plugs").hidden = true;
  $("#detail").hidden = false;
  loadChart();
}

$("#back").addEventListener("click", () => {
  state.detail = null;
  $("#detail").hidden = true;
  $("#plugs").hidden = false;
});
$("#period").addEventListener("change", (ev) => {
  state.period = ev.target.value;
  state.value = todayValue(state.period);
  loadChart();
});
$("#prev").addEventListener("click", () => { state.value = shift(state.period, state.value, -1); loadChart(); });
$("#next").addEventListener("click", () => { state.value = shift(state.period, state.value, 1); loadChart(); });

async function loadChart() {
  const id = state.detail;
  $("#period-value").textContent = state.value;
  try {
    const doc = await api("GET", `${plugPath(id)}/energy?${state.period}=${encodeURIComponent(state.value)}`);
    if (state.detail !== id) return;
    drawBars(doc);
  } catch (e) {
    $("#chart").replaceChildren();
    $("#chart-total").textContent = e.message;
  }
}

function drawBars(doc) {
  const W = 600, H = 260, left = 40, bottom = 22, top = 10;
  const buckets = doc.buckets;
  const max = niceMax(Math.max(...buckets.map((b) => b.wh)));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `energy per ${doc.unit}`);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.appendChild(el);
    return el;
  };
  for (let i = 0; i <= 4; i++) {
    const y = top + (H - top - bottom) * (1 - i / 4);
    add("line", { x1: left, x2: W, y1: y, y2: y });
    add("text", { x: left - 4, y: y + 3, "text-anchor": "end" }, formatWh(max * i / 4));
  }
  const slot = (W - left) / buckets.length;
  const every = Math.ceil(buckets.length / 12);
  buckets.forEach((b, i) => {
    const h = (H - top - bottom) * b.wh / max;
    const bar = add("rect", { class: "bar", x: left + i * slot + slot * 0.15, width: slot * 0.7,
                              y: H - bottom - h, height: Math.max(h, 0) });
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${b.label}: ${formatWh(b.wh)}`;
    bar.appendChild(title);
    if (i % every === 0) add("text", { x: left + (i + 0.5) * slot, y: H - 6, "text-anchor": "middle" }, shortLabel(b.label));
  });
  $("#chart").replaceChildren(svg);
  $("#chart-total").textContent = `Total: ${formatWh(doc.total_wh)} (${doc.timezone})`;
}

function shortLabel(label) {
  // 2026-11-05 -> 5, 2026-11 -> Nov; hour labels are short already.
  let m = /^\d{4}-\d{2}-(\d{2})$/.exec(label);
  if (m) return String(Number(m[1]));
  m = /^(\d{4})-(\d{2})$/.exec(label);
  if (m) return new Date(Number(m[1]), Number(m[2]) - 1, 1).toLocaleString(undefined, { month: "short" });
  return label;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function formatWh(wh) {
  return wh >= 1000 ? `${(wh / 1000).toFixed(2)} kWh` : `${wh.toFixed(wh >= 10 || wh === 0 ? 0 : 2)} Wh`;
}

setInterval(() => { for (const id of state.plugs.keys()) drawSpark(id); }, 60000);
start();
