// Agreement page: per group, the figures with 95 % CIs and counts, a scatter (human vs model MGS) and
// a Bland-Altman plot, all from /api/rating/agreement (the CSV link gives the same numbers).
"use strict";
(function () {
  const by = document.getElementById("a-by");
  const box = document.getElementById("a-groups");
  const csv = document.getElementById("a-csv");
  const pool = document.getElementById("a-pool");
  const simulated = document.getElementById("a-simulated");
  const from = document.getElementById("a-from");
  const to = document.getElementById("a-to");
  const params = new URLSearchParams(location.search);
  if (params.get("by")) by.value = params.get("by");
  if (params.get("from")) from.value = params.get("from");
  if (params.get("to")) to.value = params.get("to");
  const day = (v) => Math.round(Date.parse(`${v}T00:00:00Z`) / 1000);  // a date as Unix seconds (UTC)

  const f3 = (v) => AMGS.num(v, 3);
  const ci = (lo, hi) => (lo === null || lo === undefined ? "" : `[${f3(lo)}, ${f3(hi)}]`);

  function row(key, metric, label, value, lo, hi, n) {
    return `<tr><td>${AMGS.esc(label)}</td><td data-key="${AMGS.esc(key)}" data-metric="${metric}">${f3(value)}</td>` +
      `<td>${ci(lo, hi)}</td><td data-key="${AMGS.esc(key)}" data-n="${metric}">${n === null || n === undefined ? "-" : n}</td></tr>`;
  }

  function figures(g) {
    const mh = g.model_vs_human, p = mh.pearson, icc = mh.icc_a1, ba = mh.bland_altman, pain = mh.pain;
    const ir = g.inter_rater.icc2, intra = g.intra_rater.pooled;
    const k = pain.kappa || {};
    return `<table class="figures"><tr><th>model vs human</th><th>value</th><th>95 % CI</th><th>n</th></tr>` +
      row(g.key, "pearson_r", "Pearson r (AU-MGS)", p.r, p.ci_low, p.ci_high, p.n) +
      row(g.key, "icc_a1", "ICC(A,1) absolute agreement", icc.icc, icc.ci_low, icc.ci_high, icc.n) +
      row(g.key, "ba_bias", "Bland-Altman bias (model - human)", ba.bias, ba.bias_ci_low, ba.bias_ci_high, ba.n) +
      row(g.key, "ba_loa_low", "lower limit of agreement", ba.loa_low, ba.loa_low_ci_low, ba.loa_low_ci_high, ba.n) +
      row(g.key, "ba_loa_high", "upper limit of agreement", ba.loa_high, ba.loa_high_ci_low, ba.loa_high_ci_high, ba.n) +
      row(g.key, "pain_kappa", "pain / no pain Cohen's kappa", k.kappa, k.ci_low, k.ci_high, pain.n) +
      row(g.key, "accuracy", "accuracy", pain.accuracy.value, pain.accuracy.ci_low, pain.accuracy.ci_high, pain.accuracy.n) +
      row(g.key, "sensitivity", "sensitivity (human pain)", pain.sensitivity.value, pain.sensitivity.ci_low, pain.sensitivity.ci_high, pain.sensitivity.n) +
      row(g.key, "specificity", "specificity", pain.specificity.value, pain.specificity.ci_low, pain.specificity.ci_high, pain.specificity.n) +
      `<tr><th>human vs human</th><th></th><th></th><th></th></tr>` +
      row(g.key, "icc_2_1", `inter-rater ICC(2,1) (${g.inter_rater.raters.length} raters)`, ir.icc, ir.ci_low, ir.ci_high, ir.n) +
      row(g.key, "intra_icc_a1", "intra-rater ICC(A,1) (repeats)", intra.icc, intra.ci_low, intra.ci_high, g.intra_rater.n_pairs) +
      Object.entries(g.intra_rater.per_rater).map(([r, v]) =>
        row(g.key, `intra_icc_a1:${r}`, `\u2003${r}`, v.icc, v.ci_low, v.ci_high, v.n)).join("") +
      Object.entries(g.inter_rater.au_kappa || {}).map(([u, v]) =>
        row(g.key, `kappa_w_${u}`, `weighted kappa, ${u} (${(g.inter_rater.au_kappa_raters || []).join(" vs ")})`, v.kappa, v.ci_low, v.ci_high, v.n)).join("") +
      `</table><div class="legend-note">${mh.n_items} items rated (${mh.n_unscorable} not scorable by consensus), ` +
      `${g.n_ratings} ratings by ${g.raters.length} rater(s)</div>`;
  }

  function lines(spec) {
    return { hooks: { draw: [(u) => {
      const ctx = u.ctx; ctx.save(); ctx.lineWidth = 1.5;
      spec(u).forEach((l) => {
        ctx.strokeStyle = l.color; ctx.setLineDash(l.dash || []);
        ctx.beginPath();
        ctx.moveTo(u.valToPos(l.x0, "x", true), u.valToPos(l.y0, "y", true));
        ctx.lineTo(u.valToPos(l.x1, "x", true), u.valToPos(l.y1, "y", true));
        ctx.stroke();
      });
      ctx.restore();
    }] } };
  }

  function scatter(el, xs, ys, xLabel, yLabel, xr, yr, extra) {
    const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
    const data = [order.map((i) => xs[i]), order.map((i) => ys[i])];
    return new uPlot({
      width: Math.min(440, el.clientWidth || 440), height: 300,
      scales: { x: { time: false, range: xr }, y: { range: yr } },
      axes: [{ label: xLabel }, { label: yLabel, size: 50 }],
      legend: { show: false }, cursor: { show: false },
      series: [{}, { stroke: "#1f5fa8", paths: () => null, points: { show: true, size: 5, fill: "rgba(31,95,168,0.5)" } }],
      plugins: [lines(extra)],
    }, data, el);
  }

  function plots(g, i) {
    const pts = g.model_vs_human.points;
    if (!pts.length) return;
    const hum = pts.map((p) => p[0]), mod = pts.map((p) => p[1]);
    scatter(document.getElementById(`a-sc-${i}`), hum, mod, "human MGS", "model AU-MGS", [0, 2], [0, 2],
      () => [{ x0: 0, y0: 0, x1: 2, y1: 2, color: "#888", dash: [4, 4] }]);
    const ba = g.model_vs_human.bland_altman;
    const mean = pts.map((p) => (p[0] + p[1]) / 2), diff = pts.map((p) => p[1] - p[0]);
    if (ba.bias === null) return;
    const lim = Math.max(1, ...diff.map(Math.abs), Math.abs(ba.loa_low), Math.abs(ba.loa_high)) * 1.1;
    scatter(document.getElementById(`a-ba-${i}`), mean, diff, "mean of model and human", "model - human", [0, 2], [-lim, lim],
      () => [
        { x0: 0, y0: ba.bias, x1: 2, y1: ba.bias, color: "#c62828" },
        { x0: 0, y0: ba.loa_low, x1: 2, y1: ba.loa_low, color: "#c62828", dash: [6, 4] },
        { x0: 0, y0: ba.loa_high, x1: 2, y1: ba.loa_high, color: "#c62828", dash: [6, 4] },
        { x0: 0, y0: 0, x1: 2, y1: 0, color: "#888", dash: [2, 3] },
      ]);
  }

  async function load() {
    let q = `by=${encodeURIComponent(by.value)}`;
    let page = q;
    if (from.value) { q += `&start=${day(from.value)}`; page += `&from=${from.value}`; }
    if (to.value) { q += `&end=${day(to.value)}`; page += `&to=${to.value}`; }
    history.replaceState(null, "", `?${page}`);
    csv.href = `${AMGS.root}/api/rating/agreement.csv?${q}`;
    try {
      const r = await AMGS.getJSON(`/api/rating/agreement?${q}`);
      const sim = [...new Set(r.groups.flatMap((g) => g.raters))].filter((n) => /^simulated/i.test(n));
      simulated.hidden = !sim.length;
      simulated.textContent = sim.length ? `SIMULATED rater(s) ${sim.join(", ")}: demo scores generated by a program, not by people. They show how this page works and say nothing about the model.` : "";
      pool.textContent = `pool: ${r.pool.open} open, ${r.pool.done} done, ${r.pool.expired} expired; ${r.pool.ratings} ratings by ${r.pool.raters} rater(s)`;
      if (!r.groups.length) { box.innerHTML = `<div class="empty" id="a-none">No rated faces in this selection. Raters score faces at <a href="${AMGS.root}/rate">/rate</a>.</div>`; AMGS.ready(); return; }
      box.innerHTML = `<div class="agree-grid">` + r.groups.map((g, i) =>
        `<div class="panel" data-group="${AMGS.esc(g.key)}"><h2>${AMGS.esc(by.value === "all" ? "All rated faces" : g.key)}</h2>${figures(g)}` +
        `<div class="chart" id="a-sc-${i}"></div><div class="chart" id="a-ba-${i}"></div></div>`).join("") + `</div>`;
      r.groups.forEach(plots);
      AMGS.ready();
    } catch (e) { AMGS.fail(box, e); }
  }
  [by, from, to].forEach((el) => el.addEventListener("change", load));
  load();
})();
