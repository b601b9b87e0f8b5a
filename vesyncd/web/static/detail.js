// vesyncd dashboard: one plug's page (live chart, energy and cost, plug facts, history bars).
"use strict";

const detail = { range: "hour", period: "day", value: null, loaded: null };

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
  detail.period = "day";
  detail.value = todayValue("day");
  $("#period").value = "day";
  $("#detail-error").textContent = "";
  $("#automation-error").textContent = "";
  $("#list").hidden = true;
  $("#detail").hidden = false;
  window.scrollTo(0, 0);
  const plug = state.plugs.get(id);
  if (plug) renderDetail(plug);
  drawDetailChart();
  // Fresh 24 h means each time the page opens.
  state.charts.delete(id);
  loadChart(id);
  loadDetail();
  loadHistory();
}

function closeDetail() {
  state.detail = null;
  $("#detail").hidden = true;
  $("#list").hidden = false;
  refreshList();
}

// The plug's JSON with its periods, baseline and automation (GET /api/plugs/{plug}).
async function loadDetail() {
  const id = state.detail;
  try {
    const doc = await api("GET", plugPath(id));
    if (state.detail !== id) return;
    detail.loaded = doc;
    if (doc.periods) state.periods.set(id, { at: Date.now(), doc: doc.periods });
    renderPeriods(doc.periods);
    // Without energy insight there is no cost and no CSV export to offer.
    $("#export").parentElement.hidden = !doc.periods;
    renderBaseline(doc.baseline);
    renderAutomation(doc.automation);
    render(doc);
  } catch (e) {
    if (state.detail === id) $("#detail-error").textContent = e.message;
  }
}

function renderDetail(plug) {
  $("#detail-name").textContent = plugName(plug);
  $("#detail-name").title = plug.id;
  const relay = $("#detail-relay");
  if (!relay.dataset.busy) {
    relay.checked = plug.relay === "on";
    relay.disabled = !plug.online;
  }
  $("#detail-watts").textContent = fmt(plug.power_w, 1, "W");
  $("#info-status").textContent = plug.online ? `online, ${plug.relay || "unknown"}` : "offline";
  $("#info-rssi").textContent = plug.rssi_dbm === null || plug.rssi_dbm === undefined ? "–" : `${plug.rssi_dbm} dBm`;
  $("#info-firmware").textContent = plug.firmware || "–";
  $("#info-address").textContent = plug.address || "–";
  $("#info-seen").textContent = plug.last_seen ? new Date(plug.last_seen).toLocaleString() : "–";
  $("#info-id").textContent = plug.id;
  $("#info-poweron").value = plug.power_on || "";
  $("#export").href = `${plugPath(plug.id)}/export.csv?from=${new Date().getFullYear()}-01-01`;
}

const PERIODS = [["today", "Today"], ["yesterday", "Yesterday"], ["week", "This week"], ["month", "This month"], ["year", "This year"]];

function renderPeriods(periods) {
  const rows = PERIODS.map(([key, label]) => {
    const tr = document.createElement("tr");
    const wh = periods ? periods[`${key}_wh`] : null;
    const cost = periods ? periods[`${key}_cost`] : null;
    for (const text of [label, wh === null || wh === undefined ? "–" : (wh / 1000).toFixed(3),
                        money(cost, periods && periods.currency)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    tr.dataset.period = key;
    return tr;
  });
  $("#periods tbody").replaceChildren(...rows);
}

function renderBaseline(baseline) {
  const el = $("#baseline");
  if (!baseline || baseline.baseline_w === null || baseline.baseline_w === undefined) {
    el.textContent = "Always-on power: not enough readings yet (a day is needed).";
    return;
  }
  const cost = baseline.baseline_yearly_cost === null ? "" : `, ${money(baseline.baseline_yearly_cost, baseline.currency)} a year`;
  el.textContent = `Always-on power: ${baseline.baseline_w} W (${baseline.baseline_yearly_kwh} kWh${cost}).`;
}

function drawDetailChart() {
  if (!state.detail) return;
  const id = state.detail;
  const hour = detail.range === "hour";
  const points = hour ? (state.points.get(id) || []) : (state.day.get(id) || []);
  drawLive($("#live-chart"), points, Date.now(), hour ? HOUR_MS : DAY_MS, hour ? 5 * 60000 : 15 * 60000);
}

function setRange(range) {
  detail.range = range;
  for (const [which, el] of [["hour", $("#range-hour")], ["day", $("#range-day")]]) {
    el.classList.toggle("active", which === range);
    el.setAttribute("aria-pressed", String(which === range));
  }
  drawDetailChart();
}

async function loadHistory() {
  const id = state.detail;
  $("#period-value").textContent = detail.value;
  try {
    const cost = state.currency ? "&cost=1" : "";
    const doc = await api("GET", `${plugPath(id)}/energy?${detail.period}=${encodeURIComponent(detail.value)}${cost}`);
    if (state.detail !== id) return;
    drawBars($("#chart"), doc);
    const money_ = doc.total_cost === undefined || doc.total_cost === null ? "" : `, ${money(doc.total_cost, doc.currency)}`;
    $("#chart-total").textContent = `Total: ${formatWh(doc.total_wh)}${money_} (${doc.timezone})`;
  } catch (e) {
    $("#chart").replaceChildren();
    $("#chart-total").textContent = e.message;
  }
}

function renameInDetail() {
  const id = state.detail;
  const plug = state.plugs.get(id);
  editAlias($("#detail-name"), plug, (message) => { $("#detail-error").textContent = message; },
            () => renderDetail(state.plugs.get(id) || plug));
}

$("#back").addEventListener("click", closeDetail);
$("#detail-rename").addEventListener("click", renameInDetail);
$("#range-hour").addEventListener("click", () => setRange("hour"));
$("#range-day").addEventListener("click", () => setRange("day"));
$("#detail-relay").addEventListener("change", async (ev) => {
  const input = ev.target;
  input.dataset.busy = "1";
  input.disabled = true;
  try { render(await api("POST", `${plugPath(state.detail)}/${input.checked ? "on" : "off"}`)); }
  catch (e) { $("#detail-error").textContent = e.message; }
  finally { delete input.dataset.busy; const p = state.plugs.get(state.detail); if (p) renderDetail(p); }
});
$("#info-poweron").addEventListener("change", async (ev) => {
  try { render(await api("PUT", `${plugPath(state.detail)}/power-on`, { policy: ev.target.value || null })); }
  catch (e) { $("#detail-error").textContent = e.message; }
});
$("#forget").addEventListener("click", async () => {
  const plug = state.plugs.get(state.detail);
  if (!plug || !window.confirm(`Forget ${plugName(plug)}? Its name, history and automation are deleted.`)) return;
  try { await api("DELETE", plugPath(plug.id)); closeDetail(); }
  catch (e) { $("#detail-error").textContent = e.message; }
});
$("#period").addEventListener("change", (ev) => {
  detail.period = ev.target.value;
  detail.value = todayValue(detail.period);
  loadHistory();
});
$("#prev").addEventListener("click", () => { detail.value = shift(detail.period, detail.value, -1); loadHistory(); });
$("#next").addEventListener("click", () => { detail.value = shift(detail.period, detail.value, 1); loadHistory(); });
