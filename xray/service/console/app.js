// The operator console: plain JavaScript against the inspection API, no build step.
"use strict";

const KEY_STORE = "xray.apiKey";
const REVIEWER_STORE = "xray.reviewer";
const STAGES = ["decode", "preprocess", "model", "postprocess", "verify"];

const $ = (sel) => document.querySelector(sel);
const state = { filter: "", cursor: null, current: null, overlayUrl: null };

function apiKey() { return localStorage.getItem(KEY_STORE) || ""; }

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function showBanner(message) {
  const b = $("#banner");
  b.textContent = message || "";
  b.classList.toggle("hidden", !message);
}

// fetch with the API key; throws an Error carrying the server's message on a non-2xx answer.
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (apiKey()) headers["X-API-Key"] = apiKey();
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401) {
    $("#key-form").classList.add("missing");
    showBanner("The service needs an API key: paste it in the top right and press Save.");
  }
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      if (typeof body.detail === "string") detail = body.detail;
      else if (Array.isArray(body.detail)) detail = body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
    } catch (_) { /* not JSON */ }
    const err = new Error(detail);
    err.status = res.status;
    throw err;
  }
  return res;
}

// ---- model status ----------------------------------------------------------------

async function loadStatus() {
  const box = $("#model-status");
  try {
    const res = await fetch("/readyz");
    const body = await res.json();
    box.classList.toggle("ready", res.ok);
    box.classList.toggle("down", !res.ok);
    $("#model-text").textContent = res.ok ? `model ${body.model_id} · ${body.model_version}` : "not ready";
  } catch (_) {
    box.classList.add("down");
    $("#model-text").textContent = "service unreachable";
  }
}

// ---- recent inspections ----------------------------------------------------------

function timeText(iso) {
  const d = new Date(iso);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

async function loadRecent(append = false) {
  const list = $("#recent");
  const params = new URLSearchParams({ limit: "25" });
  if (state.filter) params.set("channel", state.filter);
  if (append && state.cursor) params.set("cursor", state.cursor);
  let page;
  try {
    page = await (await api(`/v1/inspections?${params}`)).json();
  } catch (e) {
    if (!append) list.innerHTML = `<li class="empty-row">${esc(e.message)}</li>`;
    return;
  }
  $("#key-form").classList.remove("missing");
  showBanner("");
  if (!append) list.innerHTML = "";
  for (const item of page.items) {
    const li = document.createElement("li");
    li.dataset.id = item.inspection_id;
    if (state.current && state.current.inspection_id === item.inspection_id) li.classList.add("selected");
    const reviewed = item.review ? `<span class="tag">${esc(item.review.decision)}</span>` : "";
    li.innerHTML = `<span class="dot-ch ${esc(item.channel)}" title="${esc(item.channel)}"></span>
      <div><div class="line1">${esc(item.scan_id)} <span class="muted">${esc(item.container_id || "")}</span></div>
      <div class="line2">${timeText(item.created)} · ${esc(item.verdict)} · risk ${item.risk.toFixed(2)}</div></div>
      <div>${reviewed}</div>`;
    li.addEventListener("click", () => openInspection(item.inspection_id));
    list.appendChild(li);
  }
  if (!list.children.length) list.innerHTML = `<li class="empty-row">No inspections${state.filter ? " in this channel" : ""} yet.</li>`;
  state.cursor = page.next_cursor;
  $("#more").classList.toggle("hidden", !page.next_cursor);
}

// ---- one inspection ----------------------------------------------------------------

async function openInspection(id) {
  try {
    const insp = await (await api(`/v1/inspections/${encodeURIComponent(id)}`)).json();
    showInspection(insp);
    if (location.hash !== `#${id}`) history.replaceState(null, "", `#${id}`);
  } catch (e) {
    showBanner(`Cannot open inspection ${id}: ${e.message}`);
  }
}

function showInspection(insp) {
  state.current = insp;
  $("#empty").classList.add("hidden");
  $("#inspection").classList.remove("hidden");
  for (const li of document.querySelectorAll("#recent li")) li.classList.toggle("selected", li.dataset.id === insp.inspection_id);

  const badge = $("#channel-badge");
  badge.className = `badge ${insp.channel}`;
  badge.textContent = insp.channel.toUpperCase();
  $("#scan-id").textContent = insp.scan_id;
  $("#container-id").textContent = insp.container_id ? `· ${insp.container_id}` : "";
  $("#meta").innerHTML = `Inspection <code>${esc(insp.inspection_id)}</code><br>
    ${timeText(insp.created)} · from ${esc(insp.client)} · model ${esc(insp.model_id)} ${esc(insp.model_version)}`;
  $("#note").textContent = insp.note || "";
  $("#note").classList.toggle("hidden", !insp.note);
  $("#risk-value").textContent = insp.risk.toFixed(2);
  $("#risk-bar").style.width = `${Math.round(insp.risk * 100)}%`;
  $("#verdict-text").textContent = insp.verdict;

  loadOverlay(insp);
  renderGoods(insp);
  renderFindings(insp);
  renderTimings(insp);
  renderReview(insp);
}

async function loadOverlay(insp) {
  const img = $("#overlay");
  img.removeAttribute("src");
  try {
    // The overlay needs the key header, which an <img src> cannot send: fetch it as a blob.
    const blob = await (await api(insp.links.overlay)).blob();
    if (state.current !== insp) return;  // another inspection was opened meanwhile
    if (state.overlayUrl) URL.revokeObjectURL(state.overlayUrl);
    state.overlayUrl = URL.createObjectURL(blob);
    img.src = state.overlayUrl;
  } catch (e) {
    img.alt = `overlay unavailable: ${e.message}`;
  }
}

function renderGoods(insp) {
  const body = $("#goods-table tbody");
  if (!insp.goods.length) {
    body.innerHTML = `<tr><td colspan="4" class="muted">Declared empty; no goods scored.</td></tr>`;
    return;
  }
  body.innerHTML = insp.goods.map((g) => {
    const undeclared = g.seen && !g.declared;
    return `<tr>
      <td>${esc(g.name)}</td>
      <td class="${g.declared ? "yes" : "no"}">${g.declared ? "yes" : "no"}</td>
      <td class="${undeclared ? "flag" : g.seen ? "yes" : "no"}">${g.seen ? "yes" : "no"}</td>
      <td class="num" title="best box score ${g.best_score.toFixed(2)}">${g.evidence.toFixed(2)}</td></tr>`;
  }).join("");
}

function renderFindings(insp) {
  const list = $("#findings");
  if (!insp.findings.length) {
    list.innerHTML = `<li class="muted">No findings: what was seen agrees with the manifest.</li>`;
    return;
  }
  list.innerHTML = insp.findings.map((f) => `<li>
    <span class="kind ${esc(f.kind)}">${esc(f.kind.replaceAll("_", " "))}</span>
    <span>${esc(f.detail || f.category || "")}</span>
    <span class="conf">${f.confidence.toFixed(2)}</span></li>`).join("");
}

function renderTimings(insp) {
  const t = insp.timings_ms || {};
  const stages = STAGES.filter((s) => s in t);
  const max = Math.max(1e-6, ...stages.map((s) => t[s]));
  const row = (name, ms, cls = "") => `<div class="row ${cls}"><span>${name}</span>
    <div class="bar"><div style="width:${Math.round((100 * ms) / max)}%"></div></div>
    <span class="ms">${ms.toFixed(1)} ms</span></div>`;
  let html = stages.map((s) => row(s, t[s])).join("");
  if ("total" in t) html += `<div class="row total"><span>total</span><span></span><span class="ms">${t.total.toFixed(1)} ms</span></div>`;
  $("#timings").innerHTML = html || `<span class="muted">No timings recorded.</span>`;
}

function renderReview(insp) {
  const status = $("#review-status");
  const r = insp.review;
  status.innerHTML = r
    ? `<span class="ok">Reviewed</span> — ${esc(r.decision)} → <b>${esc(r.channel)}</b> by ${esc(r.reviewer)}, ${timeText(r.created)}${r.note ? `<br><span class="muted">“${esc(r.note)}”</span>` : ""}`
    : `<span class="muted">Not reviewed yet. The model says <b>${esc(insp.channel)}</b>.</span>`;
  $("#review-confirm").textContent = `Confirm ${insp.channel}`;
  $("#review-confirm").title = `Agree with the model: ${insp.channel}`;
  $("#review-history").innerHTML = insp.reviews.length > 1
    ? insp.reviews.slice(0, -1).reverse().map((x) => `<li>earlier: ${esc(x.decision)} → ${esc(x.channel)} by ${esc(x.reviewer)}, ${timeText(x.created)}</li>`).join("")
    : "";
  $("#review-error").classList.add("hidden");
}

async function submitReview(decision, channel) {
  const insp = state.current;
  if (!insp) return;
  const reviewer = $("#reviewer").value.trim();
  const err = $("#review-error");
  if (!reviewer) {
    err.textContent = "Enter your officer name or id first.";
    err.classList.remove("hidden");
    $("#reviewer").focus();
    return;
  }
  localStorage.setItem(REVIEWER_STORE, reviewer);
  const body = { decision, reviewer, note: $("#review-note").value };
  if (decision === "override") body.channel = channel;
  const buttons = document.querySelectorAll(".review-actions .btn");
  buttons.forEach((b) => (b.disabled = true));
  try {
    const updated = await (await api(insp.links.review, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    })).json();
    $("#review-note").value = "";
    showInspection(updated);
    loadRecent();
  } catch (e) {
    err.textContent = e.message;
    err.classList.remove("hidden");
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

// ---- upload -------------------------------------------------------------------------

async function submitUpload(event) {
  event.preventDefault();
  const err = $("#upload-error");
  err.classList.add("hidden");
  const mode = document.querySelector("input[name=mode]:checked").value;
  const form = new FormData();
  const file = (sel) => $(sel).files[0];
  if (mode === "single") {
    if (!file("#scan-file")) return fail("Choose a scan file.");
    form.append("scan", file("#scan-file"));
  } else {
    if (!file("#high-file") || !file("#low-file")) return fail("Choose both the high- and the low-energy image.");
    form.append("high", file("#high-file"));
    form.append("low", file("#low-file"));
  }
  const pasted = $("#manifest-text").value.trim();
  if (file("#manifest-file")) form.append("manifest", file("#manifest-file"));
  else if (pasted) form.append("manifest", pasted);
  else return fail("Add the manifest: a JSON file, or paste it.");

  const button = $("#inspect");
  button.disabled = true;
  button.textContent = "Inspecting…";
  try {
    const insp = await (await api("/v1/inspections", { method: "POST", body: form })).json();
    showInspection(insp);
    history.replaceState(null, "", `#${insp.inspection_id}`);
    loadRecent();
  } catch (e) {
    fail(e.status === 503 ? `The service is busy: ${e.message}` : e.message);
  } finally {
    button.disabled = false;
    button.textContent = "Inspect";
  }

  function fail(message) {
    err.textContent = message;
    err.classList.remove("hidden");
  }
}

// ---- wiring -----------------------------------------------------------------------------

function init() {
  $("#api-key").value = apiKey();
  $("#reviewer").value = localStorage.getItem(REVIEWER_STORE) || "";
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem(KEY_STORE, $("#api-key").value.trim());
    $("#key-form").classList.remove("missing");
    showBanner("");
    loadRecent();
    if (state.current) openInspection(state.current.inspection_id);
  });
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => {
      const dual = document.querySelector("input[name=mode]:checked").value === "dual";
      $(".mode-single").classList.toggle("hidden", dual);
      $(".mode-dual").classList.toggle("hidden", !dual);
    });
  }
  $("#upload-form").addEventListener("submit", submitUpload);
  for (const chip of document.querySelectorAll("#filters .chip")) {
    chip.addEventListener("click", () => {
      document.querySelectorAll("#filters .chip").forEach((c) => c.classList.toggle("active", c === chip));
      state.filter = chip.dataset.filter;
      loadRecent();
    });
  }
  $("#more").addEventListener("click", () => loadRecent(true));
  $("#refresh").addEventListener("click", () => loadRecent());
  $("#review-confirm").addEventListener("click", () => submitReview("confirm"));
  for (const b of document.querySelectorAll(".btn.override")) {
    b.addEventListener("click", () => submitReview("override", b.dataset.channel));
  }
  loadStatus();
  loadRecent();
  if (location.hash.length > 1) openInspection(location.hash.slice(1));
}

document.addEventListener("DOMContentLoaded", init);
