/* Work-order page: summary and timeline from the API (polled while running), live events over SSE.
 *
 * The stream is read with fetch() rather than EventSource so the API key can travel in the
 * Authorization header; it resumes after a drop by sending Last-Event-ID (the last seq seen),
 * which the server answers with exactly the events after it.
 */
"use strict";
(() => {
  const { api, text, headers, el, badge, fmtMs, fmtTime, fmtCost, fmtTokens, tokenTotal, since, TERMINAL } = AG;
  const id = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const base = "/api/v1/work-orders/" + encodeURIComponent(id);
  const POLL_MS = 2000;
  const MAX_LOG_LINES = 4000;

  const $ = (x) => document.getElementById(x);
  const logBox = $("log");
  let summary = null;
  let order = null;
  let pollTimer = null;
  let refreshSoon = null;
  const verificationCache = new Map(); // "runId/N" -> verification-N.json (immutable once written)
  const rendered = new Map(); // iteration number -> signature of what is drawn
  const stream = { runId: null, lastSeq: 0, controller: null, ended: false, liveTokens: null, costs: {},
                   iteration: null, phase: null, maxIterations: null };

  $("wo-id").textContent = id;
  document.title = id + " · AgentGate";

  function artifactUrl(name) {
    const q = summary && summary.run_id ? "?run_id=" + encodeURIComponent(summary.run_id) : "";
    return base + "/artifacts/" + name.split("/").map(encodeURIComponent).join("/") + q;
  }

  function artifactLink(name, label) {
    return el("a", { href: artifactUrl(name), target: "_blank", rel: "noopener" }, label || name);
  }

  // ---------------------------------------------------------------- summary
  function showError(message) {
    $("wo-error").textContent = message;
    $("wo-error").hidden = !message;
  }

  function setStatus(s) {
    const node = $("wo-status");
    node.className = "badge " + (s.status || "");
    node.textContent = s.status + (s.result ? " · " + s.result : "");
  }

  function dd(label, value, attrs) {
    return [el("dt", {}, label), el("dd", attrs || {}, value === null || value === undefined || value === "" ? "—" : value)];
  }

  function renderSummary() {
    const s = summary;
    setStatus(s);
    const finished = TERMINAL.has(s.status);
    const max = order ? order.max_iterations : stream.maxIterations;
    const liveTokens = stream.liveTokens;
    const tokens = liveTokens && tokenTotal(liveTokens) > tokenTotal(s.tokens) && !finished ? liveTokens : s.tokens;
    const liveCost = Object.values(stream.costs).reduce((a, b) => a + b, 0);
    const cost = !finished && liveCost > (s.cost_usd || 0) ? liveCost : s.cost_usd;
    const branch = (s.delivery && s.delivery.branch) || (s.workspace && s.workspace.branch);
    const duration = s.started_at ? fmtMs(since(s.started_at, s.ended_at)) : null;
    const items = [
      dd("Status", s.status, { "data-testid": "status" }),
      dd("State", s.state, { "data-testid": "state" }),
      dd("Result", s.result, { "data-testid": "result" }),
      dd("Iterations", s.iterations + (max ? " / " + max : ""), { "data-testid": "iterations" }),
      dd("Profile", order && order.profile ? order.profile + " · " + (order.profile_hash || "").slice(0, 12) : null,
        { "data-testid": "profile", title: (order && order.profile_hash) || null }),
      dd("Branch", branch ? el("code", {}, branch) : null, { "data-testid": "branch" }),
      dd("Delivered", s.delivery ? (s.delivery.pushed ? "pushed to " : "") + (s.delivery.target || s.delivery.mode) : null),
      dd("Tokens", tokenTotal(tokens) ? fmtTokens(tokens) : "0", { "data-testid": "tokens" }),
      dd("Cost", fmtCost(cost || 0), { "data-testid": "cost" }),
      dd("Started", fmtTime(s.started_at)),
      dd("Duration", duration),
      dd("Agent", order ? order.agent.driver + (order.agent.model ? " · " + order.agent.model : "") : null),
      dd("Priority", order ? order.priority : null),
      dd("Run", el("code", {}, s.run_id), { "data-testid": "run" }),
      dd("Labels", order && order.labels.length ? order.labels.join(", ") : null),
    ];
    if (s.error) items.push(...dd("Error", (s.build_error ? s.build_error.type + ": " : "") + s.error, { class: "fail" }));
    if (s.delivery && s.delivery.message) items.push(...dd("Delivery", s.delivery.message));
    $("summary").replaceChildren(...items.flat());
    $("task").textContent = order ? order.task_prompt : "";
    $("task").hidden = !order;

    const links = [];
    if (s.links && s.links.temporal_ui) {
      links.push(el("li", {}, el("a", { href: s.links.temporal_ui, target: "_blank", rel: "noopener" }, "Temporal Web UI")));
    }
    links.push(el("li", {}, artifactLink("run.json")));
    links.push(el("li", {}, artifactLink("events.jsonl")));
    links.push(el("li", {}, artifactLink("work-order.json")));
    links.push(el("li", {}, el("a", { href: base, target: "_blank", rel: "noopener" }, "API: this work order (JSON)")));
    $("links").replaceChildren(...links);
    $("artifacts-folder").textContent = (s.links && s.links.artifacts) || "";

    $("btn-cancel").disabled = finished;
    $("btn-kill").disabled = finished;
    $("btn-rerun").disabled = !finished;
  }

  async function loadOrder() {
    if (order) return;
    try {
      order = JSON.parse(await text(artifactUrl("work-order.json")));
    } catch (e) { /* not written yet: try again at the next refresh */ }
  }

  async function refresh() {
    clearTimeout(pollTimer);
    const r = await api("GET", base);
    if (r.status === 404) {
      showError("Work order " + id + " does not exist.");
      $("stream-state").textContent = "";
      return;
    }
    if (!r.ok) {
      showError("Could not load the work order: " + r.error);
      pollTimer = setTimeout(refresh, POLL_MS);
      return;
    }
    showError("");
    const previousRun = summary && summary.run_id;
    summary = r.data;
    if (previousRun && previousRun !== summary.run_id) resetForNewRun();
    await loadOrder();
    renderSummary();
    renderTimeline();
    loadArtifacts();
    if (stream.runId !== summary.run_id) startStream(summary.run_id);
    if (!TERMINAL.has(summary.status)) pollTimer = setTimeout(refresh, POLL_MS);
  }

  function scheduleRefresh() {
    clearTimeout(refreshSoon);
    refreshSoon = setTimeout(refresh, 250);
  }

  function resetForNewRun() {
    if (stream.controller) stream.controller.abort();
    Object.assign(stream, { runId: null, lastSeq: 0, controller: null, ended: false, liveTokens: null, costs: {},
                            iteration: null, phase: null });
    logBox.replaceChildren();
    rendered.clear();
    $("timeline").replaceChildren();
    order = null;
  }

  async function loadArtifacts() {
    const q = summary.run_id ? "?run_id=" + encodeURIComponent(summary.run_id) : "";
    const r = await api("GET", base + "/artifacts" + q);
    if (!r.ok) return;
    const list = $("artifacts");
    const names = r.data.items.map((i) => i.name + ":" + i.bytes).join("|");
    if (list.dataset.names === names) return;
    list.dataset.names = names;
    list.replaceChildren(...r.data.items.map((i) =>
      el("li", {}, el("a", { href: i.url, target: "_blank", rel: "noopener" }, i.name), " ",
        el("span", { class: "muted" }, "(" + i.bytes.toLocaleString() + " B)"))));
  }

  // ---------------------------------------------------------------- timeline
  function phaseBar(rec) {
    const phases = (rec.phases || []).map((p) => ({ name: p.phase, ms: since(p.started_at, p.ended_at) || 0 }));
    const total = phases.reduce((a, p) => a + p.ms, 0) || 1;
    const bar = el("div", { class: "phases", role: "img",
      "aria-label": "Phases: " + phases.map((p) => p.name + " " + fmtMs(p.ms)).join(", ") });
    for (const p of phases) {
      const known = ["build", "snapshot", "verify", "feedback"].includes(p.name) ? p.name : "other";
      bar.append(el("div", { class: "phase " + known, style: null, title: p.name + " " + fmtMs(p.ms),
                              "data-width": (100 * p.ms / total).toFixed(2) }, p.name));
    }
    const list = el("p", { class: "phase-list" }, phases.map((p) => p.name + " " + fmtMs(p.ms)).join(" · "));
    return [bar, list];
  }

  function sizePhases(root) {
    // CSP forbids inline style attributes in markup, but setting the CSSOM from script is allowed.
    for (const node of root.querySelectorAll(".phase[data-width]")) node.style.flex = "0 0 " + node.dataset.width + "%";
  }

  function lazyPre(name, summaryText, opts) {
    const details = el("details", { "data-artifact": name });
    const pre = el("pre", { tabindex: "0" });
    details.append(el("summary", {}, summaryText, " ", el("span", { class: "muted" }, "(", name, ")")), pre);
    details.addEventListener("toggle", async () => {
      if (!details.open || details.dataset.loaded) return;
      details.dataset.loaded = "1";
      pre.textContent = "Loading…";
      try {
        const body = await text(artifactUrl(name));
        if (opts && opts.diff) colorDiff(pre, body);
        else pre.textContent = body || "(empty)";
      } catch (e) {
        pre.textContent = "Could not load " + name + ": " + e.message;
        delete details.dataset.loaded;
      }
    });
    return details;
  }

  function colorDiff(pre, body) {
    pre.replaceChildren();
    if (!body) { pre.textContent = "(no changes)"; return; }
    for (const line of body.split("\n")) {
      let cls = null;
      if (line.startsWith("+") && !line.startsWith("+++")) cls = "add";
      else if (line.startsWith("-") && !line.startsWith("---")) cls = "del";
      else if (line.startsWith("@@")) cls = "hunk";
      pre.append(cls ? el("span", { class: cls }, line) : line, "\n");
    }
  }

  /* One collapsible group per level; a level with a failure starts open, an all-green one stays one line. */
  function gateLevels(checks) {
    const levels = new Map();
    for (const c of checks) {
      const level = c.level || "checks";
      if (!levels.has(level)) levels.set(level, []);
      levels.get(level).push(c);
    }
    const wrap = el("div", { class: "gate-levels" });
    for (const [level, items] of levels) {
      const failed = items.filter((c) => !c.passed).length;
      const rows = items.map((c) => {
        const ref = c.output_ref || c.output_file;
        const note = c.message && c.message !== "no violation" ? c.message : "";
        return el("tr", { "data-gate": c.name, "data-passed": c.passed ? "true" : "false" },
          el("td", {}, el("span", { class: "mono" }, c.name), note ? el("div", { class: "muted" }, note) : null,
            ref ? lazyPre(ref, "output", {}) : null),
          el("td", { class: "res" }, el("span", { class: c.passed ? "pass" : "fail" }, c.passed ? "passed" : "failed")),
          el("td", { class: "num" }, c.exit_code === null || c.exit_code === undefined ? "" : "exit " + c.exit_code),
          el("td", { class: "num" }, fmtMs(c.duration_ms)));
      });
      const group = el("details", { class: "level", "data-level": level, "data-artifact": "level:" + level,
                                    open: failed > 0 });
      group.append(el("summary", {}, el("strong", {}, level), " — ",
        el("span", { class: failed ? "fail" : "pass" }, failed ? failed + " of " + items.length + " failed" : "all " + items.length + " passed")));
      group.append(el("table", { class: "gates" },
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Check"), el("th", { scope: "col" }, "Result"),
          el("th", { scope: "col" }, "Exit"), el("th", { scope: "col" }, "Time"))),
        el("tbody", {}, rows)));
      wrap.append(group);
    }
    return wrap;
  }

  async function verificationFor(rec) {
    const v = rec.verification;
    if (!v) return null;
    const key = summary.run_id + "/" + rec.iteration;
    if (!verificationCache.has(key)) {
      try {
        verificationCache.set(key, JSON.parse(await text(artifactUrl(v.report_ref))));
      } catch (e) {
        return { checks: v.gates };
      }
    }
    return verificationCache.get(key);
  }

  function iterationCard(rec, report) {
    const v = rec.verification;
    const a = rec.agent;
    const runOver = TERMINAL.has(summary.status);
    const inProgress = !rec.ended_at && !runOver;
    const cut = !rec.ended_at && runOver; // the run was killed or canceled inside this iteration
    const verdict = v ? (v.passed ? "passed" : "failed") : (rec.error ? "failed" : (inProgress ? "running" : (cut ? "interrupted" : "—")));
    const card = el("li", { class: "iter", id: "iter-" + rec.iteration, "data-iteration": rec.iteration });
    card.append(el("div", { class: "iter-head" },
      el("h3", {}, "Iteration " + rec.iteration),
      badge(verdict, verdict === "passed" ? "passed" : ""),
      el("span", { class: "muted" }, inProgress ? "in progress" : (cut ? "did not finish" : fmtMs(since(rec.started_at, rec.ended_at))), " · ",
        fmtTime(rec.started_at))));
    if ((rec.phases || []).length) card.append(...phaseBar(rec));
    if (rec.decision) card.append(el("p", { class: "decision" }, el("strong", {}, "Decision: "), rec.decision));
    if (rec.error) card.append(el("p", { class: "fail" }, rec.error.type + ": " + rec.error.message));
    if (a) {
      card.append(el("p", { class: "agent-facts" },
        el("strong", {}, "Agent: "),
        (a.success ? "succeeded" : "failed") + ", exit " + (a.exit_code ?? "—") + ", " + fmtMs(a.duration_ms) +
        ", " + a.tool_calls + " tool calls" + (a.turns ? ", " + a.turns + " turns" : "") +
        ", tokens " + fmtTokens(a.tokens) + ", cost " + fmtCost(a.cost_usd || 0) + (a.model ? ", " + a.model : "") +
        (a.sandbox_provider ? ", sandbox " + a.sandbox_provider + " (network " + (a.sandbox_network || "—") + ")" : ""),
        " — ", artifactLink(a.stdout_ref, "stdout"), " · ", artifactLink(a.stderr_ref, "stderr"), " · ",
        artifactLink(a.result_ref)));
    }
    if (v) {
      const checks = (report && report.checks && report.checks.length ? report.checks : v.gates) || [];
      card.append(el("h4", {}, "Gate results by level"), gateLevels(checks));
      card.append(el("p", { class: "muted" }, "Verification report: ", artifactLink(v.report_ref),
        v.progress !== null && v.progress !== undefined ? " · progress " + Math.round(v.progress * 100) + "%" : ""));
    }
    if (rec.snapshot) {
      const s = rec.snapshot;
      card.append(lazyPre(s.patch_ref, "Diff: " + s.files_changed + " file(s), +" + s.insertions + " −" + s.deletions +
        (s.changed ? "" : " (no change)"), { diff: true }));
    }
    if (rec.feedback) {
      card.append(lazyPre(rec.feedback.ref, "Feedback sent: " + rec.feedback.summary, {}));
    }
    card.append(el("p", { class: "muted" }, artifactLink("iteration-" + rec.iteration + ".json")));
    sizePhases(card);
    return card;
  }

  let timelineChain = Promise.resolve();
  function renderTimeline() {
    // one rendering at a time: two overlapping ones could both append the same iteration
    timelineChain = timelineChain.then(renderTimelineNow, renderTimelineNow);
    return timelineChain;
  }

  async function renderTimelineNow() {
    const history = summary.history || [];
    $("timeline-empty").hidden = history.length > 0;
    const list = $("timeline");
    for (const rec of history) {
      const signature = JSON.stringify([rec, TERMINAL.has(summary.status)]);
      if (rendered.get(rec.iteration) === signature) continue;
      rendered.set(rec.iteration, signature);
      const report = await verificationFor(rec);
      const card = iterationCard(rec, report);
      const existing = $("iter-" + rec.iteration);
      if (existing) {
        // keep the sections someone opened
        const open = new Set(Array.from(existing.querySelectorAll("details[open]")).map((d) => d.dataset.artifact));
        existing.replaceWith(card);
        for (const d of card.querySelectorAll("details")) if (open.has(d.dataset.artifact)) d.open = true;
      } else {
        list.append(card);
      }
    }
  }

  // ---------------------------------------------------------------- live stream
  function nearBottom() {
    return logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 40;
  }

  function addLine(ev, kind, textValue, extraClass) {
    const stick = $("follow").checked && nearBottom();
    const line = el("div", { class: "ln ev-" + kind + (extraClass ? " " + extraClass : ""), "data-seq": ev.seq,
                            "data-type": ev.type },
      el("span", { class: "seq", "aria-hidden": "true" }, ev.seq),
      ev.iteration ? el("span", { class: "it" }, "#" + ev.iteration) : null,
      textValue);
    logBox.append(line);
    while (logBox.childElementCount > MAX_LOG_LINES) logBox.firstElementChild.remove();
    if (stick) logBox.scrollTop = logBox.scrollHeight;
  }

  function short(value, n) {
    let s = typeof value === "string" ? value : JSON.stringify(value);
    if (s === undefined || s === null) return "";
    s = String(s);
    return s.length > n ? s.slice(0, n) + "…" : s;
  }

  function updateNow() {
    const parts = [];
    if (stream.iteration) {
      const max = (order && order.max_iterations) || stream.maxIterations;
      parts.push("Iteration " + stream.iteration + (max ? " / " + max : ""));
    }
    if (stream.phase) parts.push(stream.phase);
    $("now").textContent = parts.join(" · ");
  }

  function addUsage(ev) {
    if (ev.tokens) {
      const t = stream.liveTokens || { input: 0, output: 0, cache_creation: 0, cache_read: 0 };
      for (const k of Object.keys(t)) t[k] += ev.tokens[k] || 0;
      stream.liveTokens = t;
    }
    if (typeof ev.cost_usd === "number") stream.costs[ev.iteration || 0] = ev.cost_usd;
    if (summary) renderSummary();
  }

  function handleEvent(ev) {
    switch (ev.type) {
      case "agent_output":
        addLine(ev, "output", ev.text || "", ev.stream === "stderr" ? "stderr" : null);
        break;
      case "agent_message":
        addLine(ev, "message", "💬 " + (ev.text || ""));
        break;
      case "agent_tool_call": {
        const t = ev.tool || {};
        addLine(ev, "tool", "→ " + (t.name || "tool") + " " + short(t.input, 300));
        break;
      }
      case "agent_tool_result": {
        const t = ev.tool || {};
        addLine(ev, "tool", "← " + (t.name || "tool") + (t.is_error ? " (error) " : " ") + short(t.output, 300),
          t.is_error ? "err" : null);
        break;
      }
      case "agent_usage":
        addUsage(ev);
        break;
      case "run_started":
        stream.maxIterations = ev.max_iterations || stream.maxIterations;
        addLine(ev, "progress", "run started" + (ev.agent ? " · agent " + ev.agent : ""));
        break;
      case "iteration_started":
        stream.iteration = ev.iteration;
        stream.maxIterations = ev.max_iterations || stream.maxIterations;
        addLine(ev, "progress", "iteration " + ev.iteration + " started");
        break;
      case "phase_started":
        if (ev.iteration) stream.iteration = ev.iteration;
        stream.phase = ev.phase;
        addLine(ev, "progress", "▶ " + ev.phase);
        break;
      case "phase_completed": {
        const bad = ev.success === false || ev.passed === false;
        addLine(ev, "progress", "■ " + ev.phase + (ev.duration_ms !== undefined ? " " + fmtMs(ev.duration_ms) : "") +
          (ev.passed === true ? " · passed" : "") + (ev.passed === false ? " · failed" : "") +
          (ev.canceled ? " · canceled" : "") + (ev.error_type ? " · " + ev.error_type : ""), bad ? "bad" : null);
        if (ev.phase === "build" && (ev.tokens || typeof ev.cost_usd === "number")) {
          stream.costs[ev.iteration || 0] = ev.cost_usd || stream.costs[ev.iteration || 0] || 0;
        }
        stream.phase = ev.phase + " done";
        break;
      }
      case "gate_checked":
        addLine(ev, "progress", (ev.passed ? "✔ " : "✘ ") +
          (ev.level && !String(ev.gate).startsWith(ev.level) ? ev.level + " " : "") + ev.gate +
          (ev.exit_code !== undefined ? " (exit " + ev.exit_code + ")" : ""), ev.passed ? null : "bad");
        break;
      case "iteration_completed":
        addLine(ev, "progress", "iteration " + ev.iteration + " " + (ev.passed ? "passed" : "did not pass") +
          (ev.decision ? " — " + ev.decision : ""), ev.passed ? null : "bad");
        scheduleRefresh();
        break;
      case "delivery_started":
        stream.phase = "delivery";
        addLine(ev, "progress", "delivering " + (ev.branch || "") + " (" + (ev.mode || "") + ")");
        break;
      case "delivery_completed":
        addLine(ev, "progress", "delivered " + (ev.branch || "") + (ev.target ? " → " + ev.target : "") +
          (ev.pr_url ? " " + ev.pr_url : ""));
        break;
      case "run_completed":
      case "run_failed":
      case "run_canceled":
        stream.phase = null;
        addLine(ev, "progress", ev.type.replace("_", " ") + (ev.result ? " · " + ev.result : "") +
          (ev.error ? " · " + ev.error : ""), ev.result === "passed" ? null : "bad");
        stream.ended = true;
        scheduleRefresh();
        break;
      default:
        addLine(ev, "progress", ev.type);
    }
    updateNow();
  }

  function handleBlock(block) {
    let evId = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") evId = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    let ev;
    try { ev = JSON.parse(data.join("\n")); } catch (e) { return; }
    const seq = Number(evId !== null ? evId : ev.seq);
    if (seq && seq <= stream.lastSeq) return; // never show a line twice
    if (seq) stream.lastSeq = seq;
    handleEvent(ev);
  }

  function setStreamState(value) {
    $("stream-state").textContent = value;
    logBox.setAttribute("aria-busy", value === "connecting…" ? "true" : "false");
  }

  async function startStream(runId) {
    if (stream.controller) stream.controller.abort();
    stream.runId = runId;
    stream.ended = false;
    let delay = 500;
    while (stream.runId === runId && !stream.ended) {
      const controller = new AbortController();
      stream.controller = controller;
      setStreamState(stream.lastSeq ? "reconnecting…" : "connecting…");
      try {
        const h = headers({ Accept: "text/event-stream" });
        if (stream.lastSeq) h["Last-Event-ID"] = String(stream.lastSeq);
        const res = await fetch(base + "/events?run_id=" + encodeURIComponent(runId), {
          headers: h, signal: controller.signal, cache: "no-store" });
        if (res.status === 404) { setStreamState("no events"); return; }
        if (!res.ok) throw new Error("HTTP " + res.status);
        setStreamState("live");
        delay = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n/g, "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            handleBlock(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      if (stream.runId !== runId) return;
      if (stream.ended || (summary && TERMINAL.has(summary.status))) break;
      setStreamState("reconnecting…");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
    if (stream.runId === runId) setStreamState(stream.ended ? "run ended" : "stream closed");
  }

  // ---------------------------------------------------------------- actions
  async function act(label, question, method, path, body) {
    if (!window.confirm(question)) return;
    const state = $("action-state");
    state.textContent = label + "…";
    const r = await api(method, path, body);
    state.textContent = r.ok ? label + ": " + (r.data.status || "done") : label + " failed: " + r.error;
    if (r.ok) {
      if (method === "POST" && path.endsWith("/runs")) stream.ended = true;
      clearTimeout(pollTimer);
      pollTimer = setTimeout(refresh, 300);
    }
  }

  $("btn-cancel").addEventListener("click", () =>
    act("Cancel", "Cancel " + id + "? The agent is stopped; the work so far is kept and delivered.", "DELETE", base));
  $("btn-kill").addEventListener("click", () => {
    const reason = $("kill-reason").value.trim() || "killed from the dashboard";
    act("Kill", "Kill " + id + " now? The workflow is terminated without delivery.\nReason: " + reason,
      "POST", base + "/kill", { reason });
  });
  $("btn-rerun").addEventListener("click", () =>
    act("Re-run", "Start a new run of " + id + "?", "POST", base + "/runs"));

  for (const box of document.querySelectorAll(".log-filters input[data-kind]")) {
    box.addEventListener("change", () => logBox.classList.toggle("hide-" + box.dataset.kind, !box.checked));
  }

  refresh();
})();
