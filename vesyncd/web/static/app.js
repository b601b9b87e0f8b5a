// vesyncd dashboard: plain JavaScript, no build step, no third-party code. This file (loaded last)
// holds the session, the event stream and the totals; core.js, chart.js, cards.js, detail.js and
// automation.js draw the rest.
"use strict";

// -- session -----------------------------------------------------------------------------

async function showLogin(message) {
  state.csrf = null;
  if (state.events) { state.events.close(); state.events = null; }
  setLive(false);
  $("#login").hidden = false;
  $("#list").hidden = true;
  $("#detail").hidden = true;
  $("#totals").hidden = true;
  $("#logout").hidden = true;
  $("#login-error").textContent = message || "";
  $("#token").focus();
  try {
    const hint = await api("GET", "/api/login");
    if (hint.token_path) {
      $("#token-path").textContent = hint.token_path;
      const path = /^[\w./-]+$/.test(hint.token_path) ? hint.token_path : `'${hint.token_path.replace(/'/g, "'\\''")}'`;
      $("#token-command").textContent = `sudo cat ${path}`;
    }
  } catch (e) { /* the generic hint stays */ }
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
  $("#list").hidden = false;
  $("#totals").hidden = false;
  $("#logout").hidden = !state.csrf;
  await loadPlugs();
  loadTotals();
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

// Every plug, a page of the API at a time (GET /api/plugs pages its answer).
async function loadPlugs() {
  try {
    const plugs = new Map();
    let offset = 0;
    while (offset !== null) {
      const doc = await api("GET", `/api/plugs?limit=1000&offset=${offset}`);
      for (const plug of doc.plugs) plugs.set(plug.id, plug);
      offset = doc.next_offset === undefined ? null : doc.next_offset;
    }
    state.plugs = plugs;
    refreshList();
  } catch (e) {
    if (e.status !== 401) showMessage(e.message);
  }
}

function showMessage(text) {
  const el = $("#message");
  el.textContent = text || "";
  el.hidden = !text;
}

// -- totals ------------------------------------------------------------------------------

let totalsTimer = null;
async function loadTotals() {
  totalsTimer = null;
  try {
    const doc = await api("GET", "/api/totals");
    const first = !state.currency && doc.currency;
    state.currency = doc.currency || null;
    if (first) refreshList();
    $("#total-power").textContent = formatW(doc.power_w);
    $("#total-today").textContent = fmt(doc.today_wh / 1000, 3, "kWh");
    $("#total-cost").textContent = money(doc.today_cost, doc.currency);
    $("#total-cost").parentElement.hidden = !doc.currency;
  } catch (e) { /* shown again on the next event */ }
}

function totalsSoon() {
  // At most one request every 5 s, however many plugs report.
  if (totalsTimer === null) totalsTimer = setTimeout(loadTotals, 5000);
}

// -- live events -------------------------------------------------------------------------

// Every event is the one event shape of docs/control.md ({event, plug, name, alias, at, ts, data}),
// plus "state": the plug's current state when the daemon knows the plug.
const KINDS = ["plug_new", "online", "offline", "relay", "runtime", "energy", "rssi", "alias", "power_on", "forgotten",
               "plug_conflict", "plug_pending", "rule", "rule_running"];

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

function addPoint(id, atMs, watts) {
  if (typeof watts !== "number") return;
  const points = state.points.get(id) || [];
  points.push([atMs, watts]);
  const cutoff = Date.now() - HOUR_MS;
  while (points.length && (points[0][0] < cutoff || points.length > MAX_POINTS)) points.shift();
  state.points.set(id, points);
  drawCardSpark(id);
  if (state.detail === id) drawDetailChart();
}

function onEvent(event) {
  if (event.event === "forgotten") {
    state.plugs.delete(event.plug);
    state.timers.delete(event.plug);
    if (state.detail === event.plug) closeDetail();
    else refreshList();
    totalsSoon();
    return;
  }
  if (event.state) render(event.state);
  if (event.event === "runtime") { addPoint(event.plug, event.ts * 1000, event.data.power_w); totalsSoon(); }
  if (event.event === "energy") { totalsSoon(); wantCost(event.plug, true); if (state.detail === event.plug) loadHistory(); }
  if (event.event === "relay" && state.detail === event.plug) reloadAutomation();
  if (event.event === "relay" && event.data.cause === "timer") keepTimer(event.plug, null);
  if (event.event === "rule") {
    const el = card(event.plug);
    const d = event.data;
    // Numbers only from the event; shown as text like everything else.
    if (el) $(".card-error", el).textContent = `Rule ${String(d.rule)}: ${String(d.action)} at ${Number(d.power_w).toFixed(1)} W${d.ok === false ? " (failed)" : ""}`;
    if (state.detail === event.plug) reloadAutomation();
  }
  if (event.event === "plug_conflict") {
    const el = card(event.plug);
    const fields = Array.isArray(event.data.fields) ? event.data.fields.join(", ") : "";
    // Plug-supplied values only ever reach the page as text.
    if (el) $(".card-error", el).textContent = `A device logged in with this plug's id but a different ${fields || "identity"}.`;
  }
}

// Sparklines slide left as time passes; a list sorted by power follows the readings.
setInterval(() => {
  for (const el of document.querySelectorAll("#plugs .card")) drawCardSpark(el.dataset.id);
  if (state.detail) drawDetailChart();
}, 30000);
setInterval(() => { if (list.sort === "power" && !state.detail && !document.querySelector("#plugs input")) refreshList(); }, 10000);
start();
