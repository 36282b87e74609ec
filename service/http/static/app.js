// The catalog page: the public API only. The key is kept in this tab's session storage.
"use strict";
const KEY = "comfy-catalog-key";
const $ = (id) => document.getElementById(id);
let jobs = {};  // file -> job id of a queued or running download
let events = null;

function key() { return sessionStorage.getItem(KEY) || ""; }

async function api(method, path, payload) {
  const headers = { "X-API-Key": key() };
  if (payload !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: payload === undefined ? undefined : JSON.stringify(payload) });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
  return body;
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.appendChild(content); else td.textContent = content ?? "";
  row.appendChild(td);
  return td;
}

function button(label, action) {
  const b = document.createElement("button");
  b.textContent = label;
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { say(await action()); } catch (error) { say(error.message, true); } finally { b.disabled = false; refresh(); }
  });
  return b;
}

// What the page says for every status the map can send (service/map/status.py; a test checks
// that every status there has a label here).
const STATUS_LABELS = {
  present: "present",
  missing: "missing",
  queued: "queued",
  downloading: "downloading",
  unavailable: "unavailable (its folder is offline)",
};

function statusCell(entry) {
  const span = document.createElement("span");
  span.className = `status ${entry.status}`;
  span.dataset.status = entry.status;
  if (entry.status === "downloading") {
    const total = entry.dl_total || 0;
    const percent = total ? Math.floor((entry.dl_bytes / total) * 100) : 0;
    span.textContent = `downloading ${percent} % `;
    const bar = document.createElement("progress");
    bar.max = 100; bar.value = percent;
    span.appendChild(bar);
  } else {
    span.textContent = STATUS_LABELS[entry.status] || entry.status;
    if (entry.local_file) { span.textContent += ` as ${entry.local_file}`; span.title = "on disk under another name or folder"; }
    if (entry.hash_mismatch) { span.textContent += " (other bytes)"; span.title = "the file on disk is not the bytes the catalog's hash names"; }
    if (entry.partial_bytes) { span.textContent += ` (stopped at ${(entry.partial_bytes / 1e6).toFixed(1)} MB)`; span.title = "Download resumes it"; }
    if (entry.dl_error) { span.textContent += " (download failed)"; span.title = `${entry.dl_error.detail} (${entry.dl_error.code})`; }
  }
  return span;
}

async function refresh() {
  if (!key()) return;
  let map, downloads;
  try {
    [map, downloads] = await Promise.all([api("GET", "/api/admin/models/civitai-map"), api("GET", "/api/admin/downloads")]);
  } catch (error) { say(error.message, true); return; }
  jobs = {};
  for (const job of downloads.downloads) if (["queued", "downloading", "verifying"].includes(job.state)) jobs[job.file] = job.job;
  const rows = $("rows");
  rows.replaceChildren();
  for (const [version, entry] of Object.entries(map.by_version)) {
    const row = document.createElement("tr");
    row.dataset.version = version;
    cell(row, version); cell(row, entry.name); cell(row, entry.file); cell(row, entry.catalog ?? "on disk only");
    cell(row, statusCell(entry));
    const actions = cell(row, "");
    if (entry.status === "missing") {
      actions.appendChild(button("Download", async () => `${(await api("POST", `/api/admin/models/download/${encodeURIComponent(entry.file)}`)).status}: ${entry.file}`));
      actions.appendChild(button("Remove", async () => {
        const answer = await api("DELETE", `/api/admin/models/${encodeURIComponent(entry.file)}/catalog`);
        return `${answer.status} from ${answer.catalogs.map((name) => `${name}.json`).join(" and ")}: ${entry.file}`;
      }));
    }
    if (jobs[entry.file]) actions.appendChild(button("Cancel", async () => `${(await api("DELETE", `/api/admin/downloads/${jobs[entry.file]}`)).status}: ${entry.file}`));
    if (entry.catalog === "models" && entry.dest.split("/")[0] === "loras") {
      actions.appendChild(button("Promote", async () => `${(await api("POST", `/api/admin/civitai/promote-to-lora/${version}`)).status}: ${entry.file}`));
    }
    rows.appendChild(row);
  }
}

// The events stream, read with fetch so the key travels in a header (EventSource cannot send
// one, and a key in a URL ends up in proxy logs and history). Reconnects after a pause.
function listen() {
  if (events) events.abort();
  const controller = new AbortController();
  events = controller;
  streamEvents(controller.signal, (name) => { if (["change", "resync", "snapshot"].includes(name)) refresh(); })
    .catch(() => {})
    .finally(() => { if (events === controller && !controller.signal.aborted) setTimeout(listen, 3000); });
}

async function streamEvents(signal, onEvent) {
  const response = await fetch("/api/admin/models/civitai-map/events", { headers: { "X-API-Key": key(), Accept: "text/event-stream" }, signal, cache: "no-store" });
  if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const name = block.split(/\r?\n/).find((line) => line.startsWith("event:"));
      if (name) onEvent(name.slice(6).trim());
    }
  }
}

function start() {
  $("key-form").classList.add("hidden");
  $("app").classList.remove("hidden");
  refresh();
  listen();
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key").value.trim());
  const health = await fetch("/api/health", { headers: { "X-API-Key": key() } }).then((r) => r.json()).catch(() => null);
  if (!health || !health.authenticated) { sessionStorage.removeItem(KEY); say("That key is not right.", true); return; }
  start();
});

$("add-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const answer = await api("POST", "/api/admin/civitai/add", { ref: $("version").value.trim() });
    say(answer.status === "restricted" ? `restricted: ${answer.reason}` : `${answer.status}: ${answer.file}`);
    $("version").value = "";
  } catch (error) { say(error.message, true); }
  refresh();
});

$("forget").addEventListener("click", () => { sessionStorage.removeItem(KEY); if (events) events.abort(); location.reload(); });

if (key()) start();
