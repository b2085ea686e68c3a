// Uploaded files, for the chat's composer and the knowledge page alike: a file's state in
// words, its upload (with the bytes' progress), and a watch on it while it is indexed.
// A file's name and error came from a person or a parser: they are only ever set as text.
import { csrfToken, getJSON, postJSON } from "../http.js";
import { _, fmt, ngettext } from "../i18n.js";

export const WORKING = new Set(["queued", "parsing", "chunking", "embedding"]);
const POLL_MS = 1000;
const MB = 1024 * 1024;

// "Parsing", "Embedding 12 of 40", "Ready · 40 passages", "Failed: the reason".
export function statusText(doc) {
  const { done = 0, total = 0 } = doc.progress || {};
  switch (doc.status) {
    case "queued":
      // the server says when no knowledge worker is up to take it (an admin must start one)
      return doc.no_worker ? _("Queued · no indexing worker is running; ask an admin") : _("Queued");
    case "parsing":
      return _("Parsing");
    case "chunking":
      return _("Chunking");
    case "embedding":
      return total ? fmt(_("Embedding %(done)s of %(total)s"), { done, total }) : _("Embedding");
    case "ready":
      return fmt(ngettext("Ready · %(count)s passage", "Ready · %(count)s passages", doc.chunks || 0), { count: doc.chunks || 0 });
    case "failed":
      return doc.error ? fmt(_("Failed: %(error)s"), { error: doc.error }) : _("Failed");
    default:
      return doc.status_label || doc.status || "";
  }
}

// How far along the file is, 0..1, or null where there is nothing to measure.
export function progressOf(doc) {
  const { done = 0, total = 0 } = doc.progress || {};
  if (doc.status === "embedding" && total) return Math.min(1, done / total);
  return null;
}

export function sizeText(bytes) {
  if (bytes == null) return "";
  if (bytes < 1024) return fmt(_("%(size)s B"), { size: bytes });
  if (bytes < MB) return fmt(_("%(size)s KB"), { size: Math.round(bytes / 1024) });
  return fmt(_("%(size)s MB"), { size: (bytes / MB).toFixed(1) });
}

export const downloadUrl = (id) => `/knowledge/files/${Number(id)}/download`;

// The refusal the server would give, said before any byte is sent.
export function tooLarge(file, megabytes) {
  if (!megabytes || file.size <= megabytes * MB) return null;
  return fmt(_("This file is %(size)s MB; the limit is %(limit)s MB."), { size: (file.size / MB).toFixed(1), limit: megabytes });
}

// Sends one file to a collection or a conversation ({collection: id} or {conversation: id}).
// Returns {promise, abort}; the promise gives the new document, or fails with the server's words.
export function upload(file, target, onProgress = () => {}) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", file, file.name);
    for (const [key, value] of Object.entries(target)) form.append(key, String(value));
    xhr.open("POST", "/knowledge/upload");
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      const body = xhr.response || {};
      if (xhr.status >= 200 && xhr.status < 300 && typeof body.id === "number") resolve(body);
      else {
        const error = new Error(body.error || fmt(_("The server answered %(status)s."), { status: xhr.status }));
        error.code = body.code;
        error.status = xhr.status;
        reject(error);
      }
    });
    xhr.addEventListener("error", () => reject(new Error(_("The upload was cut off; check the connection and try again."))));
    xhr.addEventListener("abort", () => {
      const error = new Error(_("Cancelled."));
      error.code = "aborted";
      reject(error);
    });
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}

export const retryDocument = (id) => postJSON(`/knowledge/files/${Number(id)}/retry`);
export const deleteDocument = (id) => postJSON(`/knowledge/files/${Number(id)}/delete`);

// Asks for a file's state every second while a worker has it. `items()` lists what shows
// files on screen (chips or rows, each with its `doc`): the one whose file changed takes its
// new state and is given to `redraw(item)`; one whose file was deleted (elsewhere) is given
// to `forget(item)`. An item no longer on screen is left alone. One watch per file id.
export class Watcher {
  constructor({ items, redraw, forget }) {
    Object.assign(this, { items, redraw, forget });
    this.timers = new Map(); // id -> timeout
  }

  holding(id) {
    return this.items().find((item) => item.doc?.id === id);
  }

  watch(doc) {
    this.stop(doc.id);
    if (!WORKING.has(doc.status)) return;
    this.timers.set(doc.id, setTimeout(() => this.poll(doc.id), POLL_MS));
  }

  async poll(id) {
    if (!this.timers.has(id)) return;
    let doc;
    try {
      doc = await getJSON(`/knowledge/files/${Number(id)}`);
    } catch (error) {
      if (!this.timers.has(id)) return;
      if (error.status === 404) {
        this.timers.delete(id);
        const item = this.holding(id);
        if (item) this.forget(item);
        return;
      }
      // a blip (the server restarting): ask again, a little later
      this.timers.set(id, setTimeout(() => this.poll(id), POLL_MS * 3));
      return;
    }
    if (!this.timers.has(id)) return; // stopped (removed) while the answer was on its way
    this.timers.delete(id);
    const item = this.holding(doc.id);
    if (item && JSON.stringify(item.doc) !== JSON.stringify(doc)) {
      item.doc = doc;
      this.redraw(item);
    }
    this.watch(doc);
  }

  stop(id) {
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
  }

  stopAll() {
    for (const id of [...this.timers.keys()]) this.stop(id);
  }
}

// Whether a drag carries files (not text or a link dragged within the page).
export const draggingFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");

// --- what the chat's chips and the knowledge page's rows share -------------------------------

// Upload one pending item (a chip, a row) to `target` ({conversation} or {collection}),
// keeping its progress, its document or its error on it; `changed(item)` redraws it while it
// goes. Resolves false when the person cancelled it (the caller forgets it), else true.
export async function sendItem(item, target, watcher, changed) {
  const sending = upload(item.file, target, (fraction) => {
    item.progress = fraction;
    changed(item);
  });
  item.abort = sending.abort;
  try {
    item.doc = await sending.promise;
    item.name = item.doc.name;
    watcher.watch(item.doc);
    return true;
  } catch (error) {
    if (error.code === "aborted") return false;
    item.error = error.message;
    return true;
  } finally {
    item.abort = null;
    item.file = null; // the bytes are the server's now (or refused): not kept in the page
  }
}

// Index a failed item's file again; `failed(message)` says why it could not be.
export async function retryItem(item, watcher, changed, failed) {
  item.busy = true;
  changed(item);
  try {
    item.doc = await retryDocument(item.doc.id);
    watcher.watch(item.doc);
  } catch (error) {
    failed(error.message);
  } finally {
    item.busy = false;
    changed(item);
  }
}

// Files dropped on `zone` (when `may(event)`) go to `onFiles`; `highlight` shows the drop
// is welcome while they hover. A file dropped anywhere else on the page is refused rather
// than opened in place of it.
export function dropTarget(zone, { onFiles, may = draggingFiles, highlight = zone }) {
  let depth = 0;
  const done = () => {
    depth = 0;
    highlight.classList.remove("dropping");
  };
  zone.addEventListener("dragenter", (event) => {
    if (!may(event)) return;
    event.preventDefault();
    depth += 1;
    highlight.classList.add("dropping");
  });
  zone.addEventListener("dragover", (event) => {
    if (!may(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  zone.addEventListener("dragleave", (event) => {
    if (!may(event)) return;
    depth -= 1;
    if (depth <= 0) done();
  });
  zone.addEventListener("drop", (event) => {
    if (!may(event)) return;
    event.preventDefault();
    done();
    onFiles(event.dataTransfer.files);
  });
  for (const type of ["dragover", "drop"]) {
    document.addEventListener(type, (event) => {
      if (draggingFiles(event) && !event.defaultPrevented) {
        event.preventDefault(); // the zone did not take it (it bubbles here after the zone)
        event.dataTransfer.dropEffect = "none";
      }
    });
  }
}
