// The catalog page's tools: bulk actions, the import and duplicates views, what a workflow
// needs, and the start. Loaded last, after app.js and live.js.
"use strict";

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
      if (kind === "download" && row.catalog && row.status === "missing") { await api("POST", `/api/admin/models/download/${encodeURIComponent(row.file)}`, { version_id: row.id }); done++; }
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
    for (const cell of cells) tr.appendChild(el("td", "", visible(cell)));  // names from disk or a workflow: no bidi tricks
    node.appendChild(tr);
  }
  return node;
}

// A dialog that shows what one request answers: "looking…" while it runs, then `fill`'s
// content, or the error. Returns whether the answer came.
async function showInDialog(name, waiting, request, fill) {
  const body = $(`${name}-body`);
  body.replaceChildren(el("p", "", waiting));
  $(`${name}-dialog`).showModal();
  try {
    body.replaceChildren(...fill(await request()));
    return true;
  } catch (error) {
    body.replaceChildren(el("p", "message error", error.message));
    return false;
  }
}

async function openImport() {
  let adds = 0;
  const shown = await showInDialog("import", "Looking at what would be imported…", () => api("POST", "/api/admin/library/import?dry_run=true"), (answer) => {
    adds = answer.added.length;
    return [
      el("h3", "", `Would add ${answer.added.length}`),
      table(["file", "folder", "name"], answer.added.map((item) => [item.file, item.dest, item.name])),
      el("h3", "", `Would skip ${answer.skipped.length}`),
      table(["file", "folder", "why"], answer.skipped.map((item) => [item.file, item.dest, item.reason])),
      el("h3", "", `Not identified: ${answer.not_identified_count}`),
      table(["file", "folder", "why"], answer.not_identified_files.map((item) => [item.file, item.dest, item.why.replaceAll("_", " ")])),
    ];
  });
  $("import-confirm").disabled = !shown || adds === 0;
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
  await showInDialog("duplicates", "Looking for copies…", () => api("GET", "/api/admin/library/duplicates"), (answer) => {
    const rows = answer.groups.flatMap((group) => group.files.map((file, index) => [index ? "" : megabytes(group.size), index ? "" : group.copies, file.dest, file.file]));
    return [el("p", "", `${answer.groups.length} files kept more than once, ${megabytes(answer.wasted_bytes)} in extra copies.`), table(["size", "copies", "folder", "file"], rows)];
  });
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
else if (sessionStorage.getItem(REFUSED)) {
  sessionStorage.removeItem(REFUSED);
  say("The API key is not right any more (it was changed, or the service was started with another); enter it again.", true);
}
