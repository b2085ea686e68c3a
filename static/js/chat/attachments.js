// What the conversation searches when it answers: files attached to it (the paperclip, a
// drop on the chat, or a paste) and knowledge collections (picked in the settings). Each
// file is a chip above the prompt with its own state: uploading, being read (with its
// progress), ready, or failed with the reason and a retry; × removes it. A new chat
// becomes a conversation on its first file, as it does on its first message.
import { getJSON, postJSON } from "../http.js";
import { _, fmt, ngettext } from "../i18n.js";
import { ensureConversation, onCreated } from "./conversation.js";
import { $, el, say } from "./dom.js";
import {
  deleteDocument,
  downloadUrl,
  dropTarget,
  progressOf,
  retryItem,
  sendItem,
  statusText,
  tooLarge,
  Watcher,
  WORKING,
} from "./documents.js";
import { data, state } from "./state.js";

const settings = data.knowledge ?? { enabled: true, accept: "", megabytes: 0 };
const list = $("attachments");
const attachButton = $("attach");
const input = $("attach-input");
const picker = $("collections");
const choices = $("collection-choices");
const pickerNote = $("collections-note");
const chatMain = document.querySelector(".chat-main");
const prompt = $("prompt");

const files = []; // {key, name, doc?, progress?, error?, abort?, busy?}
let collections = []; // readable collections, once asked for
let attached = []; // the collections this conversation searches: [{id, name, shared, ...}]
let nextKey = 1;
const PERCENT = new Intl.NumberFormat(document.documentElement.lang || undefined, { style: "percent" });
const watcher = new Watcher({ items: () => files, redraw, forget });

// Names of the attached files an answer sent now would not search (still on their way or being read).
export function unready() {
  return files.filter((f) => !f.error && (!f.doc || WORKING.has(f.doc.status))).map((f) => f.name);
}

// --- the chips ---------------------------------------------------------------------------

function fileStatus(file) {
  if (file.error) return { text: file.error, status: "refused", progress: null };
  if (!file.doc) {
    const percent = PERCENT.format(file.progress || 0);
    return { text: fmt(_("Uploading %(percent)s"), { percent }), status: "uploading", progress: file.progress || 0 };
  }
  return { text: statusText(file.doc), status: file.doc.status, progress: progressOf(file.doc) };
}

function kindOf(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1, dot + 5).toUpperCase() : "";
}

function iconButton(text, label, testid, onClick) {
  const button = el("button", { type: "button", className: "icon", textContent: text, title: label, dataset: { testid }, onclick: onClick });
  button.setAttribute("aria-label", label);
  return button;
}

function fileChip(file) {
  const { text, status, progress } = fileStatus(file);
  const name = file.doc
    ? el("a", { className: "chip-name", href: downloadUrl(file.doc.id), download: "", textContent: file.name, title: file.name })
    : el("span", { className: "chip-name", textContent: file.name, title: file.name });
  const chip = el(
    "li",
    { className: `chip file ${status}`, dataset: { testid: "attachment", key: `f${file.key}`, status, ...(file.doc ? { id: String(file.doc.id) } : {}) } },
    el("span", { className: "chip-kind", textContent: kindOf(file.name) }),
    name,
    el("span", { className: "chip-status", textContent: text, dataset: { testid: "attachment-status" } }),
  );
  chip.title = `${file.name}: ${text}`;
  if (progress != null) chip.append(el("progress", { max: 1, value: progress, className: "chip-progress" }));
  if (file.doc?.can_retry) {
    chip.append(el("button", { type: "button", className: "link", textContent: _("Retry"), disabled: Boolean(file.busy), dataset: { testid: "attachment-retry" }, onclick: () => retry(file) }));
  }
  const label = file.doc ? fmt(_("Remove %(name)s from this conversation"), { name: file.name }) : fmt(_("Cancel %(name)s"), { name: file.name });
  chip.append(iconButton("×", label, "attachment-remove", () => remove(file)));
  return chip;
}

function collectionChip(collection) {
  const label = fmt(_("Stop searching the collection %(name)s"), { name: collection.name });
  return el(
    "li",
    { className: "chip collection", dataset: { testid: "attached-collection", key: `c${collection.id}`, id: String(collection.id) } },
    el("span", { className: "chip-kind", textContent: _("Collection") }),
    el("span", { className: "chip-name", textContent: collection.name, title: collection.name }),
    el("span", { className: "chip-status", textContent: fmt(ngettext("%(count)s file", "%(count)s files", collection.files || 0), { count: collection.files || 0 }) }),
    iconButton("×", label, "attached-collection-remove", () => setCollections(attached.filter((c) => c.id !== collection.id).map((c) => c.id))),
  );
}

// Redrawn from the lists; a chip's button that had the focus (a keyboard's) keeps it.
function keepingFocus(change) {
  const focused = list.contains(document.activeElement) ? document.activeElement : null;
  const key = focused?.closest("li")?.dataset.key;
  const testid = focused?.dataset.testid;
  change();
  if (key && testid) list.querySelector(`li[data-key="${key}"] [data-testid="${testid}"]`)?.focus();
}

function draw() {
  keepingFocus(() => list.replaceChildren(...attached.map(collectionChip), ...files.map(fileChip)));
  list.hidden = !list.children.length;
}

// One file's chip drawn again (its state moved on).
function redraw(file) {
  const old = list.querySelector(`li[data-key="f${file.key}"]`);
  if (!old) return draw();
  keepingFocus(() => old.replaceWith(fileChip(file)));
}

function forget(file) {
  watcher.stop(file.doc?.id);
  files.splice(files.indexOf(file), 1);
  draw();
}

// --- adding, retrying and removing files ---------------------------------------------------

export async function addFiles(chosen) {
  const batch = [...chosen].map((file) => ({ key: nextKey++, name: file.name || _("(no name)"), file, progress: 0 }));
  if (!batch.length) return;
  files.push(...batch);
  for (const item of batch) item.error = tooLarge(item.file, settings.megabytes);
  draw();
  if (batch.every((item) => item.error)) return;
  let conversation;
  try {
    conversation = await ensureConversation();
  } catch (error) {
    for (const item of batch) item.error ??= error.message;
    draw();
    return;
  }
  await Promise.all(batch.filter((item) => !item.error).map((item) => send(item, conversation.id)));
}

async function send(item, conversationId) {
  if (!(await sendItem(item, { conversation: conversationId }, watcher, redraw))) {
    forget(item); // cancelled
    return;
  }
  draw();
}

function retry(file) {
  return retryItem(file, watcher, redraw, say);
}

async function remove(file) {
  if (file.abort) {
    file.abort(); // forgotten when the upload says it stopped
    return;
  }
  if (!file.doc) {
    forget(file);
    return;
  }
  watcher.stop(file.doc.id);
  try {
    await deleteDocument(file.doc.id);
    forget(file);
  } catch (error) {
    if (error.status === 404) forget(file);
    else {
      say(error.message);
      watcher.watch(file.doc);
    }
  }
}

// --- collections -------------------------------------------------------------------------

function drawChoices() {
  const on = new Set(attached.map((c) => c.id));
  choices.replaceChildren();
  for (const c of collections) {
    const box = el("input", { type: "checkbox", value: String(c.id), checked: on.has(c.id), dataset: { testid: "collection-choice" } });
    const count = fmt(ngettext("%(count)s file", "%(count)s files", c.files || 0), { count: c.files || 0 });
    const label = el("label", { className: "collection-choice" }, box, " ", el("span", { textContent: c.name }), " ", el("span", { className: "muted", textContent: c.shared ? `${_("shared")} · ${count}` : count }));
    if (c.description) label.title = c.description;
    choices.append(label);
  }
  if (!collections.length) choices.append(el("p", { className: "muted", textContent: _("You have no collections yet.") }));
}

async function loadCollections() {
  try {
    collections = (await getJSON("/knowledge/collections")).collections;
  } catch (error) {
    pickerNote.textContent = error.message;
    return;
  }
  // an attached collection no longer readable (unshared) is not searched: not shown either
  drawChoices();
}

// Attaches exactly these collections (a new chat keeps them until it is created).
async function setCollections(ids) {
  const known = new Map([...collections, ...attached].map((c) => [c.id, c]));
  const before = attached;
  attached = ids.map((id) => known.get(id)).filter(Boolean);
  draw();
  drawChoices();
  if (!state.conversation) {
    pickerNote.textContent = attached.length ? _("Searched from the first message on.") : "";
    return;
  }
  try {
    await postJSON(`/knowledge/conversations/${state.conversation.id}/collections`, { collections: attached.map((c) => c.id) });
    pickerNote.textContent = _("Saved for this conversation.");
  } catch (error) {
    attached = before;
    draw();
    drawChoices();
    pickerNote.textContent = error.message;
  }
}

async function loadConversation(id) {
  try {
    const found = await getJSON(`/knowledge/conversations/${id}`);
    attached = found.collections;
    // oldest first, as they were added
    for (const doc of [...found.documents].reverse()) {
      files.push({ key: nextKey++, name: doc.name, doc });
      watcher.watch(doc);
    }
    draw();
    drawChoices();
  } catch (error) {
    say(error.message);
  }
}

// --- drag and drop, paste -------------------------------------------------------------------

function start() {
  if (!settings.enabled) return;
  attachButton.hidden = false;
  picker.hidden = false;
  if (settings.accept) input.accept = settings.accept;
  attachButton.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    const chosen = [...input.files];
    input.value = ""; // the same file may be chosen again
    addFiles(chosen);
  });
  prompt.addEventListener("paste", (event) => {
    const pasted = [...(event.clipboardData?.files || [])];
    if (!pasted.length) return;
    event.preventDefault();
    addFiles(pasted);
  });
  dropTarget(chatMain, { onFiles: addFiles });
  choices.addEventListener("change", () => {
    const ids = [...choices.querySelectorAll("input:checked")].map((box) => Number(box.value));
    setCollections(ids);
  });
  const params = picker.closest("details");
  params?.addEventListener("toggle", () => {
    if (params.open) loadCollections();
  });
  if (params?.open) loadCollections();
  onCreated(async (conversation) => {
    if (!attached.length) return;
    try {
      await postJSON(`/knowledge/conversations/${conversation.id}/collections`, { collections: attached.map((c) => c.id) });
      pickerNote.textContent = _("Saved for this conversation.");
    } catch (error) {
      pickerNote.textContent = error.message;
      say(error.message);
    }
  });
  if (state.conversation) loadConversation(state.conversation.id);
  window.addEventListener("beforeunload", (event) => {
    if (files.some((f) => f.abort)) event.preventDefault(); // an upload would be cut off
  });
}

start();
