// vesyncd dashboard: what every other script uses (loaded first): the page's state, the API helper.
"use strict";

const state = {
  csrf: null, plugs: new Map(), points: new Map(), day: new Map(), charts: new Set(), timers: new Map(), periods: new Map(),
  events: null, detail: null, currency: null,
};
const $ = (sel, root = document) => root.querySelector(sel);
const MAX_POINTS = 2000;

class HttpError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
    this.field = body && body.field;
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

// An inline editor for a plug's alias in place of `container`'s content: Enter or leaving the field
// saves, Escape cancels. `showError(message)` reports a refusal ("" clears it) and `redraw()` puts
// the container's usual content back.
function editAlias(container, plug, showError, redraw) {
  if (!plug || container.querySelector("input")) return;
  const input = document.createElement("input");
  input.value = plug.alias || "";
  input.placeholder = plug.id;
  input.maxLength = 64;
  input.setAttribute("aria-label", "new name");
  container.replaceChildren(input);
  input.focus();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    if (save && input.value.trim() !== (plug.alias || "")) {
      try {
        render(await api("PUT", `${plugPath(plug.id)}/alias`, { alias: input.value.trim() || null }));
        showError("");
      } catch (e) {
        showError(e.message);
      }
    }
    container.replaceChildren();
    redraw();
  };
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") finish(true);
    if (ev.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}
