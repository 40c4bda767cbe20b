// Blinded MGS scoring: one face at a time, keyboard only. The page knows each face only by an opaque
// token; nothing about cage, animal, group, device, time or the model's score ever reaches it.
"use strict";
(function () {
  const root = document.body.dataset.root || "";
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const UNITS = Array.from(document.querySelectorAll("#r-units tr")).map((tr) => tr.dataset.au);
  const img = document.getElementById("r-img");
  const progress = document.getElementById("r-progress");
  const flag = document.getElementById("r-unscorable");
  const message = document.getElementById("r-message");
  let view = null, values = {}, unscorable = false, focus = 0, shownAt = 0, busy = false;

  async function call(method, path, body) {
    const r = await fetch(root + path, {
      method, credentials: "same-origin", cache: "no-store",
      headers: Object.assign(
        { Accept: "application/json" },
        method === "GET" ? {} : { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      ),
      body: method === "GET" ? undefined : JSON.stringify(body || {}),
    });
    let data = null;
    try { data = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok) throw new Error((data && data.detail) || r.statusText);
    return data;
  }

  function say(text, isError) {
    if (isError) document.body.dataset.error = text;
    message.textContent = text;
    message.hidden = !text;
    message.classList.toggle("error", !!isError);
  }

  function render() {
    document.querySelectorAll("#r-units tr").forEach((tr, i) => {
      tr.classList.toggle("focus", i === focus && !unscorable);
      const v = values[tr.dataset.au];
      tr.querySelectorAll("button").forEach((b) => b.classList.toggle("on", v !== undefined && String(v) === b.dataset.v));
      tr.classList.toggle("done", v !== undefined);
    });
    flag.hidden = !unscorable;
    document.body.classList.toggle("unscorable", unscorable);
    if (view) {
      progress.textContent = view.total
        ? `${view.done} of ${view.total} scored \u00b7 face ${Math.min(view.pos + 1, view.total)} of ${view.total}`
        : "nothing to score";
    }
  }

  function show(v) {
    view = v;
    values = {}; unscorable = false; focus = 0; say("");
    document.body.dataset.pos = String(v.pos);
    if (!v.token) {
      img.removeAttribute("src");
      img.hidden = true;
      say(v.total ? "All faces of this session are scored. Thank you." : "No faces are waiting to be scored.");
      document.body.dataset.finished = "1";
      render();
      document.body.dataset.ready = String(Number(document.body.dataset.ready || 0) + 1);
      return;
    }
    delete document.body.dataset.finished;
    if (v.values) {
      unscorable = !!v.values.unscorable;
      if (!unscorable) UNITS.forEach((k) => { values[k] = v.values.au[k] === null ? "nv" : v.values.au[k]; });
    }
    img.hidden = false;
    img.onload = () => { shownAt = performance.now(); document.body.dataset.ready = String(Number(document.body.dataset.ready || 0) + 1); };
    img.src = `${root}/api/rating/image/${encodeURIComponent(v.token)}`;
    render();
  }

  async function go(promise) {
    busy = true;
    try { show(await promise); } catch (e) { say(`could not save or load: ${e.message}`, true); } finally { busy = false; }
  }

  function complete() { return unscorable || UNITS.every((k) => values[k] !== undefined); }

  function submit() {
    if (!complete()) {
      say("Score all five units (3 = not visible), or press 9 if the face cannot be scored.", true);
      const next = UNITS.findIndex((k) => values[k] === undefined);
      if (next >= 0) { focus = next; render(); }
      return;
    }
    const au = {};
    UNITS.forEach((k) => { au[k] = unscorable || values[k] === "nv" ? null : values[k]; });
    const duration = shownAt ? Math.round(performance.now() - shownAt) : null;
    go(call("POST", `/api/rating/rate/${encodeURIComponent(view.token)}`, { au, unscorable, duration_ms: duration }));
  }

  function setUnit(v) {
    unscorable = false;
    values[UNITS[focus]] = v;
    const next = UNITS.findIndex((k, i) => i > focus && values[k] === undefined);
    focus = next >= 0 ? next : Math.min(focus + 1, UNITS.length - 1);
    say("");
    render();
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "Escape") { window.location.href = `${root}/rate/stopped`; return; }
    if (busy || !view) return;
    const k = ev.key;
    if (k === "ArrowLeft") {
      ev.preventDefault();
      if (view.pos > 0) go(call("GET", `/api/rating/session/${view.pos - 1}`));
      return;
    }
    if (!view.token) return;
    if (k === "0" || k === "1" || k === "2") { setUnit(Number(k)); }
    else if (k === "3" || k === "n") { setUnit("nv"); }
    else if (k === "9" || k === "u") { unscorable = !unscorable; say(""); render(); }
    else if (k === "ArrowUp") { ev.preventDefault(); focus = Math.max(0, focus - 1); render(); }
    else if (k === "ArrowDown") { ev.preventDefault(); focus = Math.min(UNITS.length - 1, focus + 1); render(); }
    else if (k === "Enter" || k === "ArrowRight") {
      ev.preventDefault();
      if (k === "ArrowRight" && view.values && !Object.keys(values).length && !unscorable) {
        go(call("GET", `/api/rating/session/${view.pos + 1}`));
      } else {
        submit();
      }
    }
  });

  document.querySelectorAll("#r-units tr").forEach((tr, i) => {
    tr.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => {
      focus = i; setUnit(b.dataset.v === "nv" ? "nv" : Number(b.dataset.v));
    }));
  });

  go(call("POST", "/api/rating/session"));
})();
