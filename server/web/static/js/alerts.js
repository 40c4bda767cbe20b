// Alerts page: open / acknowledged / resolved with who, when and comments; acknowledge and resolve for staff.
"use strict";
(function () {
  const el = document.getElementById("alerts");
  let state = new URLSearchParams(location.search).get("state") ?? "open";

  function card(a) {
    const who = [];
    if (a.acknowledged_at) who.push(`acknowledged by <strong>${AMGS.esc(a.acknowledged_by)}</strong> at ${AMGS.fmtTime(a.acknowledged_at)}${a.ack_comment ? `: &ldquo;${AMGS.esc(a.ack_comment)}&rdquo;` : ""}`);
    if (a.resolved_at) who.push(`resolved by <strong>${AMGS.esc(a.resolved_by)}</strong> at ${AMGS.fmtTime(a.resolved_at)}${a.resolve_comment ? `: &ldquo;${AMGS.esc(a.resolve_comment)}&rdquo;` : ""}`);
    const actions = a.state === "resolved" ? "" : AMGS.canAct
      ? `<form data-alert="${a.alert_id}"><input type="text" name="comment" placeholder="comment (e.g. analgesic given, vet informed)" maxlength="2000">
         ${a.state === "open" ? '<button type="submit" name="do" value="acknowledge">Acknowledge</button>' : ""}
         <button type="submit" class="secondary" name="do" value="resolve">Resolve</button></form>` : "";
    return `<div class="alert-card sev-${AMGS.esc(a.severity)} st-${AMGS.esc(a.state)}" data-alert="${a.alert_id}" data-state="${AMGS.esc(a.state)}">
      <div class="line1"><span class="sev ${AMGS.esc(a.severity)}">${AMGS.esc(a.severity.replace("_", " "))}</span>
      <strong><a href="${AMGS.root}/cages/${encodeURIComponent(a.cage_id)}">cage ${AMGS.esc(a.cage_id)}</a></strong>
      <span>${AMGS.esc(a.rule.replace(/_/g, " "))}</span><span class="who">${AMGS.esc(a.state)} &middot; opened ${AMGS.fmtTime(a.opened_at)} &middot; updated ${AMGS.fmtTime(a.updated_at)} &middot; notified ${a.notify_count || 0}x</span></div>
      <div class="msg">${AMGS.esc(a.message)}</div>
      ${who.length ? `<div class="who">${who.join("<br>")}</div>` : ""}
      ${actions}
      <details class="history"><summary>history (${a.events.length})</summary>${a.events.map((e) =>
        `<div>${AMGS.fmtTime(e.at)} &middot; ${AMGS.esc(e.kind)} by ${AMGS.esc(e.actor)}${e.detail ? ": " + AMGS.esc(e.detail) : ""}</div>`).join("")}</details></div>`;
  }

  async function load() {
    document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("on", b.dataset.state === state));
    try {
      const alerts = await AMGS.getJSON("/api/alerts" + (state ? `?state=${state}` : ""));
      el.innerHTML = alerts.length ? alerts.map(card).join("") : `<div class="empty">no ${AMGS.esc(state || "")} alerts</div>`;
      AMGS.ready();
    } catch (err) { AMGS.fail(el, err); }
  }

  el.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target, action = ev.submitter ? ev.submitter.value : "acknowledge";
    try {
      await AMGS.postJSON(`/api/alerts/${encodeURIComponent(form.dataset.alert)}/${action}`, { comment: form.comment.value });
      await load();
    } catch (err) { alert(`Could not ${action}: ${err.message}`); }
  });
  document.getElementById("tabs").addEventListener("click", (ev) => {
    if (ev.target.dataset.state === undefined) return;
    state = ev.target.dataset.state;
    history.replaceState(null, "", state ? `?state=${state}` : "?state=");
    load();
  });
  load();
  setInterval(load, 30000);
})();
