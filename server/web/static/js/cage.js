// Cage page: time course (mean aMGS +/- SEM, baseline band, threshold, dark shading, events),
// fraction pain and images, activity and AU means, recent face crops, and this cage's alerts.
"use strict";
(function () {
  const cage = document.body.dataset.cage;
  const q = new URLSearchParams(location.search);
  const hours = document.getElementById("c-hours"), bin = document.getElementById("c-bin"), align = document.getElementById("c-align");
  if (q.get("hours")) hours.value = q.get("hours");
  if (q.get("bin")) bin.value = q.get("bin");
  if (q.get("align")) align.value = q.get("align");
  const animal = document.getElementById("c-animal") || { value: "", addEventListener() {} };
  if (q.get("animal")) animal.value = q.get("animal");
  const EVENT_COLORS = { surgery: "#c62828", analgesic: "#2e8b57", anaesthesia: "#8e44ad", handling: "#6d4c41" };

  async function loadSeries() {
    // wall clock: the last `hours`; aligned: up to 24 h before the event and `hours` after it. The baseline
    // (24 h before the first surgery) is drawn as a band in both cases.
    const q = new URLSearchParams({ bin: bin.value, baseline_h: "24" });
    if (align.value === "wall") q.set("hours", hours.value);
    else { q.set("event", align.value); q.set("hours_before", String(Math.min(24, Number(hours.value)))); q.set("hours_after", hours.value); }
    if (animal.value) q.set("animal", animal.value);
    const path = `/api/timecourse/cage/${encodeURIComponent(cage)}?${q}`;
    const els = ["chart-amgs", "chart-pain", "chart-activity"].map((id) => document.getElementById(id));
    let tc;
    try { tc = await AMGS.getJSON(path); } catch (err) { els.forEach((e) => AMGS.fail(e, err)); return; }
    AMGS.lastSeries = tc;
    const wall = tc.align === "wall";
    const bins = tc.bins;
    const x = bins.map((b) => (wall ? b.start_t + tc.bin_s / 2 : b.hours + tc.bin_s / 7200));
    const toX = (t) => (wall ? t : (t - tc.event.t) / 3600);
    const dark = (tc.dark || []).map(([a, b]) => [toX(Date.parse(a) / 1000), toX(Date.parse(b) / 1000)]);
    const events = (tc.events || []).map((e) => ({ x: toX(e.t), label: e.kind, color: EVENT_COLORS[e.kind] }));
    const base = tc.baseline && tc.baseline.n ? { mean: tc.baseline.mean_amgs, sem: tc.baseline.sem_amgs } : null;
    const common = { x, xTime: wall, xLabel: wall ? "" : `hours since ${tc.event.kind}`, dark, events };
    AMGS.plot("amgs", els[0], { ...common, baseline: base, threshold: tc.thresholds.mean_amgs, y: [0, 1], yLabel: "aMGS",
      series: [{ label: "mean aMGS", values: bins.map((b) => b.mean_amgs), sem: bins.map((b) => b.sem_amgs) }] });
    // Images the device found unscorable (out of domain, no face, quality) are in no mean or fraction:
    // their count is drawn beside the images scored, only when a bin of the range has any.
    const counts = [{ label: "images scored", values: bins.map((b) => b.n), color: "#8a939c", scale: "y2", digits: 0, width: 1 }];
    if (bins.some((b) => b.n_unscorable)) {
      counts.push({ label: "images unscorable", values: bins.map((b) => b.n_unscorable || 0), color: "#d98e04", scale: "y2", digits: 0, width: 1, dash: [4, 3] });
    }
    AMGS.plot("pain", els[1], { ...common, threshold: tc.thresholds.fraction_pain, y: [0, 1], yLabel: "fraction pain", y2Label: "images",
      series: [{ label: "fraction pain", values: bins.map((b) => b.frac_pain), color: "#c62828" }, ...counts] });
    const unscorable = bins.reduce((a, b) => a + (b.n_unscorable || 0), 0);
    const scored = bins.reduce((a, b) => a + (b.n || 0), 0);
    const why = {};
    bins.forEach((b) => Object.entries(b.unscorable || {}).forEach(([k, v]) => { why[k] = (why[k] || 0) + v; }));
    document.getElementById("unscorable-note").textContent = unscorable
      ? `${unscorable} of ${unscorable + scored} images in this range were unscorable (` +
        Object.entries(why).filter(([, v]) => v).map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`).join(", ") +
        "): they are left out of every mean and fraction above."
      : "";
    AMGS.plot("activity", els[2], { ...common, yLabel: "activity", y2Label: "AU MGS (0-2)",
      series: [{ label: "activity", values: bins.map((b) => b.activity), color: "#00838f" },
               { label: "AU MGS", values: bins.map((b) => b.mgs_au), color: "#8e44ad", scale: "y2" }] });
    renderAlerts(tc.alerts || []);
    AMGS.ready();
  }

  function renderAlerts(alerts) {
    const live = alerts.filter((a) => a.state !== "resolved");
    document.getElementById("cage-alerts").innerHTML = live.map((a) =>
      `<div class="alert-card sev-${AMGS.esc(a.severity)}"><div class="line1"><span class="sev ${AMGS.esc(a.severity)}">${AMGS.esc(a.severity.replace("_", " "))}</span>
       <strong>${AMGS.esc(a.rule.replace(/_/g, " "))}</strong> <span class="who">${AMGS.esc(a.state)} since ${AMGS.fmtTime(a.opened_at)}</span>
       <a href="${AMGS.root}/alerts">manage</a></div><div class="msg">${AMGS.esc(a.message)}</div></div>`).join("");
  }

  async function loadCrops() {
    const el = document.getElementById("crops");
    try {
      const limit = Number(document.body.dataset.recentCrops || 0);
      const crops = limit ? await AMGS.getJSON(`/api/crops?cage_id=${encodeURIComponent(cage)}&limit=${limit}`) : [];
      el.innerHTML = crops.length ? crops.map((c) =>
        `<div class="crop ${c.label === "pain" ? "pain" : ""}"><img loading="lazy" src="${AMGS.esc(c.url)}" alt="face crop ${AMGS.esc(c.msg_id)}">
         <div>${c.outcome === "unscorable" ? `unscorable (${AMGS.esc((c.unscorable_reason || "").replace(/_/g, " "))})` : `aMGS ${AMGS.num(c.amgs)} &middot; ${AMGS.esc(c.label)}`}${c.needs_review ? " &middot; review" : ""}</div>
         <div class="legend-note">${AMGS.fmtTime(c.captured_at)}${c.det_score != null ? ` &middot; face found by the detector, score ${AMGS.num(c.det_score)}` : ""}</div></div>`).join("")
        : '<div class="empty">no face crops stored for this cage (devices send crops only when configured to)</div>';
      AMGS.ready();
    } catch (err) { AMGS.fail(el, err); }
  }

  const form = document.getElementById("event-form");
  if (form) form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form), out = document.getElementById("event-result");
    const record = { kind: f.get("kind"), cage_id: cage, at: f.get("at").trim() || new Date().toISOString() };
    ["animal_id", "unit", "notes"].forEach((k) => { if (f.get(k).trim()) record[k] = f.get(k).trim(); });
    if (f.get("value").trim()) record.value = Number(f.get("value"));
    if (/^\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?$/.test(record.at)) record.at = record.at.replace(" ", "T") + "Z";
    try {
      await AMGS.postJSON("/api/meta/events", record);
      out.textContent = `saved: ${record.kind} at ${AMGS.fmtTime(record.at)}`;
      form.reset();
      loadSeries();
    } catch (err) { out.textContent = `not saved: ${err.message}`; out.classList.add("error"); }
  });

  [hours, bin, align, animal].forEach((s) => s.addEventListener("change", () => {
    history.replaceState(null, "", `?hours=${hours.value}&bin=${encodeURIComponent(bin.value)}&align=${align.value}` +
      (animal.value ? `&animal=${encodeURIComponent(animal.value)}` : ""));
    loadSeries();
  }));
  loadSeries();
  loadCrops();
})();
