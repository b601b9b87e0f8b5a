// vesyncd dashboard: a plug's automation (countdown, schedules, power rules, away mode).
"use strict";

function leftText(timer) {
  const left = Math.max(0, Math.round((timer.deadline - Date.now()) / 1000));
  if (timer.waiting || left === 0) return "when it is back online";
  const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
  return h ? `${h}h ${pad(m)}m ${pad(s)}s` : `${m}m ${pad(s)}s`;
}

// The timer as the page keeps it: the server's JSON plus a deadline on this browser's clock.
function keepTimer(id, timer) {
  if (timer) state.timers.set(id, { ...timer, deadline: Date.now() + timer.left_s * 1000 });
  else state.timers.delete(id);
  renderTimerBadge(id);
  if (state.detail === id) renderTimer();
}

function renderTimer() {
  const timer = state.timers.get(state.detail);
  $("#timer").hidden = !timer;
  if (timer) $("#timer-text").textContent = `Switches ${timer.switch} in ${leftText(timer)}`;
}

function itemText(el, text) {
  const span = document.createElement("span");
  span.textContent = text;
  el.append(span);
}

function itemButton(el, label, action) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.addEventListener("click", () => automationCall(action));
  el.append(button);
}

function renderAutomation(doc) {
  const id = state.detail;
  if (!doc) {
    $("#automation").hidden = true;
    return;
  }
  $("#automation").hidden = false;
  keepTimer(id, doc.timer);
  const next = doc.next;
  $("#next-action").textContent = next ? `${next.switch} at ${new Date(next.ts * 1000).toLocaleString()} (${next.cause})`
                                       : "nothing planned";
  $("#schedules").replaceChildren(...doc.schedules.map((s) => {
    const li = document.createElement("li");
    li.dataset.id = s.id;
    li.classList.toggle("disabled", !s.enabled);
    const when = s.once ? `on ${s.once}` : (s.days.length === 7 ? "daily" : s.days.join(", "));
    itemText(li, `${s.switch} at ${s.at}, ${when}${s.enabled ? "" : " (disabled)"}`);
    itemButton(li, s.enabled ? "Disable" : "Enable", ["POST", `/api/schedules/${s.id}/${s.enabled ? "disable" : "enable"}`]);
    itemButton(li, "Remove", ["DELETE", `/api/schedules/${s.id}`]);
    return li;
  }));
  $("#rules").replaceChildren(...doc.rules.map((r) => {
    const li = document.createElement("li");
    li.dataset.id = r.id;
    li.classList.toggle("disabled", !r.enabled);
    const when = r.when === "done_below" ? "done below" : r.when;
    itemText(li, `${when} ${r.watts} W for ${r.for_s} s: ${r.then} (${r.state})`);
    itemButton(li, r.enabled ? "Disable" : "Enable", ["POST", `/api/rules/${r.id}/${r.enabled ? "disable" : "enable"}`]);
    itemButton(li, "Remove", ["DELETE", `/api/rules/${r.id}`]);
    return li;
  }));
  $("#away-status").textContent = doc.away ? `Away mode on, ${doc.away.from}–${doc.away.to}; next: ${doc.away.next_switch} at ${new Date(doc.away.next_ts * 1000).toLocaleTimeString()}`
                                           : "Away mode off.";
}

async function reloadAutomation() {
  const id = state.detail;
  try {
    const doc = await api("GET", `${plugPath(id)}/automation`);
    if (state.detail === id) renderAutomation(doc);
  } catch (e) {
    if (e.status === 503) renderAutomation(null);
  }
}

async function automationCall([method, path, body]) {
  $("#automation-error").textContent = "";
  try {
    const answer = await api(method, path, body);
    await reloadAutomation();
    return answer;
  } catch (e) {
    // The daemon names the field to fix in its message.
    $("#automation-error").textContent = e.message;
    return null;
  }
}

const base = () => plugPath(state.detail);

$("#countdown").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const answer = await automationCall(["POST", `${base()}/relay`,
                                       { on: $("#countdown-switch").value === "on", for: $("#countdown-for").value.trim() }]);
  if (answer) render(answer.plug);
});
$("#timer-cancel").addEventListener("click", () => automationCall(["DELETE", `${base()}/timer`]));
$("#schedule-add").addEventListener("submit", (ev) => {
  ev.preventDefault();
  automationCall(["POST", `${base()}/schedules`, { switch: $("#schedule-switch").value, at: $("#schedule-at").value.trim(),
                                                  days: $("#schedule-days").value }]);
});
$("#rule-add").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const body = { for: $("#rule-for").value.trim() };
  body[$("#rule-kind").value] = $("#rule-watts").value.trim();
  if ($("#rule-then").value) body.then = $("#rule-then").value;
  automationCall(["POST", `${base()}/rules`, body]);
});
$("#away").addEventListener("submit", (ev) => {
  ev.preventDefault();
  automationCall(["PUT", `${base()}/away`, { from: $("#away-from").value.trim(), to: $("#away-to").value.trim() }]);
});
$("#away-off").addEventListener("click", () => automationCall(["DELETE", `${base()}/away`]));

// The time left ticks every second; a timer that ran out is asked for again (the plug may wait).
setInterval(() => {
  for (const [id, timer] of state.timers) {
    renderTimerBadge(id);
    if (timer.deadline < Date.now() - 2000 && !timer.waiting && state.detail === id) { timer.waiting = true; reloadAutomation(); }
  }
  if (state.detail) renderTimer();
}, 1000);
