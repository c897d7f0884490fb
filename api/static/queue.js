/* Queue page: filters in the URL, server-side filtering, refreshed every 2 s without moving the layout. */
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

  function queuePositions(items) {
    const queued = items.filter((i) => i.status === "queued");
    queued.sort((a, b) => (a.priority ?? 3) - (b.priority ?? 3) || (a.created_at || "").localeCompare(b.created_at || ""));
    return new Map(queued.map((item, index) => [item.id, index + 1]));
  }

  function row(item, position) {
    const finished = TERMINAL.has(item.status);
    const age = finished && item.closed_at ? fmtMs(since(item.created_at, item.closed_at)) : fmtAge(item.created_at);
    const repo = item.repository || "—";
    const labels = (item.labels || []).join(", ");
    return el("tr", { "data-id": item.id, "data-status": item.status || "" },
      el("td", {}, position ? "#" + position : ""),
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

  async function refresh() {
    const mine = ++generation;
    clearTimeout(timer);
    try {
      const filters = currentFilters();
      const [items] = await Promise.all([fetchOrders(filters), health().catch(() => null)]);
      if (mine !== generation) return;
      errorBox.hidden = true;
      const positions = queuePositions(items);
      render(items.map((i) => row(i, positions.get(i.id))));
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
})();
