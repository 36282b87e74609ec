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
  jobs: new Map(),       // version id (a file name for a job of no version) -> download job (queued, downloading or verifying)
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
  if (response.status === 401) keyRefused();
  if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
  return body;
}

const REFUSED = "comfy-catalog-key-refused";

function keyRefused() {  // the key was changed or revoked: ask for it again, not "offline"
  sessionStorage.removeItem(KEY);
  sessionStorage.setItem(REFUSED, "1");
  if (state.events) state.events.abort();
  location.reload();
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
  row.sortName = sortKey(row.name || row.file);
  row.sortFile = null;  // made when first sorted by file
  row.hay = null;  // what search looks in: made after the first paint, or when first needed
  state.rows.set(row.id, row);
  return row;
}

function sortKey(text) {  // lowercased, each number led by its length, so that "v2" comes before "v10"
  return text.toLowerCase().replace(/\d+/g, (digits) => {
    const number = digits.replace(/^0+(?=\d)/, "");  // "007" is 7
    return String.fromCharCode(0x30 + number.length) + number;
  });
}

function fileKey(row) {  // the name before its extension first: "a_v1.safetensors" before "a_v1.5.safetensors"
  if (row.sortFile === null) {
    const dot = row.file.lastIndexOf(".");
    row.sortFile = dot > 0 ? `${sortKey(row.file.slice(0, dot))}\u0000${row.file.slice(dot + 1).toLowerCase()}` : sortKey(row.file);
  }
  return row.sortFile;
}

function hayOf(row) {
  if (row.hay === null) row.hay = `${row.name} ${row.file} ${row.id} ${row.civitai_model_id ?? ""} ${row.base_model ?? ""} ${row.dest}`.toLowerCase();
  return row.hay;
}

function takeMap(map) {
  const drawn = [...rendered.keys()];  // rows drawn from the map read before
  state.lastFilters = null;
  state.rows.clear();
  const entries = map.by_version;
  for (const id in entries) remember(id, entries[id]);
  state.sorted = null;
  for (const [id] of state.thumbs) dropThumb(id);
  fillChoices();
  updateBulk();
  applyView();
  for (const id of drawn) redraw(id);  // those kept in view show the map as read now; new ones are drawn from it already
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
    let value = params.get(name) ?? (name === "sort" ? "name" : "");
    if (name === "sort" && !Object.hasOwn(SORTS, value)) value = "name";  // a fragment from elsewhere: only the sorts there are
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
  file: (a, b) => (fileKey(a) < fileKey(b) ? -1 : fileKey(a) > fileKey(b) ? 1 : a.id - b.id),
  size: (a, b) => (b.size_gb ?? -1) - (a.size_gb ?? -1) || a.id - b.id,
  added: (a, b) => ((b.added_at ?? "") < (a.added_at ?? "") ? -1 : (b.added_at ?? "") > (a.added_at ?? "") ? 1 : b.id - a.id),
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
    thumb = el("div", "thumb none", [...(row.name || row.file).trim()][0] ?? "");  // a whole character, an emoji too
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
  const facts = [`v${row.id}`, row.size_gb ? `${row.size_gb.toFixed(2)} GB` : null, row.catalog ? `${row.catalog}.json` : "on disk only"];
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

function jobOf(row) {  // a CivitAI job by its version; a Hugging Face one (no version) by its file
  return state.jobs.get(row.id) ?? state.jobs.get(row.file);
}

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
    const job = jobOf(row);
    if (job && job.speed) {
      const left = total && total > row.dl_bytes ? (total - row.dl_bytes) / job.speed : null; // none once all bytes are in (the check)
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
  if (seconds < 90) return `${Math.max(1, Math.ceil(seconds))} s`; // never "0 s left" while bytes are left
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
      const answer = await api("POST", `/api/admin/models/download/${file}`, { version_id: row.id });
      refreshJobsSoon();
      return `${answer.status}: ${row.file}`;
    }, row));
  }
  const job = jobOf(row);
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
