/* Submit form: builds the work-order JSON, and on a 422 puts each error next to the field it names. */
"use strict";
(() => {
  const { api } = AG;
  const form = document.getElementById("submit-form");
  const formError = document.getElementById("form-error");
  const state = document.getElementById("submit-state");
  const button = document.getElementById("submit-button");
  // Errors whose location is a whole object are shown at the input a person would fix.
  const ALIASES = { "agent": "agent.command", "workspace_source": "workspace_source.path", "body": null };

  function fieldInputs() {
    return Array.from(form.querySelectorAll("[data-field]"));
  }

  function clearErrors() {
    formError.hidden = true;
    formError.textContent = "";
    for (const input of fieldInputs()) {
      input.removeAttribute("aria-invalid");
      const box = document.getElementById("err-" + input.dataset.field);
      if (box) { box.hidden = true; box.textContent = ""; }
    }
  }

  /* "body.gates.0.command" → the input whose data-field is the longest prefix ("gates"). */
  function inputFor(field) {
    let path = (field || "").replace(/^body\.?/, "");
    if (Object.prototype.hasOwnProperty.call(ALIASES, path)) path = ALIASES[path] || "";
    let best = null;
    for (const input of fieldInputs()) {
      const f = input.dataset.field;
      if ((path === f || path.startsWith(f + ".")) && (!best || f.length > best.dataset.field.length)) best = input;
    }
    return best;
  }

  function showErrors(details, message) {
    const unplaced = [];
    let first = null;
    for (const d of details || []) {
      const input = inputFor(d.field);
      if (!input) { unplaced.push((d.field ? d.field + ": " : "") + d.message); continue; }
      input.setAttribute("aria-invalid", "true");
      const box = document.getElementById("err-" + input.dataset.field);
      box.textContent = box.textContent ? box.textContent + " " + d.message : d.message;
      box.hidden = false;
      first = first || input;
    }
    if (unplaced.length || !(details || []).length) {
      formError.textContent = unplaced.length ? unplaced.join("\n") : message;
      formError.hidden = false;
    }
    (first || formError).focus?.();
  }

  function numberOrRaw(value) {
    const trimmed = value.trim();
    if (trimmed === "") return undefined;
    const n = Number(trimmed);
    return Number.isFinite(n) ? n : trimmed; // the server names the field when it is not a number
  }

  /* Harness profiles: the select lists them; choosing one shows its values as the placeholders of the
     fields it fills. Only fields a person filled in are sent, so the profile supplies the rest. */
  const profileSelect = form.elements["profile"];
  const profileHint = document.getElementById("hint-profile");
  const HINT = profileHint.textContent;
  const PLACEHOLDERS = {
    max_iterations: form.elements["max_iterations"].placeholder,
    max_wall_clock_seconds: form.elements["max_wall_clock_seconds"].placeholder,
    gates: form.elements["gates"].placeholder,
  };
  const priorityDefault = form.elements["priority"].querySelector("option[value='']");

  function showProfileDefaults(resolved, label) {
    const r = resolved || {};
    form.elements["max_iterations"].placeholder = r.max_iterations ?? PLACEHOLDERS.max_iterations;
    form.elements["max_wall_clock_seconds"].placeholder = r.max_wall_clock_seconds ?? PLACEHOLDERS.max_wall_clock_seconds;
    const gates = (r.gates || []).map((g) => g.command);
    form.elements["gates"].placeholder = gates.length ? gates.join("\n") : PLACEHOLDERS.gates;
    priorityDefault.textContent = (label || "default") + " (" + (r.priority ?? 3) + ")";
  }

  async function chooseProfile() {
    const name = profileSelect.value;
    if (!name) { profileHint.textContent = HINT; showProfileDefaults(null); return; }
    const r = await api("GET", "/api/v1/profiles/" + encodeURIComponent(name) + "?resolve=true");
    if (name !== profileSelect.value) return; // a newer choice won
    if (!r.ok) { profileHint.textContent = r.error; showProfileDefaults(null); return; }
    profileHint.textContent = (r.data.description ? r.data.description + " — " : "") + "chain " +
      r.data.chain.join(" → ") + ", hash " + r.data.hash.slice(0, 12) + ". Fields you fill in override it.";
    showProfileDefaults(r.data.resolved, "profile");
  }

  async function loadProfiles() {
    const r = await api("GET", "/api/v1/profiles");
    if (!r.ok) { profileHint.textContent = "Profiles could not be loaded: " + r.error; return; }
    for (const p of r.data.items) {
      const text = p.name + (p.builtin ? "" : " (user)") + (p.error ? " — invalid" : "");
      profileSelect.append(AG.el("option", { value: p.name, disabled: !!p.error }, text));
    }
    const wanted = new URLSearchParams(location.search).get("profile");
    if (wanted && r.data.items.some((p) => p.name === wanted)) { profileSelect.value = wanted; chooseProfile(); }
  }

  profileSelect.addEventListener("change", chooseProfile);
  loadProfiles();

  function buildBody() {
    const v = (name) => form.elements[name].value;
    const agent = { driver: v("agent_driver") };
    if (v("agent_command").trim()) agent.command = v("agent_command").trim();
    if (v("agent_model").trim()) agent.model = v("agent_model").trim();
    const body = {
      task_prompt: v("task_prompt"),
      workspace_source: { type: "local", path: v("workspace_path").trim() },
      agent,
      labels: v("labels").split(/[\s,]+/).filter(Boolean),
    };
    if (v("profile")) body.profile = v("profile");
    const gates = v("gates").split("\n").map((l) => l.trim()).filter(Boolean);
    if (gates.length) body.gates = gates;
    if (v("priority")) body.priority = Number(v("priority"));
    const maxIterations = numberOrRaw(v("max_iterations"));
    if (maxIterations !== undefined) body.max_iterations = maxIterations;
    const wall = numberOrRaw(v("max_wall_clock_seconds"));
    if (wall !== undefined) body.max_wall_clock_seconds = wall;
    return body;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    button.disabled = true;
    state.textContent = "Submitting…";
    try {
      const r = await api("POST", "/api/v1/work-orders", buildBody());
      if (r.ok) {
        state.textContent = "Submitted " + r.data.id + "; opening it…";
        location.assign("/work-orders/" + encodeURIComponent(r.data.id));
        return;
      }
      state.textContent = r.status === 422 ? "Please fix the marked fields." : "";
      const err = (r.data && r.data.error) || {};
      showErrors(r.status === 422 ? err.details : [], r.error);
    } finally {
      button.disabled = false;
    }
  });
})();
