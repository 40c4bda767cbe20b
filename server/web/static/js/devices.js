// Devices page: state, last contact, outbox queue, last capture, model, counters, rejection reasons, errors.
"use strict";
(function () {
  const body = document.querySelector("#devices tbody");
  async function load() {
    try {
      const rows = await AMGS.getJSON("/api/devices");
      body.innerHTML = rows.length ? rows.map((d) => {
        const rejected = Object.entries(d.rejected || {}).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${AMGS.esc(k)}: ${v}`).join("<br>") || "-";
        const errors = (d.errors || []).concat((d.views || []).filter((v) => v.error).map((v) => `view ${v.view}: ${v.error}`));
        return `<tr data-device="${AMGS.esc(d.device_id)}"><td><strong>${AMGS.esc(d.device_id)}</strong><div class="legend-note">${AMGS.esc(d.site || "")} &middot; cages ${AMGS.esc((d.views || []).map((v) => v.cage_id).join(", ") || "-")}</div></td>
          <td><span class="dot ${AMGS.esc(d.state)}"></span>${AMGS.esc(d.state || "unknown")}<div class="legend-note">since ${AMGS.fmtTime(d.state_since)}</div>${d.reason ? `<div class="legend-note">${AMGS.esc(d.reason)}</div>` : ""}</td>
          <td>${AMGS.esc(AMGS.ago(d.last_seen))}</td>
          <td>${d.queue_depth ?? "-"}${d.unconfirmed ? ` (${d.unconfirmed} unconfirmed)` : ""}</td>
          <td>${AMGS.fmtTime(d.last_capture_at)}</td>
          <td>${AMGS.esc(d.model_name || "-")} ${AMGS.esc(d.model_version || "")}${d.inference_ms ? `<div class="legend-note">${AMGS.num(d.inference_ms, 0)} ms/image</div>` : ""}</td>
          <td>${d.scores_total}<div class="legend-note">committed seq ${d.committed_seq}</div></td>
          <td>${d.gaps_total} / ${d.lost_total}</td>
          <td>${rejected}</td>
          <td class="error">${errors.map(AMGS.esc).join("<br>") || ""}${d.storage_warning ? `<div>${AMGS.esc(d.storage_warning)}</div>` : ""}</td></tr>`;
      }).join("") : '<tr><td colspan="10" class="empty">no device has reported yet</td></tr>';
      AMGS.ready();
    } catch (err) { AMGS.fail(body, err); }
  }
  load();
  setInterval(load, 30000);
})();
