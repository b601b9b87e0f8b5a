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
