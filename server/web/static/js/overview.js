// Facility overview: one tile per cage with its state, last score and a 24 h sparkline. Refreshes every 30 s.
"use strict";
(function () {
  const el = document.getElementById("tiles");
  const room = document.getElementById("f-room");
  const group = document.getElementById("f-group");
  const stateSel = document.getElementById("f-state");
  const params = new URLSearchParams(location.search);
  let last = null;

  function spark(points) {
    const w = 200, h = 36, n = points.length;
    if (!n) return "";
    let d = "", pen = false;
    points.forEach((p, i) => {
      const x = (i / Math.max(1, n - 1)) * w;
      if (p.mean_amgs === null || p.mean_amgs === undefined) { pen = false; return; }
      const y = h - 2 - p.mean_amgs * (h - 4);
      d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1) + " ";
      pen = true;
    });
    return `<svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" aria-label="24 h sparkline">` +
      `<rect x="0" y="0" width="${w}" height="${h}" fill="#f3f5f7"/>` +
      `<line x1="0" x2="${w}" y1="${h / 2}" y2="${h / 2}" stroke="#dde2e7" stroke-dasharray="3 3"/>` +
      `<path d="${d}" fill="none" stroke="#1f5fa8" stroke-width="1.6"/></svg>`;
  }

  function fillSelect(sel, values, current) {
    const keep = sel.options[0].outerHTML;
    sel.innerHTML = keep + values.map((v) => `<option${v === current ? " selected" : ""}>${AMGS.esc(v)}</option>`).join("");
  }

  function unscorable(t) {
    // The share of the window's images the device could not score (left out of every figure), when not 0.
    const w = t.window || {};
    if (!w.n_unscorable) return "";
    const all = w.n_unscorable + (w.n || 0);
    return `<span class="unscorable">${t.window_h} h: ${w.n_unscorable} of ${all} img unscorable (${Math.round((100 * w.n_unscorable) / all)}%)</span>`;
  }

  function render() {
    if (!last) return;
    const r = room.value, g = group.value, s = stateSel.value;
    const tiles = last.cages.filter((t) => (!r || t.room_id === r) && (!g || (t.groups || []).includes(g)) && (!s || t.state === s));
    document.getElementById("summary").innerHTML = Object.entries(last.counts)
      .map(([k, v]) => `<span><span class="state ${AMGS.stateClass(k)}">${AMGS.esc(k)}</span> ${v}</span>`).join("");
    document.getElementById("as-of").textContent = "as of " + AMGS.fmtTime(last.now);
    if (!tiles.length) { el.innerHTML = '<div class="empty">no cages match</div>'; return; }
    el.innerHTML = tiles.map((t) => {
      const hr = t.last_hour || {};
      return `<a class="tile ${AMGS.stateClass(t.state)}" href="${AMGS.root}/cages/${encodeURIComponent(t.cage_id)}" data-cage="${AMGS.esc(t.cage_id)}" data-state="${AMGS.esc(t.state)}">
        <div class="head"><span class="name">${AMGS.esc(t.name || t.cage_id)}</span><span class="state ${AMGS.stateClass(t.state)}">${AMGS.esc(t.state)}</span></div>
        <div class="meta">${AMGS.esc(t.room_id || "no room")} &middot; ${AMGS.esc((t.groups || []).join(", ") || "no group")}</div>
        ${spark(t.sparkline || [])}
        <div class="figures"><span>last score ${AMGS.esc(AMGS.ago(t.last_score_at, last.now))}</span>
          <span>1 h: ${hr.n || 0} img, aMGS ${AMGS.num(hr.mean_amgs)}, pain ${AMGS.num(hr.frac_pain)}</span>${unscorable(t)}</div>
        ${t.state_reason && t.state !== "ok" ? `<div class="reason">${AMGS.esc(t.state_reason)}</div>` : ""}
      </a>`;
    }).join("");
  }

  async function load() {
    try {
      last = await AMGS.getJSON("/api/overview");
      fillSelect(room, last.rooms, room.value || params.get("room"));
      fillSelect(group, last.groups, group.value || params.get("group"));
      fillSelect(stateSel, Object.keys(last.counts), stateSel.value || params.get("state"));
      render();
      AMGS.ready();
    } catch (err) { AMGS.fail(el, err); }
  }
  [room, group, stateSel].forEach((s) => s.addEventListener("change", () => {
    const q = new URLSearchParams();
    if (room.value) q.set("room", room.value);
    if (group.value) q.set("group", group.value);
    if (stateSel.value) q.set("state", stateSel.value);
    history.replaceState(null, "", q.toString() ? "?" + q : location.pathname);
    render();
  }));
  load();
  setInterval(load, 30000);
})();
