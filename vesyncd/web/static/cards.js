// vesyncd dashboard: the plug list. Every plug's state is kept in `state.plugs`; only one page of
// cards (PAGE_SIZE) is in the page at a time, so a thousand plugs cost what fifty do.
"use strict";

const PAGE_SIZE = 48;
const list = { page: 0, view: [], query: "", filter: "", sort: "name" };

const fmt = (value, digits, unit) => (value === null || value === undefined) ? "–" : `${Number(value).toFixed(digits)} ${unit}`;
const plugName = (plug) => plug.alias || plug.id;

function card(id) {
  return document.querySelector(`#plugs .card[data-id="${CSS.escape(id)}"]`);
}

function matches(plug) {
  if (list.filter === "online" && !plug.online) return false;
  if (list.filter === "offline" && plug.online) return false;
  if (list.filter === "on" && plug.relay !== "on") return false;
  if (list.filter === "off" && plug.relay !== "off") return false;
  if (list.query) {
    const q = list.query;
    if (!plug.id.toLowerCase().includes(q) && !(plug.alias || "").toLowerCase().includes(q)) return false;
  }
  return true;
}

function byName(a, b) {
  const x = plugName(a).toLowerCase(), y = plugName(b).toLowerCase();
  return x < y ? -1 : x > y ? 1 : (a.id < b.id ? -1 : 1);
}

function byPower(a, b) {
  const x = a.power_w === null || a.power_w === undefined ? -1 : a.power_w;
  const y = b.power_w === null || b.power_w === undefined ? -1 : b.power_w;
  return y - x || byName(a, b);
}

// Recompute which plugs are shown and in what order, then draw the current page's cards.
function refreshList() {
  list.view = [...state.plugs.values()].filter(matches).sort(list.sort === "power" ? byPower : byName);
  const pages = Math.max(1, Math.ceil(list.view.length / PAGE_SIZE));
  list.page = Math.min(list.page, pages - 1);
  const shown = list.view.slice(list.page * PAGE_SIZE, (list.page + 1) * PAGE_SIZE);
  const container = $("#plugs");
  const keep = new Map([...container.children].map((el) => [el.dataset.id, el]));
  const cards = shown.map((plug) => keep.get(plug.id) || newCard(plug));
  container.replaceChildren(...cards);
  for (const plug of shown) renderCard(plug);
  $("#pager").hidden = pages <= 1;
  $("#page-info").textContent = `${list.page + 1} / ${pages}`;
  $("#page-prev").disabled = list.page === 0;
  $("#page-next").disabled = list.page >= pages - 1;
  const total = state.plugs.size;
  const plural = (n) => `${n} plug${n === 1 ? "" : "s"}`;
  $("#count").textContent = list.view.length === total ? plural(total) : `${list.view.length} of ${plural(total)}`;
  $("#empty").hidden = total > 0;
  for (const plug of shown) { loadChart(plug.id); wantCost(plug.id); }
}

// Today's cost on the cards in view: each card's periods from its plug's JSON, a few requests at a
// time, again at most once a minute after its energy reports. Only with a tariff.
const COST_REFRESH_MS = 60000;
const costQueue = [];
let costRunning = 0;

function wantCost(id, stale = false) {
  if (!state.currency || !card(id)) return;
  const known = state.periods.get(id);
  if (known && !(stale && Date.now() - known.at > COST_REFRESH_MS)) return;
  if (costQueue.includes(id)) return;
  costQueue.push(id);
  pumpCost();
}

async function pumpCost() {
  while (costRunning < 4 && costQueue.length) {
    const id = costQueue.shift();
    if (!card(id)) continue;
    costRunning += 1;
    try {
      const doc = await api("GET", plugPath(id));
      if (doc.periods) state.periods.set(id, { at: Date.now(), doc: doc.periods });
      const plug = state.plugs.get(id);
      if (plug) renderCard(plug);
    } catch (e) { /* the card keeps its kWh */ }
    costRunning -= 1;
  }
}

function newCard(plug) {
  const el = $("#card-template").content.firstElementChild.cloneNode(true);
  el.dataset.id = plug.id;
  $(".relay", el).addEventListener("change", (ev) => switchPlug(plug.id, ev.target));
  $(".name", el).addEventListener("click", () => startRename(plug.id));
  $(".edit", el).addEventListener("click", () => startRename(plug.id));
  $(".details", el).addEventListener("click", () => openDetail(plug.id));
  return el;
}

// Store a plug's new state and redraw its card (if it is on the page) and the detail view.
function render(plug) {
  const isNew = !state.plugs.has(plug.id);
  state.plugs.set(plug.id, plug);
  if (isNew) { scheduleRefresh(); return; }
  renderCard(plug);
  if (state.detail === plug.id) renderDetail(plug);
}

let refreshPending = false;
function scheduleRefresh() {
  // Many plugs may appear at once (a reconnect storm): one redraw per frame.
  if (refreshPending) return;
  refreshPending = true;
  requestAnimationFrame(() => { refreshPending = false; refreshList(); });
}

function renderCard(plug) {
  const el = card(plug.id);
  if (!el) return;
  el.classList.toggle("online", plug.online);
  el.classList.toggle("offline", !plug.online);
  const name = $(".name", el);
  if (!name.querySelector("input")) {
    name.textContent = plugName(plug);
    name.title = plug.id;
  }
  $(".dot", el).title = plug.online ? "online" : "offline";
  const relay = $(".relay", el);
  if (!relay.dataset.busy) {
    relay.checked = plug.relay === "on";
    relay.disabled = !plug.online;
  }
  el.dataset.relay = plug.relay || "unknown";
  $(".watts", el).textContent = fmt(plug.power_w, 1, "W");
  const periods = state.periods.get(plug.id);
  const cost = periods && periods.doc.currency ? ` · ${money(periods.doc.today_cost, periods.doc.currency)}` : "";
  $(".today", el).textContent = fmt(plug.energy_today_kwh, 3, "kWh") + cost;
  $(".lifetime", el).textContent = fmt(plug.energy_lifetime_kwh, 3, "kWh");
  drawCardSpark(plug.id);
  renderTimerBadge(plug.id);
}

function drawCardSpark(id) {
  const el = card(id);
  if (el) drawSpark($(".spark", el), state.points.get(id) || [], Date.now());
}

function renderTimerBadge(id) {
  const el = card(id);
  if (!el) return;
  const badge = $(".timer-badge", el);
  const timer = state.timers.get(id);
  badge.hidden = !timer;
  if (timer) badge.textContent = `${timer.switch} in ${leftText(timer)}`;
}

async function switchPlug(id, input) {
  const el = card(id);
  const want = input.checked ? "on" : "off";
  input.dataset.busy = "1";
  input.disabled = true;
  if (el) $(".card-error", el).textContent = "";
  try {
    const plug = await api("POST", `${plugPath(id)}/${want}`);
    delete input.dataset.busy;
    render(plug);
  } catch (e) {
    delete input.dataset.busy;
    if (el) $(".card-error", el).textContent = e.message;
    const plug = state.plugs.get(id);
    if (plug) render(plug);
  }
}

function startRename(id) {
  const el = card(id);
  if (!el) return;
  editAlias($(".name", el), state.plugs.get(id), (message) => { $(".card-error", el).textContent = message; },
            () => renderCard(state.plugs.get(id)));
}

// The chart data of a plug, once per plug; live readings are added from the event stream.
async function loadChart(id) {
  if (state.charts.has(id)) return;
  state.charts.add(id);
  try {
    const doc = await api("GET", `${plugPath(id)}/chart`);
    const mine = state.points.get(id) || [];
    const merged = doc.hour.map(([t, w]) => [t * 1000, w]).concat(mine);
    merged.sort((a, b) => a[0] - b[0]);
    state.points.set(id, merged);
    state.day.set(id, doc.day.map(([t, w]) => [t * 1000, w]));
    drawCardSpark(id);
    if (state.detail === id) drawDetailChart();
  } catch (e) {
    state.charts.delete(id);
  }
}

$("#search").addEventListener("input", (ev) => { list.query = ev.target.value.trim().toLowerCase(); list.page = 0; refreshList(); });
$("#filter").addEventListener("change", (ev) => { list.filter = ev.target.value; list.page = 0; refreshList(); });
$("#sort").addEventListener("change", (ev) => { list.sort = ev.target.value; list.page = 0; refreshList(); });
$("#page-prev").addEventListener("click", () => { list.page -= 1; refreshList(); window.scrollTo(0, 0); });
$("#page-next").addEventListener("click", () => { list.page += 1; refreshList(); window.scrollTo(0, 0); });
