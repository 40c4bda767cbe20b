// Shared helpers for the dashboard pages. No framework: plain DOM + fetch, uPlot for charts.
"use strict";
window.AMGS = {
  root: document.body.dataset.root || "",
  csrf: (document.querySelector('meta[name="csrf-token"]') || {}).content || "",
  canAct: !!document.body.dataset.canAct,
  charts: {},
};

AMGS.getJSON = async function (path) {
  const r = await fetch(AMGS.root + path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${r.status}: ${detail}`);
  }
  return r.json();
};

AMGS.postJSON = async function (path, body) {
  const r = await fetch(AMGS.root + path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": AMGS.csrf },
    body: JSON.stringify(body || {}),
  });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${r.status}: ${detail}`);
  }
  return r.json();
};

AMGS.esc = function (s) {
  return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
};

AMGS.fmtTime = function (iso) {
  if (!iso) return "never";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
};

AMGS.ago = function (iso, nowIso) {
  if (!iso) return "never";
  const s = ((nowIso ? new Date(nowIso) : new Date()) - new Date(iso)) / 1000;
  if (s < 0) return "just now";
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
};

AMGS.num = function (v, digits) {
  return v === null || v === undefined ? "-" : Number(v).toFixed(digits === undefined ? 2 : digits);
};

AMGS.stateClass = function (state) { return "s-" + String(state).replace(/ /g, "-"); };

AMGS.ready = function () { document.body.dataset.ready = String(Number(document.body.dataset.ready || 0) + 1); };

AMGS.fail = function (el, err) {
  el.innerHTML = `<div class="empty error">could not load: ${AMGS.esc(err.message)}</div>`;
  document.body.dataset.error = err.message;
};
