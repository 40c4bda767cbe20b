// Group page: mean +/- SEM by treatment group against hours since each animal's surgery
// (the laparotomy vs sham vs analgesic comparison), downloadable as PNG, SVG and CSV.
"use strict";
(function () {
  const list = document.getElementById("g-list");
  const ctl = { bin: document.getElementById("g-bin"), before: document.getElementById("g-before"),
                after: document.getElementById("g-after"), measure: document.getElementById("g-measure") };
  const el = document.getElementById("chart-groups");
  let current = null;

  function query() {
    const q = new URLSearchParams();
    list.querySelectorAll("input:checked").forEach((c) => q.append("group", c.value));
    q.set("bin", ctl.bin.value); q.set("hours_before", ctl.before.value); q.set("hours_after", ctl.after.value);
    if (ctl.measure.value === "delta_amgs") q.set("baseline_h", ctl.before.value || "12");
    return q;
  }

  function seriesOf(res) {
    const m = ctl.measure.value;
    const semKey = { mean_amgs: "sem_amgs", frac_pain: "sem_frac_pain", delta_amgs: "sem_delta_amgs" }[m];
    const hours = new Set();
    Object.values(res.groups).forEach((g) => g.bins.forEach((b) => hours.add(b.hours)));
    const x = [...hours].sort((a, b) => a - b);
    const series = Object.entries(res.groups).map(([gid, g], i) => {
      const byH = new Map(g.bins.map((b) => [b.hours, b]));
      return { label: `${g.group.name || gid} (n=${g.animals.length})`, gid, color: AMGS.COLORS[i % AMGS.COLORS.length],
               values: x.map((h) => (byH.has(h) ? byH.get(h)[m] : null)),
               sem: x.map((h) => (byH.has(h) ? byH.get(h)[semKey] : null)) };
    });
    return { x, series, yLabel: ctl.measure.options[ctl.measure.selectedIndex].text };
  }

  async function load() {
    const q = query();
    document.getElementById("dl-csv").href = `${AMGS.root}/api/timecourse/groups?${q}&format=table`;
    if (!q.getAll("group").length) { el.innerHTML = '<div class="empty">choose at least one group</div>'; return; }
    try {
      const res = await AMGS.getJSON(`/api/timecourse/groups?${q}`);
      current = seriesOf(res);
      AMGS.groupData = res;
      const m = ctl.measure.value;
      AMGS.plot("groups", el, { x: current.x.map((h) => h + Number(res.groups[Object.keys(res.groups)[0]].bin_s) / 7200),
        xLabel: "hours since surgery", yLabel: current.yLabel, y: m === "delta_amgs" ? undefined : [0, 1], height: 360,
        events: [{ x: 0, label: "surgery", color: "#c62828" }], series: current.series });
      document.getElementById("g-animals").textContent = Object.entries(res.groups)
        .map(([gid, g]) => `${gid}: ${g.animals.join(", ") || "no animals"}${g.skipped.length ? ` (left out: ${g.skipped.map((s) => s.animal_id).join(", ")})` : ""}`).join(" | ");
      AMGS.ready();
    } catch (err) { AMGS.fail(el, err); }
  }

  function download(name, blob) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = name;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  document.getElementById("dl-png").addEventListener("click", () => {
    const u = AMGS.charts.groups; if (!u) return;
    const src = u.ctx.canvas, pad = 36 * devicePixelRatio;
    const c = document.createElement("canvas"); c.width = src.width; c.height = src.height + pad;
    const ctx = c.getContext("2d"); ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, c.width, c.height);
    ctx.font = `${13 * devicePixelRatio}px system-ui, sans-serif`;
    let x = 10 * devicePixelRatio;
    current.series.forEach((s) => { ctx.fillStyle = s.color; ctx.fillRect(x, 12 * devicePixelRatio, 14 * devicePixelRatio, 4 * devicePixelRatio);
      ctx.fillStyle = "#1d232b"; ctx.fillText(s.label, x + 18 * devicePixelRatio, 19 * devicePixelRatio); x += ctx.measureText(s.label).width + 40 * devicePixelRatio; });
    ctx.drawImage(src, 0, pad);
    c.toBlob((b) => download("amgs-groups.png", b), "image/png");
  });

  document.getElementById("dl-svg").addEventListener("click", () => {
    if (!current) return;
    const W = 900, H = 420, L = 60, R = 20, T = 40, B = 50, x = current.x;
    const vals = current.series.flatMap((s) => s.values.map((v, i) => [v, s.sem[i]])).filter(([v]) => v !== null);
    let ymin = Math.min(0, ...vals.map(([v, e]) => v - (e || 0))), ymax = Math.max(1, ...vals.map(([v, e]) => v + (e || 0)));
    const X = (h) => L + ((h - x[0]) / Math.max(1e-9, x[x.length - 1] - x[0])) * (W - L - R);
    const Y = (v) => T + (1 - (v - ymin) / (ymax - ymin)) * (H - T - B);
    let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`;
    svg += `<rect width="${W}" height="${H}" fill="#fff"/><line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>`;
    for (let i = 0; i <= 4; i++) { const v = ymin + (i / 4) * (ymax - ymin); svg += `<text x="${L - 6}" y="${Y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text><line x1="${L}" x2="${W - R}" y1="${Y(v)}" y2="${Y(v)}" stroke="#eee"/>`; }
    x.forEach((h, i) => { if (i % Math.ceil(x.length / 12) === 0) svg += `<text x="${X(h)}" y="${H - B + 16}" text-anchor="middle">${h}</text>`; });
    svg += `<text x="${(W + L) / 2}" y="${H - 12}" text-anchor="middle">hours since surgery</text><text transform="translate(16 ${(H - B + T) / 2}) rotate(-90)" text-anchor="middle">${AMGS.esc(current.yLabel)} (mean +/- SEM)</text>`;
    if (x[0] <= 0 && x[x.length - 1] >= 0) svg += `<line x1="${X(0)}" x2="${X(0)}" y1="${T}" y2="${H - B}" stroke="#c62828" stroke-dasharray="4 3"/>`;
    current.series.forEach((s, k) => {
      const pts = x.map((h, i) => [h, s.values[i], s.sem[i]]).filter(([, v]) => v !== null);
      if (!pts.length) return;
      const up = pts.map(([h, v, e]) => `${X(h)},${Y(v + (e || 0))}`), lo = pts.map(([h, v, e]) => `${X(h)},${Y(v - (e || 0))}`).reverse();
      svg += `<polygon points="${up.concat(lo).join(" ")}" fill="${s.color}" fill-opacity="0.15"/>`;
      svg += `<polyline points="${pts.map(([h, v]) => `${X(h)},${Y(v)}`).join(" ")}" fill="none" stroke="${s.color}" stroke-width="2"/>`;
      svg += `<rect x="${L + 10 + k * 220}" y="14" width="14" height="4" fill="${s.color}"/><text x="${L + 28 + k * 220}" y="20">${AMGS.esc(s.label)}</text>`;
    });
    svg += "</svg>";
    download("amgs-groups.svg", new Blob([svg], { type: "image/svg+xml" }));
  });

  Object.values(ctl).forEach((c) => c.addEventListener("change", load));
  Promise.all([AMGS.getJSON("/api/meta/groups"), AMGS.getJSON("/api/meta/animals")]).then(([groups, animals]) => {
    groups.forEach((g) => { g.n_animals = animals.filter((a) => a.group_id === g.group_id).length; });
    list.innerHTML = groups.length ? groups.map((g) => `<label style="display:inline;margin-right:10px;color:inherit"><input type="checkbox" value="${AMGS.esc(g.group_id)}" checked> ${AMGS.esc(g.name || g.group_id)} (${g.n_animals})</label>`).join("")
      : "no groups registered yet (amgs server group add)";
    list.querySelectorAll("input").forEach((c) => c.addEventListener("change", load));
    load();
  }).catch((err) => AMGS.fail(el, err));
})();
