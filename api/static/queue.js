/* Queue page: filters in the URL, server-side filtering, refreshed every 2 s without moving the layout.
   Positions and the Queue panel come from the admission queue itself (GET /api/v1/queue, one query of its
   workflow): the page never computes an order of its own, since fairness keys and the grant policy decide it. */
"use strict";
(() => {
  const { api, el, badge, fmtAge, fmtMs, since, TERMINAL } = AG;
  const form = document.getElementById("filters");
  const tbody = document.getElementById("orders");
  const empty = document.getElementById("empty");
  const errorBox = document.getElementById("list-error");
  const FILTERS = ["status", "agent", "repository", "label"];
  const POLL_MS = 2000;
  let generation = 0;
  let timer = null;
  let queueGeneration = 0;
  let queueTimer = null;
  /* work-order id -> {position, ahead, estimated_wait_seconds} (position 0 = holds a slot), from the last snapshot. */
  let places = new Map();

  const initial = new URLSearchParams(location.search);
  for (const name of FILTERS) {
    if (initial.has(name)) form.elements[name].value = initial.get(name);
  }

  function currentFilters() {
    const out = {};
    for (const name of FILTERS) {
      const v = (form.elements[name].value || "").trim();
      if (v) out[name] = v;
    }
    return out;
  }

  async function fetchOrders(filters) {
    const base = new URLSearchParams();
    for (const k of ["agent", "repository", "label"]) if (filters[k]) base.set(k, filters[k]);
    base.set("limit", "200");
    let statuses = [null];
    if (filters.status === "active") statuses = ["running", "queued"];
    else if (filters.status) statuses = [filters.status];
    const answers = await Promise.all(statuses.map((s) => {
      const q = new URLSearchParams(base);
      if (s) q.set("status", s);
      return api("GET", "/api/v1/work-orders?" + q.toString());
    }));
    const failed = answers.find((a) => !a.ok);
    if (failed) throw new Error(failed.error);
    const items = answers.flatMap((a) => a.data.items);
    items.sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
    return items;
  }

  function fmtSeconds(s) {
    return s === null || s === undefined ? "—" : fmtMs(s * 1000);
  }

  function positionCell(id) {
    const place = places.get(id);
    if (!place) return el("td", {});
    if (place.position === 0) {
      return el("td", { class: "muted", "data-position": "0", title: "holds a slot" }, "slot");
    }
    const wait = place.estimated_wait_seconds;
    const title = place.ahead + " ahead" + (wait === null || wait === undefined ? "" : " · estimated wait " + fmtSeconds(wait));
    return el("td", { "data-position": place.position, title }, "#" + place.position);
  }

  function row(item) {
    const finished = TERMINAL.has(item.status);
    const age = finished && item.closed_at ? fmtMs(since(item.created_at, item.closed_at)) : fmtAge(item.created_at);
    const repo = item.repository || "—";
    const labels = (item.labels || []).join(", ");
    return el("tr", { "data-id": item.id, "data-status": item.status || "" },
      positionCell(item.id),
      el("td", { class: "mono" }, el("a", { href: "/work-orders/" + encodeURIComponent(item.id) }, item.id)),
      el("td", {}, badge(item.status)),
      el("td", {}, item.state || "—"),
      el("td", {}, item.result ? badge(item.result, item.result === "passed" ? "passed" : "") : "—"),
      el("td", {}, item.priority ?? "—"),
      el("td", {}, item.agent || "—"),
      el("td", { title: repo, class: "mono" }, repo),
      el("td", { title: labels }, labels),
      el("td", { title: finished ? "run time" : "since submitted" }, age),
    );
  }

  /* Patch cells in place when the rows are the same orders in the same order: a focused link keeps its focus. */
  function render(rows) {
    const current = Array.from(tbody.rows);
    const sameOrder = current.length === rows.length && current.every((r, i) => r.dataset.id === rows[i].dataset.id);
    if (!sameOrder) {
      tbody.replaceChildren(...rows);
      return;
    }
    rows.forEach((fresh, i) => {
      const old = current[i];
      old.dataset.status = fresh.dataset.status;
      Array.from(fresh.cells).forEach((cell, j) => {
        if (old.cells[j].outerHTML !== cell.outerHTML) old.cells[j].replaceWith(cell);
      });
    });
  }

  async function health() {
    const list = document.getElementById("health");
    const r = await api("GET", "/health/ready");
    const checks = (r.data && r.data.checks) || {};
    const items = [];
    const t = checks.temporal;
    items.push(el("li", {}, "Temporal: ", t ? badge(t.ok ? "ok" : "down", t.ok ? "passed" : "failed") : "unknown"));
    const s = checks.artifact_store;
    items.push(el("li", {}, "Artifact store: ", s ? badge(s.ok ? "ok" : "failing", s.ok ? "passed" : "failed") : "unknown"));
    if (!r.ok && r.status === 0) items.push(el("li", { class: "fail" }, r.error));
    list.replaceChildren(...items);
  }

  /* After a new snapshot: only the position cells change, the rest of each row stays as it is. */
  function applyPositions() {
    for (const tr of tbody.rows) {
      const fresh = positionCell(tr.dataset.id);
      if (tr.cells[0].outerHTML !== fresh.outerHTML) tr.cells[0].replaceWith(fresh);
    }
  }

  function setText(testId, text) {
    const node = document.querySelector('[data-testid="' + testId + '"]');
    if (node.textContent !== String(text)) node.textContent = String(text);
  }

  const HEALTH_CLASS = { healthy: "passed", degraded: "canceled", unhealthy: "failed" };

  function showHealth(report, error) {
    const box = document.getElementById("q-health");
    const status = report && report.status ? report.status : "unknown";
    const reasons = report && report.reasons ? report.reasons.slice() : [];
    if (error) reasons.push(error);
    const current = box.firstElementChild;
    if (!current || current.textContent !== status) box.replaceChildren(badge(status, HEALTH_CLASS[status] || ""));
    const list = document.getElementById("q-reasons");
    const text = reasons.join("\n");
    if (list.dataset.text !== text) {
      list.dataset.text = text;
      list.replaceChildren(...reasons.map((r) => el("li", {}, r)));
      list.hidden = reasons.length === 0;
    }
    list.className = "reasons " + status;
  }

  function showStats(q) {
    setText("queue-capacity", q.capacity);
    setText("queue-running", q.running);
    setText("queue-running-of", q.capacity);
    setText("queue-queued", q.queued);
    setText("queue-oldest", q.queued ? fmtSeconds(q.oldest_wait_seconds) : "—");
    const prios = Object.keys(q.by_priority || {}).sort();
    setText("queue-by-priority", prios.map((p) => "P" + p + ": " + q.by_priority[p]).join(" · ") || "—");
    document.getElementById("q-new-capacity").placeholder = String(q.capacity);
  }

  /* The Queue panel and the positions, on their own timer: a queue that does not answer (no worker: the
     query waits up to 5 s) must not hold back the list of orders. */
  async function refreshQueue() {
    const mine = ++queueGeneration;
    clearTimeout(queueTimer);
    try {
      const [snap, health] = await Promise.all([api("GET", "/api/v1/queue"), api("GET", "/api/v1/queue/health")]);
      if (mine !== queueGeneration) return;
      if (snap.ok) {
        showStats(snap.data);
        places = new Map();
        for (const h of snap.data.holders || []) if (!places.has(h.work_order_id)) places.set(h.work_order_id, h);
        for (const w of snap.data.positions || []) if (!places.has(w.work_order_id)) places.set(w.work_order_id, w);
      } else {
        places = new Map();
      }
      applyPositions();
      // The health route answers 503 with the same report when unhealthy: show it, not the status code.
      const report = health.data && health.data.status ? health.data : null;
      showHealth(report, snap.ok ? (report ? null : health.error) : "the queue did not answer: " + snap.error);
      document.getElementById("q-updated").textContent = "updated " + new Date().toLocaleTimeString(undefined, { hour12: false });
    } catch (e) {
      if (mine === queueGeneration) showHealth(null, "could not show the queue: " + e.message);
    } finally {
      if (mine === queueGeneration) queueTimer = setTimeout(refreshQueue, POLL_MS);
    }
  }

  const capForm = document.getElementById("capacity-form");
  const capInput = document.getElementById("q-new-capacity");
  const capError = document.getElementById("err-capacity");
  const capState = document.getElementById("q-capacity-state");

  /* The API judges the value (the form has novalidate): its 422 message is shown at the field. */
  capForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const raw = capInput.value.trim();
    const number = Number(raw);
    const value = raw !== "" && Number.isFinite(number) ? number : raw;
    const button = capForm.querySelector("button");
    button.disabled = true;
    capState.textContent = "setting…";
    try {
      const r = await api("PUT", "/api/v1/queue/capacity", { capacity: value });
      if (r.ok) {
        capError.hidden = true;
        capError.textContent = "";
        capInput.removeAttribute("aria-invalid");
        capInput.value = "";
        capState.textContent = "capacity set to " + r.data.capacity;
        showStats(r.data);
        refreshQueue();
        refresh();
      } else {
        const details = (r.data && r.data.error && r.data.error.details) || [];
        const mine = Array.isArray(details) ? details.find((d) => d.field === "body.capacity") : null;
        capError.textContent = mine ? "Capacity: " + mine.message : r.error;
        capError.hidden = false;
        capInput.setAttribute("aria-invalid", "true");
        capState.textContent = "";
        capInput.focus();
      }
    } finally {
      button.disabled = false;
    }
  });

  async function refresh() {
    const mine = ++generation;
    clearTimeout(timer);
    try {
      const filters = currentFilters();
      const [items] = await Promise.all([fetchOrders(filters), health().catch(() => null)]);
      if (mine !== generation) return;
      errorBox.hidden = true;
      render(items.map((i) => row(i)));
      empty.hidden = items.length > 0;
      const running = items.filter((i) => i.status === "running").length;
      const queued = items.filter((i) => i.status === "queued").length;
      document.getElementById("counts").textContent =
        items.length + " shown, " + running + " running, " + queued + " queued";
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString(undefined, { hour12: false });
    } catch (e) {
      if (mine !== generation) return;
      errorBox.textContent = "Could not load the work orders: " + e.message;
      errorBox.hidden = false;
    } finally {
      if (mine === generation) timer = setTimeout(refresh, POLL_MS);
    }
  }

  function syncUrl() {
    const q = new URLSearchParams(currentFilters());
    const qs = q.toString();
    history.replaceState(null, "", qs ? "?" + qs : location.pathname);
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); syncUrl(); refresh(); });
  form.elements.status.addEventListener("change", () => { syncUrl(); refresh(); });
  form.elements.agent.addEventListener("change", () => { syncUrl(); refresh(); });
  document.getElementById("f-clear").addEventListener("click", () => {
    for (const name of FILTERS) form.elements[name].value = "";
    syncUrl();
    refresh();
  });
  refresh();
  refreshQueue();
})();
