// The catalog page, live: thumbnails, change events applied to their rows, downloads and update
// checks, the events stream and the offline banner, and the service's progress. Loaded after
// app.js, whose functions and state it uses.
"use strict";

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
    // By version: two folders may hold files of one name, each its own row and its own job.
    for (const job of downloads) if (["queued", "downloading", "verifying"].includes(job.state)) state.jobs.set(job.version_id ?? job.file, job);
    for (const row of state.rows.values()) {
      if ([row.id, row.file].some((key) => state.jobs.has(key) || before.has(key))) redraw(row.id);
    }
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
  if (response.status === 401) { keyRefused(); return; }
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
