// The catalog page: the public API only. The key is kept in this tab's session storage and
// travels in a header, never in a URL. The map is read once; change events then update only
// the rows they name, and the list renders only the rows in view, so 100,000 entries stay fast.
"use strict";
const KEY = "comfy-catalog-key";
const MAP = "/api/admin/models/civitai-map";
const $ = (id) => document.getElementById(id);
const POINT_IDS = 500;  // the map's ?versions= takes this many at most
const THUMBS_AT_ONCE = 4;

// What the page says for every status the map can send (service/map/status.py; a test checks
// that every status there has a label here).
const STATUS_LABELS = {
  present: "present",
  missing: "missing",
  queued: "queued",
  downloading: "downloading",
  unavailable: "unavailable (its folder is offline)",
};

const state = {
  rows: new Map(),       // version id -> row (the map entry, plus what the page works out)
  sorted: null,          // version ids in the current sort order (null: sort again)
  shown: [],             // the ids that pass the filters, in order
  selected: new Set(),
  jobs: new Map(),       // file -> download job (queued, downloading or verifying)
  updates: new Map(),    // model id -> the newest version CivitAI has that no catalog lists
  thumbs: new Map(),     // version id -> object URL of its thumbnail ("" while loading or none)
  thumbQueue: [],
  thumbsLoading: 0,
  online: true,
  events: null,
  pendingHeads: new Set(),
  headTimer: null,
  jobsTimer: null,
};

function key() { return sessionStorage.getItem(KEY) || ""; }

async function api(method, path, payload) {
  const headers = { "X-API-Key": key() };
  if (payload !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload === undefined ? undefined : JSON.stringify(payload) });
  } catch (error) {
    goneOffline();
    throw new Error("The service cannot be reached; the page reconnects by itself.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
  return body;
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "message error" : "message";
  fitList();
}

async function act(work) {
  try { say(await work()); } catch (error) { say(error.message, true); }
}

// ---- the rows -------------------------------------------------------------------------------

function remember(id, row) {  // the entry as parsed from the map, kept as it is (no copy)
  row.id = Number(id);
  const slash = row.dest.indexOf("/");
  row.folder = slash < 0 ? row.dest : row.dest.slice(0, slash);
  row.sortName = (row.name || row.file).toLowerCase();
  row.hay = null;  // what search looks in: made after the first paint, or when first needed
  state.rows.set(row.id, row);
  return row;
}

function hayOf(row) {
  if (row.hay === null) row.hay = `${row.name} ${row.file} ${row.id} ${row.civitai_model_id ?? ""} ${row.base_model ?? ""} ${row.dest}`.toLowerCase();
  return row.hay;
}

function takeMap(map) {
  state.lastFilters = null;
  state.rows.clear();
  const entries = map.by_version;
  for (const id in entries) remember(id, entries[id]);
  state.sorted = null;
  for (const [id] of state.thumbs) dropThumb(id);
  fillChoices();
  updateBulk();
  applyView();
  setTimeout(prepareSearch, 0);
}

function prepareSearch() {  // in slices, so the page stays responsive meanwhile
  const rows = [...state.rows.values()];
  let at = 0;
  const slice = () => {
    const end = Math.min(rows.length, at + 20000);
    for (; at < end; at++) hayOf(rows[at]);
    if (at < rows.length) setTimeout(slice, 0);
  };
  slice();
}

async function loadMap() {
  const map = await api("GET", MAP);
  setOnline(true);
  takeMap(map);
}

function fillChoices() {
  const folders = new Set(), bases = new Set();
  for (const row of state.rows.values()) { folders.add(row.folder); bases.add(row.base_model); }
  bases.delete(null); bases.delete(undefined);
  for (const [id, values] of [["f-folder", folders], ["f-base", bases]]) {
    const select = $(id), current = select.value;
    const options = [new Option("all", "")];
    for (const value of [...values].sort()) options.push(new Option(value.length > 40 ? `${value.slice(0, 39)}…` : value, value));
    select.replaceChildren(...options);
    select.value = values.has(current) ? current : "";
  }
}

// ---- the view: filters, search and sort, kept in the URL's fragment ----------------------------

const VIEW_FIELDS = { q: "search", status: "f-status", catalog: "f-catalog", folder: "f-folder", base: "f-base", sort: "sort" };

function viewFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const [name, id] of Object.entries(VIEW_FIELDS)) {
    const value = params.get(name) ?? (name === "sort" ? "name" : "");
    if ($(id).tagName === "SELECT" && ![...$(id).options].some((o) => o.value === value)) $(id).appendChild(new Option(value, value));
    $(id).value = value;
  }
}

function viewToFragment() {
  const params = new URLSearchParams();
  for (const [name, id] of Object.entries(VIEW_FIELDS)) if ($(id).value && !(name === "sort" && $(id).value === "name")) params.set(name, $(id).value);
  const hash = params.toString();
  history.replaceState(null, "", hash ? `#${hash}` : location.pathname);
}

const SORTS = {
  name: (a, b) => (a.sortName < b.sortName ? -1 : a.sortName > b.sortName ? 1 : a.id - b.id),
  newest: (a, b) => b.id - a.id,
  status: (a, b) => (a.status < b.status ? -1 : a.status > b.status ? 1 : SORTS.name(a, b)),
  file: (a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.id - b.id),
  size: (a, b) => (b.size_gb ?? -1) - (a.size_gb ?? -1) || a.id - b.id,
};

function sortedIds(by) {
  return [...state.rows.values()].sort(SORTS[by]).map((row) => row.id);
}

function passes(row, filters) {
  if (filters.q && !hayOf(row).includes(filters.q)) return false;
  if (filters.catalog && (row.catalog ?? "none") !== filters.catalog) return false;
  if (filters.folder && row.folder !== filters.folder) return false;
  if (filters.base && row.base_model !== filters.base) return false;
  switch (filters.status) {
    case "": return true;
    case "active": return row.status === "downloading" || row.status === "queued";
    case "failed": return Boolean(row.dl_error);
    case "stopped": return Boolean(row.partial_bytes);
    case "disk": return row.catalog === null;
    case "update": return row.civitai_model_id != null && state.updates.has(row.civitai_model_id);
    default: return row.status === filters.status;
  }
}

function narrower(filters, last) {
  return Boolean(last) && filters.q.length > last.q.length && filters.q.startsWith(last.q) && last.q !== "" &&
    filters.status === last.status && filters.catalog === last.catalog && filters.folder === last.folder && filters.base === last.base;
}

function applyView() {
  const filters = {
    q: $("search").value.trim().toLowerCase(), status: $("f-status").value, catalog: $("f-catalog").value,
    folder: $("f-folder").value, base: $("f-base").value,
  };
  let within = state.sorted;
  if (state.sorted === null || state.sortedBy !== $("sort").value) {
    state.sortedBy = $("sort").value;
    within = state.sorted = sortedIds(state.sortedBy);
  } else if (narrower(filters, state.lastFilters)) {
    within = state.shown;  // typing on: only what matched the shorter search can match the longer one
  }
  const shown = [], rows = state.rows;
  for (const id of within) {
    const row = rows.get(id);
    if (row && passes(row, filters)) shown.push(id);
  }
  state.shown = shown;
  state.shownSet = null;  // made when first needed (readHeads)
  state.lastShown = filters;
  state.lastFilters = filters;
  $("count").textContent = `${shown.length.toLocaleString()} of ${state.rows.size.toLocaleString()} versions`;
  $("empty").classList.toggle("hidden", shown.length > 0 || state.rows.size === 0);
  $("spacer").style.height = `${shown.length * rowHeight()}px`;
  render();
  clearTimeout(state.announceTimer);
  state.announceTimer = setTimeout(() => { $("announce").textContent = $("count").textContent; }, 800);
}

// ---- rendering only what is in view ---------------------------------------------------------

// The list fills the window below what is above it, so the page itself never scrolls.
function fitList() {
  const list = $("list");
  const height = Math.max(288, window.innerHeight - list.getBoundingClientRect().top - window.scrollY - 4);
  list.style.height = `${height}px`;
}

let cachedRowHeight = 0;
function rowHeight() {
  if (!cachedRowHeight) cachedRowHeight = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--row")) || 64;
  return cachedRowHeight;
}

const rendered = new Map();  // version id -> its element
// Rows in view are kept from one render to the next (their content is kept current by
// `redraw`), so a focused button survives filtering and scrolling; each is placed by its index.
function render() {
  const list = $("list"), height = rowHeight();
  const first = Math.max(0, Math.floor(list.scrollTop / height) - 5);
  const last = Math.min(state.shown.length, Math.ceil((list.scrollTop + list.clientHeight) / height) + 5);
  const wanted = new Map();
  for (let index = first; index < last; index++) wanted.set(state.shown[index], index);
  for (const [id, element] of rendered) {
    if (!wanted.has(id)) { element.remove(); rendered.delete(id); }
  }
  for (const [id, index] of wanted) {
    let element = rendered.get(id);
    if (!element) { element = rowElement(state.rows.get(id)); rendered.set(id, element); $("spacer").appendChild(element); }
    place(element, index);
  }
  pumpThumbs();
}

function place(element, index) {
  element.dataset.index = index;
  element.style.top = `${index * rowHeight()}px`;
}

function redraw(id) {
  const element = rendered.get(id);
  if (!element) return;
  const fresh = rowElement(state.rows.get(id));
  place(fresh, Number(element.dataset.index));
  const focused = element.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  element.replaceWith(fresh);
  rendered.set(id, fresh);
  if (focused) (fresh.querySelector(`[data-action="${focused}"]`) || fresh.querySelector(".actions button") || fresh.querySelector("[data-action=select]"))?.focus();
  pumpThumbs();
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function rowElement(row) {
  const element = el("div", "row");
  element.setAttribute("role", "listitem");
  element.dataset.versionId = row.id;
  element.dataset.version = row.id;
  if (state.selected.has(row.id)) element.classList.add("selected");
  const check = el("input");
  check.type = "checkbox";
  check.checked = state.selected.has(row.id);
  check.dataset.action = "select";
  check.setAttribute("aria-label", `Select ${row.name}`);
  check.addEventListener("change", () => { toggleSelected(row.id, check.checked); element.classList.toggle("selected", check.checked); });
  let thumb;
  if (row.preview) {
    thumb = el("img", "thumb");
    thumb.alt = "";
    thumb.width = thumb.height = 48;
    const url = state.thumbs.get(row.id);
    if (url) thumb.src = url; else if (url === undefined) wantThumb(row.id);
  } else {
    thumb = el("div", "thumb none", (row.name || row.file).trim().charAt(0));
    thumb.setAttribute("aria-hidden", "true");
  }
  const names = el("div", "names");
  names.append(el("div", "name", visible(row.name)), el("div", "where", visible(`${row.dest}/${row.file}`)));
  const update = row.civitai_model_id != null ? state.updates.get(row.civitai_model_id) : undefined;
  if (update) {
    const line = el("div", "update", `update: ${update.name ?? update.id} `);
    line.appendChild(actionButton("Add newer", "add-newer", async () => added(await api("POST", `/api/admin/civitai/add/${update.id}`)), row));
    names.append(line);
  }
  const facts = [row.catalog ? `${row.catalog}.json` : "on disk only", row.size_gb ? `${row.size_gb.toFixed(2)} GB` : null, `v${row.id}`];
  const meta = el("div", "meta");
  meta.append(el("div", "", row.base_model || "base model unknown"), el("div", "", facts.filter(Boolean).join(" · ")));
  if (row.trigger_words?.length) meta.appendChild(copyWordsButton(row, "copy trigger words", "copy-words"));
  element.append(check, thumb, names, meta, statusElement(row), actionsElement(row, update));
  return element;
}

// Characters that reorder text (bidi overrides and isolates) would let a name pose as another
// ("evil\u202Egnp.safetensors" reads as "evilsrotnetefas.png"): they are shown, not obeyed.
const BIDI = /[\u202A-\u202E\u2066-\u2069\u200E\u200F]/g;
function visible(text) {
  return String(text ?? "").replace(BIDI, (char) => `⟨U+${char.charCodeAt(0).toString(16).toUpperCase()}⟩`);
}

function megabytes(bytes) { return `${(bytes / 1e6).toFixed(1)} MB`; }

function statusElement(row) {
  const status = el("div", "status");
  status.dataset.status = row.status;
  if (row.status === "downloading") {
    const total = row.dl_total || 0;
    const percent = total ? Math.floor((row.dl_bytes / total) * 100) : 0;
    status.textContent = `downloading ${percent} % `;
    const bar = el("progress");
    bar.max = 100; bar.value = percent;
    bar.setAttribute("aria-label", `${row.name}: ${percent} %`);
    status.appendChild(bar);
    const job = state.jobs.get(row.file);
    if (job && job.speed) {
      const left = total ? Math.max(0, total - row.dl_bytes) / job.speed : null;
      status.appendChild(el("span", "detail", `${megabytes(job.speed)}/s${left === null ? "" : `, ${duration(left)} left`}`));
    }
    return status;
  }
  status.textContent = STATUS_LABELS[row.status] || row.status;
  if (row.local_file) status.appendChild(el("span", "detail", `as ${row.local_file}`));
  if (row.hash_mismatch) status.appendChild(el("span", "why", "the file on disk is other bytes than the catalog's hash"));
  if (row.partial_bytes) status.appendChild(el("span", "detail", `stopped at ${megabytes(row.partial_bytes)}; Resume continues it`));
  if (row.dl_error) status.appendChild(el("span", "why", `download failed: ${row.dl_error.detail}`));
  if (row.catalog === null) status.appendChild(el("span", "detail", `on disk only (identified by ${row.identified_by || "hash"})`));
  return status;
}

function duration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function actionButton(label, action, work, row) {
  const button = el("button", "", label);
  button.type = "button";
  button.dataset.action = action;
  button.setAttribute("aria-label", `${label}: ${row.name}`);
  button.addEventListener("click", async () => { button.disabled = true; await act(work); button.disabled = false; });
  return button;
}

function actionsElement(row, update) {
  const actions = el("div", "actions");
  const file = encodeURIComponent(row.file);
  if (row.catalog && row.status === "missing") {
    actions.appendChild(actionButton(row.partial_bytes ? "Resume" : "Download", "download", async () => {
      const answer = await api("POST", `/api/admin/models/download/${file}`);
      refreshJobsSoon();
      return `${answer.status}: ${row.file}`;
    }, row));
  }
  const job = state.jobs.get(row.file);
  if (job && (row.status === "downloading" || row.status === "queued")) {
    actions.appendChild(actionButton("Cancel", "cancel", async () => `${(await api("DELETE", `/api/admin/downloads/${job.job}`)).status}: ${row.file}`, row));
  }
  if (row.catalog === "models" && row.folder === "loras") {
    actions.appendChild(actionButton("Promote", "promote", async () => `${(await api("POST", `/api/admin/civitai/promote-to-lora/${row.id}`)).status}: ${row.file}`, row));
  }
  if (row.catalog && row.status !== "present") {
    actions.appendChild(actionButton("Remove", "remove", async () => removeFile(row.file), row));
  }
  if (row.trigger_words?.length) {  // on a phone, where the row's details are folded away
    const copy = copyWordsButton(row, "Copy words", "copy-words-phone");
    copy.classList.add("phone-only");
    actions.appendChild(copy);
  }
  return actions;
}

function copyWordsButton(row, label, action) {
  return actionButton(label, action, async () => {
    await copyText(row.trigger_words.join(", "));
    return `copied: ${row.trigger_words.join(", ")}`;
  }, row);
}

async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(text); return; }
  } catch (error) { /* refused (no permission, no focus): copied the old way below */ }
  const area = el("textarea");  // a page served over plain http on the network has no clipboard API
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.appendChild(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error(`copy these by hand: ${text}`);
}

async function removeFile(file) {
  const answer = await api("DELETE", `/api/admin/models/${encodeURIComponent(file)}/catalog`);
  return `${answer.status} from ${answer.catalogs.map((name) => `${name}.json`).join(" and ")}: ${file}`;
}

function added(answer) {
  return answer.status === "restricted" ? `restricted: ${answer.reason}` : `${answer.status}: ${answer.file}`;
}

// ---- thumbnails: fetched with the key, a few at a time, only for rows in view --------------------

const THUMBS_KEPT = 400;  // object URLs held at most; the least recently shown are let go

function wantThumb(id) {
  state.thumbs.set(id, "");
  state.thumbQueue.push(id);  // fetched once its row is in the page (`render` pumps the queue)
}

function keepThumb(id, url) {
  state.thumbs.delete(id);
  state.thumbs.set(id, url);
  for (const [old, oldUrl] of state.thumbs) {
    if (state.thumbs.size <= THUMBS_KEPT) break;
    if (rendered.has(old)) continue;
    if (oldUrl) URL.revokeObjectURL(oldUrl);
    state.thumbs.delete(old);
  }
}

function dropThumb(id) {
  const url = state.thumbs.get(id);
  if (url) URL.revokeObjectURL(url);
  state.thumbs.delete(id);
}

function pumpThumbs() {
  while (state.thumbsLoading < THUMBS_AT_ONCE && state.thumbQueue.length) {
    const id = state.thumbQueue.shift();
    if (!rendered.has(id)) { state.thumbs.delete(id); continue; }  // scrolled away: asked again when seen
    const row = state.rows.get(id);
    if (!row || !row.preview) continue;
    state.thumbsLoading++;
    fetch(row.preview, { headers: { "X-API-Key": key() } })
      .then((response) => (response.ok ? response.blob() : null))
      .then((blob) => {
        if (!blob) return;
        keepThumb(id, URL.createObjectURL(blob));
        const image = rendered.get(id)?.querySelector(".thumb");
        if (image) image.src = state.thumbs.get(id);
      })
      .catch(() => state.thumbs.delete(id))
      .finally(() => { state.thumbsLoading--; pumpThumbs(); });
  }
}

// ---- live updates ---------------------------------------------------------------------------

function onChange(data) {
  state.lastFilters = null;  // rows changed: the next search looks at them all again
  const changes = data.changes || {}, details = data.details;
  const ids = Object.keys(changes);
  if (details === undefined && ids.length > POINT_IDS) { loadMap().catch(() => {}); return; }
  let reorder = false, gone = false;
  for (const id of ids) {
    const number = Number(id), status = changes[id], row = state.rows.get(number);
    if (status === null) {
      if (row) { state.rows.delete(number); state.selected.delete(number); dropThumb(number); gone = true; }
      continue;
    }
    if (!row) { state.pendingHeads.add(number); continue; }
    const before = row.status;
    for (const field of ["dl_bytes", "dl_total", "partial_bytes", "dl_error", "local_file", "hash_mismatch", "preview"]) delete row[field];
    const hadPreview = row.preview;
    Object.assign(row, details?.[id] || {}, { status });
    if (hadPreview !== row.preview) dropThumb(number);
    if (before !== status) reorder = true;
    state.pendingHeads.add(number);  // its name or file may have changed too: read again, a few at a time
    if (status === "downloading" || status === "queued" || before === "downloading" || before === "queued") refreshJobsSoon();
    redraw(number);
  }
  // A status that moved changes the list only when the view filters or sorts by status.
  if (reorder && state.sortedBy === "status") state.sorted = null;
  if (gone) updateBulk();
  if (gone || (reorder && ($("f-status").value || state.sortedBy === "status"))) applyView();
  if (state.pendingHeads.size && !state.headTimer) state.headTimer = setTimeout(readHeads, 150);
}

async function readHeads() {
  state.headTimer = null;
  const ids = [...state.pendingHeads].slice(0, POINT_IDS);
  ids.forEach((id) => state.pendingHeads.delete(id));
  if (!ids.length) return;
  try {
    const map = await api("GET", `${MAP}?versions=${ids.join(",")}`);
    let moved = false;
    for (const id of ids) {
      const entry = map.by_version[id];
      if (!entry) continue;
      const old = state.rows.get(id);
      const row = remember(id, entry);
      state.shownSet ??= new Set(state.shown);
      if (old && state.lastShown && passes(row, state.lastShown) !== state.shownSet.has(id)) moved = true;  // in or out of the view now
      if (!old || SORTS[state.sortedBy](old, row) !== 0) {  // new, or sorts elsewhere now
        if (state.sorted) {
          const at = old ? state.sorted.indexOf(id) : -1;
          if (at >= 0) state.sorted.splice(at, 1);
          insertSorted(id);
        }
        moved = true;
      }
      redraw(id);
    }
    state.lastFilters = null;  // rows changed: the next search looks at them all again
    if (moved) { fillChoices(); applyView(); }
  } catch (error) { /* offline: the reconnect reloads the map */ }
  if (state.pendingHeads.size) state.headTimer = setTimeout(readHeads, 150);
}

function insertSorted(id) {
  const row = state.rows.get(id), order = SORTS[state.sortedBy], sorted = state.sorted;
  let low = 0, high = sorted.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    const other = state.rows.get(sorted[middle]);
    if (other && order(other, row) < 0) low = middle + 1; else high = middle;
  }
  sorted.splice(low, 0, id);
}

function refreshJobsSoon() {
  if (!state.jobsTimer) state.jobsTimer = setTimeout(refreshJobs, 300);
}

async function refreshJobs() {
  state.jobsTimer = null;
  try {
    const { downloads } = await api("GET", "/api/admin/downloads");
    const before = new Set(state.jobs.keys());
    state.jobs.clear();
    for (const job of downloads) if (["queued", "downloading", "verifying"].includes(job.state)) state.jobs.set(job.file, job);
    for (const row of state.rows.values()) if (state.jobs.has(row.file) || before.has(row.file)) redraw(row.id);
    if (state.jobs.size) refreshJobsSoon();
  } catch (error) { /* offline */ }
}

async function refreshUpdates() {
  try {
    const answer = await api("GET", "/api/admin/models/updates");
    state.updates.clear();
    for (const model of answer.models) if (model.newer.length) state.updates.set(model.model_id, model.newer[0]);
    for (const id of rendered.keys()) redraw(id);
  } catch (error) { /* offline */ }
}

// The events stream, read with fetch so the key travels in a header (EventSource cannot send
// one, and a key in a URL ends up in proxy logs and history). Reconnects after a pause.
function listen() {
  if (state.events) state.events.abort();
  const controller = new AbortController();
  state.events = controller;
  streamEvents(controller.signal)
    .catch(() => {})
    .finally(() => { if (state.events === controller && !controller.signal.aborted) { goneOffline(); setTimeout(listen, 3000); } });
}

async function streamEvents(signal) {
  const response = await fetch(`${MAP}/events`, { headers: { "X-API-Key": key(), Accept: "text/event-stream" }, signal, cache: "no-store" });
  if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const lines = buffer.slice(0, end).split(/\r?\n/);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const name = lines.find((line) => line.startsWith("event:"))?.slice(6).trim();
      const data = lines.filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart()).join("\n");
      if (name) onEvent(name, data);
    }
  }
}

function onEvent(name, data) {
  if (name === "snapshot") {
    setOnline(true);
    if (state.streamed) loadMap().catch(() => {});  // a stream again: what changed meanwhile was never sent
    state.streamed = true;
  } else if (name === "resync") {
    loadMap().catch(() => {});
  } else if (name === "change") {
    onChange(JSON.parse(data));
  } else if (name === "updates") {
    refreshUpdates();
  }
}

function goneOffline() {
  if (!state.online) return;
  state.online = false;
  $("offline").classList.remove("hidden");
}

function setOnline(online) {
  if (online && !state.online) say("");
  state.online = online;
  $("offline").classList.toggle("hidden", online);
}

// ---- progress of the service: the first scan and hashing ---------------------------------------

async function showProgress() {
  try {
    const response = await fetch("/ready", { cache: "no-store" });
    const ready = await response.json();
    setOnline(true);
    const parts = [];
    if (ready.index && ready.index.state !== "ready") parts.push("Looking at the model folders…");
    const hashing = ready.hashing;
    if (hashing && hashing.state === "hashing") {
      const left = hashing.seconds_left == null ? "" : `, about ${duration(hashing.seconds_left)} left`;
      parts.push(`Identifying files on disk: ${hashing.files_to_hash} to hash${hashing.rate_mb_s ? ` at ${hashing.rate_mb_s} MB/s` : ""}${left}`);
    } else if (hashing && hashing.state === "identifying") {
      parts.push(`Asking CivitAI about ${hashing.waiting_for_lookup} files`);
    }
    $("progress").textContent = parts.join(" · ");
  } catch (error) { goneOffline(); }
}

// ---- selection and bulk actions -------------------------------------------------------------

function toggleSelected(id, on) {
  if (on) state.selected.add(id); else state.selected.delete(id);
  updateBulk();
}

function updateBulk() {
  for (const id of state.selected) if (!state.rows.has(id)) state.selected.delete(id);
  $("bulk").classList.toggle("hidden", state.selected.size === 0);
  $("bulk-count").textContent = `${state.selected.size} selected`;
  fitList();
}

async function bulk(kind) {
  const rows = [...state.selected].map((id) => state.rows.get(id)).filter(Boolean);
  let done = 0, failed = 0;
  for (const row of rows) {
    try {
      if (kind === "download" && row.catalog && row.status === "missing") { await api("POST", `/api/admin/models/download/${encodeURIComponent(row.file)}`); done++; }
      if (kind === "remove" && row.catalog) { await api("DELETE", `/api/admin/models/${encodeURIComponent(row.file)}/catalog`); done++; }
    } catch (error) { failed++; }
  }
  if (kind === "download") refreshJobsSoon();
  say(`${kind === "download" ? "downloads started" : "removed"}: ${done}${failed ? `, ${failed} refused (see each row)` : ""}`, failed > 0);
}

// ---- import and duplicates ------------------------------------------------------------------

function table(headings, rows) {
  const node = el("table");
  const head = el("tr");
  for (const heading of headings) head.appendChild(el("th", "", heading));
  node.appendChild(head);
  for (const cells of rows) {
    const tr = el("tr");
    for (const cell of cells) tr.appendChild(el("td", "", String(cell ?? "")));
    node.appendChild(tr);
  }
  return node;
}

async function openImport() {
  const dialog = $("import-dialog"), body = $("import-body");
  body.replaceChildren(el("p", "", "Looking at what would be imported…"));
  dialog.showModal();
  try {
    const answer = await api("POST", "/api/admin/library/import?dry_run=true");
    body.replaceChildren(
      el("h3", "", `Would add ${answer.added.length}`),
      table(["file", "folder", "name"], answer.added.map((item) => [item.file, item.dest, item.name])),
      el("h3", "", `Would skip ${answer.skipped.length}`),
      table(["file", "folder", "why"], answer.skipped.map((item) => [item.file, item.dest, item.reason])),
      el("h3", "", `Not identified: ${answer.not_identified_count}`),
      table(["file", "folder", "why"], answer.not_identified_files.map((item) => [item.file, item.dest, item.why.replaceAll("_", " ")])),
    );
    $("import-confirm").disabled = answer.added.length === 0;
  } catch (error) {
    body.replaceChildren(el("p", "message error", error.message));
    $("import-confirm").disabled = true;
  }
}

async function confirmImport() {
  $("import-confirm").disabled = true;
  await act(async () => {
    const answer = await api("POST", "/api/admin/library/import");
    $("import-dialog").close();
    return `imported ${answer.added.length} files into models.json (${answer.skipped.length} skipped)`;
  });
}

async function openDuplicates() {
  const dialog = $("duplicates-dialog"), body = $("duplicates-body");
  body.replaceChildren(el("p", "", "Looking for copies…"));
  dialog.showModal();
  try {
    const answer = await api("GET", "/api/admin/library/duplicates");
    const rows = answer.groups.flatMap((group) => group.files.map((file, index) => [index ? "" : megabytes(group.size), index ? "" : group.copies, file.dest, file.file]));
    body.replaceChildren(el("p", "", `${answer.groups.length} files kept more than once, ${megabytes(answer.wasted_bytes)} in extra copies.`), table(["size", "copies", "folder", "file"], rows));
  } catch (error) { body.replaceChildren(el("p", "message error", error.message)); }
}

// ---- what a workflow needs -------------------------------------------------------------------

const WORKFLOW_STATES = { present: "on disk", in_catalog: "in a catalog", identified: "found online", unknown: "not found" };
let workflowBody = null;

async function checkWorkflow(body, type, download = false) {
  const box = $("workflow-body");
  box.replaceChildren(el("p", "", download ? "Queueing the missing files…" : "Reading the workflow…"));
  let response;
  try {
    response = await fetch(`/api/admin/workflow/requirements${download ? "?download=true" : ""}`, {
      method: "POST", headers: { "X-API-Key": key(), "Content-Type": type }, body,
    });
  } catch (error) { goneOffline(); box.replaceChildren(el("p", "message error", "The service cannot be reached.")); return; }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) { box.replaceChildren(el("p", "message error", answer.detail || `HTTP ${response.status}`)); return; }
  workflowBody = { body, type };
  const missing = answer.counts.in_catalog + answer.counts.identified;
  const rows = answer.models.map((model) => {
    const where = model.state === "present" ? `${model.where}${model.elsewhere ? " (point the node at it)" : ""}`
      : model.state === "in_catalog" ? `catalogued, ${model.status}` : model.url || "";
    return [model.name, model.folder ?? "?", WORKFLOW_STATES[model.state], where, model.size ? megabytes(model.size) : ""];
  });
  const summary = `${answer.counts.present} on disk, ${missing} to fetch${answer.download_bytes ? ` (${megabytes(answer.download_bytes)})` : ""}, ${answer.counts.unknown} not found`;
  const list = table(["model", "folder", "state", "where", "size"], rows);
  list.querySelectorAll("tr").forEach((tr, index) => { if (index) tr.children[2].className = `state-${answer.models[index - 1].state}`; });
  box.replaceChildren(el("p", "", summary), list);
  if (answer.downloads) {
    const done = answer.downloads.filter((item) => item.job).length;
    box.prepend(el("p", "", `queued ${done} downloads${answer.downloads.length > done ? `, ${answer.downloads.length - done} refused: ${answer.downloads.filter((i) => !i.job).map((i) => `${i.name} (${i.detail || i.status})`).join("; ")}` : ""}`));
    refreshJobsSoon();
  }
  $("workflow-fetch").disabled = missing === 0 || download;
}

function workflowFile(file) {
  const type = file.type || (file.name.endsWith(".png") ? "image/png" : file.name.endsWith(".webp") ? "image/webp" : "application/json");
  checkWorkflow(file, type);
}

function openWorkflow() {
  $("workflow-body").replaceChildren();
  $("workflow-fetch").disabled = true;
  $("workflow-dialog").showModal();
}

const drop = $("workflow-drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) workflowFile(file);
});
$("workflow-file").addEventListener("change", () => { const file = $("workflow-file").files[0]; if (file) workflowFile(file); });
$("workflow-check").addEventListener("click", () => checkWorkflow($("workflow-text").value, "application/json"));
$("workflow-fetch").addEventListener("click", () => { if (workflowBody) checkWorkflow(workflowBody.body, workflowBody.type, true); });
$("open-workflow").addEventListener("click", openWorkflow);

// ---- start ----------------------------------------------------------------------------------

async function firstLoad() {
  for (;;) {
    try { await loadMap(); return; } catch (error) {
      say(`${error.message} Trying again…`, true);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

function start() {
  if (matchMedia("(max-width: 700px)").matches) $("filters-box").open = $("tools-box").open = false;  // a phone: the list first
  $("key-form").classList.add("hidden");
  $("app").classList.remove("hidden");
  viewFromFragment();
  fitList();
  firstLoad();
  refreshJobs();
  refreshUpdates();
  listen();
  showProgress();
  setInterval(showProgress, 5000);
}

let typing = null;
$("search").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => { applyView(); viewToFragment(); }, 0); });
for (const id of ["f-status", "f-catalog", "f-folder", "f-base", "sort"]) $(id).addEventListener("change", () => { applyView(); viewToFragment(); });
let scrolling = false;
$("list").addEventListener("scroll", () => { if (!scrolling) { scrolling = true; requestAnimationFrame(() => { scrolling = false; render(); }); } });
window.addEventListener("resize", () => { cachedRowHeight = 0; fitList(); applyView(); });
for (const box of ["filters-box", "tools-box"]) $(box).addEventListener("toggle", fitList);
window.addEventListener("hashchange", () => { viewFromFragment(); applyView(); });

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key").value.trim());
  const health = await fetch("/api/health", { headers: { "X-API-Key": key() } }).then((r) => r.json()).catch(() => null);
  if (!health || !health.authenticated) { sessionStorage.removeItem(KEY); say("That key is not right.", true); return; }
  say("");
  start();
});

$("add-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  await act(async () => {
    const answer = added(await api("POST", "/api/admin/civitai/add", { ref: $("version").value.trim() }));
    $("version").value = "";
    return answer;
  });
});

$("check-updates").addEventListener("click", () => act(async () => {
  const answer = await api("POST", "/api/admin/models/updates/check");
  return `checking ${answer.models} models for newer versions; rows show what is found`;
}));
$("open-import").addEventListener("click", openImport);
$("import-confirm").addEventListener("click", confirmImport);
$("open-duplicates").addEventListener("click", openDuplicates);
for (const button of document.querySelectorAll("dialog [data-close]")) button.addEventListener("click", () => button.closest("dialog").close());
$("bulk-download").addEventListener("click", () => bulk("download"));
$("bulk-remove").addEventListener("click", () => bulk("remove"));
$("bulk-clear").addEventListener("click", () => {
  state.selected.clear();
  toggleSelected(0, false);
  for (const id of rendered.keys()) redraw(id);
});
$("forget").addEventListener("click", () => { sessionStorage.removeItem(KEY); if (state.events) state.events.abort(); location.reload(); });

if (key()) start();
