/* Shared helpers: API calls with the optional API key, DOM building, formatting. No dependencies. */
"use strict";
const AG = (() => {
  const KEY = "agentgate.apiKey";

  function apiKey() {
    try { return localStorage.getItem(KEY) || ""; } catch (e) { return ""; }
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const key = apiKey();
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  async function api(method, path, body) {
    const opts = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
    if (body !== undefined) opts.body = JSON.stringify(body);
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      return { ok: false, status: 0, data: null, error: "the API is not reachable (" + e.message + ")" };
    }
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    const error = res.ok ? null : ((data && data.error && data.error.message) || ("HTTP " + res.status));
    return { ok: res.ok, status: res.status, data, error };
  }

  async function text(path) {
    const res = await fetch(path, { headers: headers() });
    if (!res.ok) throw new Error("HTTP " + res.status);
    return res.text();
  }

  /* el("a", {href: "/", class: "x"}, "text", child) — attributes and children, text always escaped. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function badge(value, extra) {
    return el("span", { class: "badge " + (value || "") + (extra ? " " + extra : "") }, value || "—");
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "—";
    if (ms < 1000) return Math.round(ms) + " ms";
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + Math.round(s - m * 60) + "s";
    return Math.floor(m / 60) + "h " + (m % 60) + "m";
  }

  function since(iso, until) {
    if (!iso) return null;
    const end = until ? Date.parse(until) : Date.now();
    return Math.max(0, end - Date.parse(iso));
  }

  function fmtAge(iso) {
    const ms = since(iso);
    if (ms === null) return "—";
    const s = Math.floor(ms / 1000);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d";
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { hour12: false });
  }

  function fmtCost(usd) {
    if (usd === null || usd === undefined) return "—";
    return "$" + Number(usd).toFixed(usd < 1 ? 4 : 2);
  }

  function tokenTotal(t) {
    if (!t) return 0;
    return (t.input || 0) + (t.output || 0) + (t.cache_creation || 0) + (t.cache_read || 0);
  }

  function fmtTokens(t) {
    if (!t) return "—";
    return tokenTotal(t).toLocaleString() + " (in " + (t.input || 0).toLocaleString() + ", out " +
      (t.output || 0).toLocaleString() + ", cache " + ((t.cache_creation || 0) + (t.cache_read || 0)).toLocaleString() + ")";
  }

  const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

  function initChrome() {
    const page = document.body.dataset.page;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === page) a.setAttribute("aria-current", "page");
    }
    const form = document.getElementById("api-key-form");
    const input = document.getElementById("api-key");
    const state = document.getElementById("api-key-state");
    input.value = apiKey();
    state.textContent = apiKey() ? "set" : "";
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      try {
        if (input.value.trim()) localStorage.setItem(KEY, input.value.trim());
        else localStorage.removeItem(KEY);
      } catch (e) { /* private mode: the key lasts for this page only */ }
      state.textContent = input.value.trim() ? "saved" : "cleared";
    });
  }

  document.addEventListener("DOMContentLoaded", initChrome);

  return { api, text, headers, el, badge, fmtMs, fmtAge, fmtTime, fmtCost, fmtTokens, tokenTotal, since, TERMINAL };
})();
