// The knowledge page: the person's collections (and those an admin shares), one open at a
// time with its files. Files are added with a button or a drop, several at once, each in
// its own row with its own progress or error; a row follows its file while a worker reads
// it. Names, descriptions and errors are set as text, never as markup.
import {
  deleteDocument,
  downloadUrl,
  draggingFiles,
  dropTarget,
  progressOf,
  retryItem,
  sendItem,
  sizeText,
  statusText,
  tooLarge,
  Watcher,
} from "./chat/documents.js";
import { $, el } from "./chat/dom.js";
import { getJSON, postJSON } from "./http.js";
import { _, fmt, ngettext } from "./i18n.js";

const data = JSON.parse(document.getElementById("page-data").textContent);

const ui = {
  list: $("collection-list"),
  create: $("new-collection"),
  createError: $("new-collection-error"),
  empty: $("no-collection"),
  view: $("collection-view"),
  title: $("collection-title"),
  about: $("collection-about"),
  actions: $("collection-actions"),
  editButton: $("collection-edit"),
  deleteButton: $("collection-delete"),
  edit: $("edit-collection"),
  editError: $("edit-error"),
  dropzone: $("dropzone"),
  choose: $("choose-files"),
  input: $("upload-input"),
  readOnly: $("read-only"),
  rows: $("file-rows"),
  noFiles: $("no-files"),
  paneError: $("pane-error"),
};

let collections = data.collections;
let current = null; // the open collection
let rows = []; // its files: {key, name, size, doc?, progress?, error?, abort?}
let nextKey = 1;
let opening = 0; // which open is the latest (a slow answer for an earlier one is dropped)
const PERCENT = new Intl.NumberFormat(document.documentElement.lang || undefined, { style: "percent" });
const watcher = new Watcher({ items: () => rows, redraw, forget });

function show(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

// --- the collections ------------------------------------------------------------------------

function drawList() {
  ui.list.replaceChildren();
  for (const c of collections) {
    const files = fmt(ngettext("%(count)s file", "%(count)s files", c.files || 0), { count: c.files || 0 });
    const button = el(
      "button",
      { type: "button", onclick: () => open(c.id) },
      el("span", { className: "name", textContent: c.name }),
      ...(c.shared ? [el("span", { className: "tag", textContent: c.mine ? _("shared by you") : _("shared"), dataset: { testid: "collection-shared-tag" } })] : []),
      el("span", { className: "muted small", textContent: files }),
    );
    if (c.description) button.title = c.description;
    if (current?.id === c.id) button.setAttribute("aria-current", "true");
    ui.list.append(el("li", { className: current?.id === c.id ? "current" : "", dataset: { testid: "collection", id: String(c.id) } }, button));
  }
  if (!collections.length) ui.list.append(el("li", { className: "muted", textContent: _("No collections yet.") }));
}

function sortCollections() {
  // as the server lists them: shared first, then by name
  collections.sort((a, b) => Number(b.shared) - Number(a.shared) || a.name.localeCompare(b.name) || a.id - b.id);
}

function remember(collection) {
  const at = collections.findIndex((c) => c.id === collection.id);
  if (at >= 0) collections[at] = collection;
  else collections.push(collection);
  sortCollections();
  if (current?.id === collection.id) current = collection;
  drawList();
}

ui.create?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = ui.create.elements;
  show(ui.createError, "");
  try {
    const created = await postJSON("/knowledge/collections/new", {
      name: form.name.value,
      description: form.description.value,
      shared: Boolean(form.shared?.checked),
    });
    ui.create.reset();
    remember(created);
    open(created.id);
  } catch (error) {
    show(ui.createError, error.message);
  }
});

function drawHead() {
  const c = current;
  ui.title.textContent = c.name;
  const about = [];
  if (c.description) about.push(c.description);
  if (c.shared) about.push(c.mine ? _("Shared with everyone by you.") : _("Shared with everyone."));
  ui.about.textContent = about.join(" · ");
  ui.actions.hidden = !c.mine;
  ui.dropzone.hidden = !c.mine || !data.enabled;
  ui.readOnly.hidden = c.mine;
}

ui.editButton.addEventListener("click", () => {
  const form = ui.edit.elements;
  form.name.value = current.name;
  form.description.value = current.description || "";
  if (form.shared) form.shared.checked = current.shared;
  show(ui.editError, "");
  ui.edit.hidden = false;
  form.name.focus();
});

$("edit-cancel").addEventListener("click", () => {
  ui.edit.hidden = true;
  ui.editButton.focus();
});

ui.edit.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = ui.edit.elements;
  const body = { name: form.name.value, description: form.description.value };
  if (form.shared) body.shared = form.shared.checked;
  try {
    remember(await postJSON(`/knowledge/collections/${current.id}/update`, body));
    drawHead();
    ui.edit.hidden = true;
    ui.editButton.focus();
  } catch (error) {
    show(ui.editError, error.message);
  }
});

ui.deleteButton.addEventListener("click", async () => {
  const c = current;
  const files = rows.filter((r) => r.doc).length;
  const question = fmt(
    ngettext(
      "Delete the collection “%(name)s” and its %(count)s file? Conversations will no longer search it. This cannot be undone.",
      "Delete the collection “%(name)s” and its %(count)s files? Conversations will no longer search it. This cannot be undone.",
      files,
    ),
    { name: c.name, count: files },
  );
  if (!window.confirm(question)) return;
  try {
    await postJSON(`/knowledge/collections/${c.id}/delete`);
  } catch (error) {
    show(ui.paneError, error.message);
    return;
  }
  collections = collections.filter((x) => x.id !== c.id);
  close();
  drawList();
});

function close() {
  watcher.stopAll();
  for (const row of rows) row.abort?.();
  current = null;
  rows = [];
  ui.view.hidden = true;
  ui.empty.hidden = false;
  history.replaceState(null, "", location.pathname);
}

async function open(id) {
  const ticket = ++opening;
  show(ui.paneError, "");
  let found;
  try {
    found = await getJSON(`/knowledge/collections/${Number(id)}`);
  } catch (error) {
    if (ticket !== opening) return;
    if (error.status === 404) {
      collections = collections.filter((c) => c.id !== id);
      close();
      drawList();
    }
    show(ui.paneError, error.message);
    ui.view.hidden = false;
    return;
  }
  if (ticket !== opening) return;
  watcher.stopAll();
  for (const row of rows) row.abort?.();
  current = found.collection;
  remember(found.collection);
  rows = found.documents.map((doc) => ({ key: nextKey++, name: doc.name, size: doc.size, doc }));
  for (const row of rows) watcher.watch(row.doc);
  ui.edit.hidden = true;
  ui.empty.hidden = true;
  ui.view.hidden = false;
  drawHead();
  drawRows();
  history.replaceState(null, "", `#collection-${current.id}`);
}

// --- the files --------------------------------------------------------------------------------

function rowState(row) {
  if (row.error) return { text: row.error, status: "refused", progress: null };
  if (!row.doc) return { text: fmt(_("Uploading %(percent)s"), { percent: PERCENT.format(row.progress || 0) }), status: "uploading", progress: row.progress || 0 };
  return { text: statusText(row.doc), status: row.doc.status, progress: progressOf(row.doc) };
}

function action(label, testid, onClick, disabled = false) {
  return el("button", { type: "button", className: "link", textContent: label, disabled, dataset: { testid }, onclick: onClick });
}

function fileRow(row) {
  const { text, status, progress } = rowState(row);
  const name = row.doc
    ? el("a", { href: downloadUrl(row.doc.id), download: "", textContent: row.name, title: _("Download"), dataset: { testid: "file-download" } })
    : el("span", { textContent: row.name });
  const state = el("td", { className: "status", dataset: { testid: "file-status" } }, el("span", { textContent: text }));
  if (progress != null) state.append(el("progress", { max: 1, value: progress }));
  const actions = el("div", { className: "file-actions" });
  const mine = current?.mine;
  if (row.abort) actions.append(action(_("Cancel"), "file-cancel", () => row.abort()));
  else if (!row.doc) actions.append(action(_("Dismiss"), "file-dismiss", () => forget(row)));
  else if (mine) {
    if (row.doc.can_retry) actions.append(action(_("Retry"), "file-retry", () => retry(row), Boolean(row.busy)));
    actions.append(action(_("Delete"), "file-delete", () => remove(row), Boolean(row.busy)));
  }
  return el(
    "tr",
    { className: status, dataset: { testid: "file", key: String(row.key), status, ...(row.doc ? { id: String(row.doc.id) } : {}) } },
    el("td", { className: "name" }, name),
    el("td", { textContent: sizeText(row.size) }),
    el("td", { textContent: row.doc?.pages != null ? String(row.doc.pages) : "" }),
    state,
    el("td", {}, actions),
  );
}

function keepingFocus(change) {
  const focused = ui.rows.contains(document.activeElement) ? document.activeElement : null;
  const key = focused?.closest("tr")?.dataset.key;
  const testid = focused?.dataset.testid;
  change();
  if (key && testid) ui.rows.querySelector(`tr[data-key="${key}"] [data-testid="${testid}"]`)?.focus();
}

function drawRows() {
  keepingFocus(() => ui.rows.replaceChildren(...rows.map(fileRow)));
  ui.noFiles.hidden = rows.length > 0;
}

function redraw(row) {
  const old = ui.rows.querySelector(`tr[data-key="${row.key}"]`);
  if (!old) return drawRows();
  keepingFocus(() => old.replaceWith(fileRow(row)));
}

function forget(row) {
  watcher.stop(row.doc?.id);
  rows = rows.filter((r) => r !== row);
  drawRows();
}

function countFiles() {
  if (!current) return;
  current.files = rows.filter((r) => r.doc).length;
  remember(current);
}

async function addFiles(chosen) {
  if (!current?.mine) return;
  const collection = current;
  const batch = [...chosen].map((file) => ({ key: nextKey++, name: file.name, size: file.size, file, progress: 0 }));
  for (const row of batch) row.error = tooLarge(row.file, data.limits.megabytes);
  rows = [...batch, ...rows]; // the newest first, as the server lists them
  drawRows();
  await Promise.all(
    batch
      .filter((row) => !row.error)
      .map(async (row) => {
        if (!(await sendItem(row, { collection: collection.id }, watcher, redraw))) {
          forget(row); // cancelled
          return;
        }
        if (row.doc) row.size = row.doc.size;
        if (current === collection) redraw(row);
      }),
  );
  if (current === collection) countFiles();
}

function retry(row) {
  return retryItem(row, watcher, redraw, (message) => show(ui.paneError, message));
}

async function remove(row) {
  if (!window.confirm(fmt(_("Delete “%(name)s”? Answers already given keep their quotes of it."), { name: row.name }))) return;
  row.busy = true;
  redraw(row);
  watcher.stop(row.doc.id);
  try {
    await deleteDocument(row.doc.id);
  } catch (error) {
    if (error.status !== 404) {
      row.busy = false;
      redraw(row);
      watcher.watch(row.doc);
      show(ui.paneError, error.message);
      return;
    }
  }
  forget(row);
  countFiles();
}

// --- choosing and dropping files ----------------------------------------------------------------

ui.choose.addEventListener("click", () => ui.input.click());
ui.input.addEventListener("change", () => {
  const chosen = [...ui.input.files];
  ui.input.value = "";
  addFiles(chosen);
});
if (data.accept) ui.input.accept = data.accept;
$("formats").textContent = (data.accept || "")
  .split(",")
  .map((ext) => ext.replace(/^\./, "").toUpperCase())
  .filter(Boolean)
  .join(", ");
// the whole open collection takes a drop, not only the dashed box
dropTarget(ui.view, {
  onFiles: addFiles,
  may: (event) => draggingFiles(event) && current?.mine && data.enabled,
  highlight: ui.dropzone,
});
sortCollections();
drawList();
const wanted = Number(/^#collection-(\d+)$/.exec(location.hash)?.[1]);
const first = collections.find((c) => c.id === wanted) ?? collections.find((c) => c.mine) ?? collections[0];
if (first) open(first.id);
window.addEventListener("beforeunload", (event) => {
  if (rows.some((r) => r.abort)) event.preventDefault(); // an upload would be cut off
});
