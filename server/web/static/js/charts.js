// Thin layer over uPlot: mean lines with +/- SEM bands, dark-phase shading, a baseline band,
// a threshold line and event markers. AMGS.plot(...) returns the uPlot instance (kept in AMGS.charts).
"use strict";
AMGS.COLORS = ["#c62828", "#1f5fa8", "#2e8b57", "#8e44ad", "#d98e04", "#00838f", "#6d4c41"];

AMGS.hexAlpha = function (hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
};

AMGS.overlays = function (o) {
  // Drawn under the series (shading, baseline) and over them (threshold, events).
  return {
    hooks: {
      drawClear: [(u) => {
        const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
        ctx.save();
        (o.dark || []).forEach(([a, b]) => {
          const x0 = Math.max(u.bbox.left, u.valToPos(a, "x", true));
          const x1 = Math.min(u.bbox.left + u.bbox.width, u.valToPos(b, "x", true));
          if (x1 > x0) { ctx.fillStyle = "rgba(60,70,90,0.10)"; ctx.fillRect(x0, top, x1 - x0, h); }
        });
        if (o.baseline && o.baseline.mean !== null && o.baseline.mean !== undefined) {
          const sem = o.baseline.sem || 0.01;
          const y0 = u.valToPos(o.baseline.mean + sem, "y", true), y1 = u.valToPos(o.baseline.mean - sem, "y", true);
          ctx.fillStyle = "rgba(46,139,87,0.18)";
          ctx.fillRect(u.bbox.left, y0, u.bbox.width, Math.max(2, y1 - y0));
        }
        ctx.restore();
      }],
      draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        if (o.threshold !== null && o.threshold !== undefined) {
          const y = u.valToPos(o.threshold, "y", true);
          ctx.strokeStyle = "rgba(198,40,40,0.8)"; ctx.setLineDash([6, 4]); ctx.lineWidth = 1.5;
          ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y); ctx.stroke();
          ctx.setLineDash([]);
        }
        (o.events || []).forEach((e) => {
          const x = u.valToPos(e.x, "x", true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
          ctx.strokeStyle = e.color || "#333"; ctx.lineWidth = 1.5;
          ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
          ctx.fillStyle = e.color || "#333"; ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
          ctx.fillText(e.label, x + 4, u.bbox.top + 12 * devicePixelRatio);
        });
        ctx.restore();
      }],
    },
  };
};

AMGS.plot = function (name, el, o) {
  // o: {x, xTime, series: [{label, values, color, sem, dash, scale, points}], y: [min,max], yLabel, y2Label, ...overlays}
  const data = [o.x];
  const series = [{ label: o.xLabel || (o.xTime ? "time" : "hours") }];
  const bands = [];
  o.series.forEach((s, i) => {
    const color = s.color || AMGS.COLORS[i % AMGS.COLORS.length];
    data.push(s.values);
    const idx = data.length - 1;
    series.push({ label: s.label, stroke: color, width: s.width || 2, dash: s.dash, scale: s.scale || "y",
                  spanGaps: false, points: { show: s.points !== undefined ? s.points : o.x.length < 60, size: 5, fill: color },
                  value: (u, v) => (v === null || v === undefined ? "-" : v.toFixed(s.digits === undefined ? 3 : s.digits)) });
    if (s.sem) {
      const up = s.values.map((v, j) => (v === null || s.sem[j] === null ? null : v + s.sem[j]));
      const lo = s.values.map((v, j) => (v === null || s.sem[j] === null ? null : v - s.sem[j]));
      data.push(up, lo);
      series.push({ label: s.label + " +SEM", stroke: AMGS.hexAlpha(color, 0.25), width: 1, scale: s.scale || "y", spanGaps: false, points: { show: false } });
      series.push({ label: s.label + " -SEM", stroke: AMGS.hexAlpha(color, 0.25), width: 1, scale: s.scale || "y", spanGaps: false, points: { show: false } });
      bands.push({ series: [idx + 1, idx + 2], fill: AMGS.hexAlpha(color, 0.15) });
    }
  });
  const scales = { x: { time: !!o.xTime }, y: o.y ? { range: o.y } : { auto: true } };
  const axes = [{ label: o.xLabel }, { label: o.yLabel, size: 55 }];
  if (o.y2Label) {
    scales.y2 = { auto: true, range: (u, min, max) => [0, Math.max(1, max * 1.1)] };
    axes.push({ scale: "y2", side: 1, label: o.y2Label, grid: { show: false }, size: 55 });
  }
  const opts = {
    width: Math.max(300, el.clientWidth), height: o.height || 240, series, bands, scales, axes,
    legend: { live: true }, cursor: { drag: { x: true, y: false } }, plugins: [AMGS.overlays(o)],
  };
  el.innerHTML = "";
  if (AMGS.charts[name]) AMGS.charts[name].destroy();
  const u = new uPlot(opts, data, el);
  // The SEM edges are drawn as a band; keep them out of the legend.
  series.forEach((s, i) => { if (/ [+-]SEM$/.test(s.label || "")) { const row = u.root.querySelectorAll(".u-legend .u-series")[i]; if (row) row.style.display = "none"; } });
  AMGS.charts[name] = u;
  return u;
};

window.addEventListener("resize", () => {
  Object.values(AMGS.charts).forEach((u) => u.setSize({ width: Math.max(300, u.root.parentNode.clientWidth), height: u.height }));
});
