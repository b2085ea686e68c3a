// The chat page: one websocket per conversation, answers rendered as they stream.
//
// Messages form a tree (a regenerated answer or an edited question is a sibling
// branch); the page shows one branch, ending at `leaf`, with ‹ 1/2 › switches where
// a message has siblings. The `messages` map is the truth; views are redrawn from it.
import { StreamingMarkdown, highlightIn } from "./markdown.js";
import { getJSON, postJSON } from "./http.js";
import { Sidebar } from "./sidebar.js";

const data = JSON.parse(document.getElementById("page-data").textContent);
const $ = (id) => document.getElementById(id);
const pane = $("messages");
const form = $("composer");
const prompt = $("prompt");
const sendButton = $("send");
const stopButton = $("stop");
const notice = $("notice");
const modelSelect = $("model");
const titleEl = $("title");
const paramsForm = $("params-form");
const paramsNote = $("params-note");
// looked up once: nothing an answer renders (ids are prefixed by DOMPurify anyway) can stand in for them
const bar = { model: $("sb-model"), memory: $("sb-memory"), tokens: $("sb-tokens"), speed: $("sb-speed") };
const exportLinks = { box: $("exports"), md: $("export-md"), json: $("export-json") };

let conversation = data.conversation; // null until the first message
let choices = data.choices;
let socket = null;
let retry = 0;
let current = null; // the answer being written: {requestId, messageId}
let lastSpeed = null; // {ttft, tps} of the last answer
let queueAhead = null;
const messages = new Map(); // id -> {id, parent, role, content, reasoning, status, error, ...}
const views = new Map(); // id -> view of a message on screen
let leaf = null; // the last message of the branch on screen
let pendingText = null; // the text of a send until the server acknowledges it ("queued")
let pendingFromComposer = false;
let sending = false; // a send / regenerate frame is out and not yet acknowledged
let creating = null; // the promise of the /c/new call in flight

// --- small helpers -----------------------------------------------------------------

function say(text, kind = "error") {
  notice.hidden = !text;
  notice.textContent = text || "";
  notice.className = `notice ${kind}`;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

function fmtBytes(n) {
  if (!n) return "?";
  const gib = n / 2 ** 30;
  return gib >= 1 ? `${gib.toFixed(1)} GiB` : `${Math.round(n / 2 ** 20)} MiB`;
}

function modelInfo(name) {
  return choices.models.find((m) => m.name === name);
}

function currentModelName() {
  if (conversation) return conversation.model;
  const value = modelSelect.value;
  if (value.startsWith("preset:")) {
    const preset = choices.presets.find((p) => `preset:${p.id}` === value);
    return preset?.model;
  }
  return value;
}

// --- the message tree --------------------------------------------------------------

function children(parentId) {
  return [...messages.values()].filter((m) => m.parent === parentId).sort((a, b) => a.id - b.id);
}

function newestLeafUnder(message) {
  let node = message;
  for (;;) {
    const kids = children(node.id);
    if (!kids.length) return node.id;
    node = kids[kids.length - 1];
  }
}

function branch() {
  const chain = [];
  let node = leaf != null ? messages.get(leaf) : null;
  while (node) {
    chain.push(node);
    node = node.parent != null ? messages.get(node.parent) : null;
  }
  return chain.reverse();
}

function addMessage(message) {
  messages.set(message.id, { content: "", reasoning: "", error: "", ...message });
  return messages.get(message.id);
}

// --- views ---------------------------------------------------------------------------

function messageView(message) {
  const thinking = el("details", { className: "thinking", hidden: true }, el("summary", { textContent: "Thinking" }));
  const reasoningBox = el("div", { className: "reasoning", dataset: { testid: "reasoning" } });
  thinking.append(reasoningBox);
  const body = el("div", { className: "content", dataset: { testid: "content" } });
  const status = el("div", { className: "status", dataset: { testid: "status" } });
  const actions = el("div", { className: "actions" });
  const article = el(
    "article",
    { className: `message ${message.role}`, dataset: { testid: `message-${message.role}`, id: message.id } },
    thinking,
    body,
    status,
    actions,
  );
  const view = {
    article,
    thinking,
    status,
    actions,
    content: new StreamingMarkdown(body),
    reasoning: new StreamingMarkdown(reasoningBox),
    setStatus(text, kind = "") {
      status.textContent = text;
      status.className = `status ${kind}`;
    },
    addReasoning(text) {
      if (!text) return;
      thinking.hidden = false;
      view.reasoning.append(text);
    },
  };
  return view;
}

function siblingSwitch(message) {
  const siblings = children(message.parent);
  if (siblings.length < 2) return null;
  const index = siblings.findIndex((m) => m.id === message.id);
  const go = (delta) => {
    const target = siblings[index + delta];
    if (!target || current) return;
    leaf = newestLeafUnder(target);
    renderBranch();
  };
  return el(
    "span",
    { className: "siblings", dataset: { testid: "siblings" } },
    el("button", { type: "button", className: "icon", textContent: "‹", title: "Previous version", disabled: index === 0, onclick: () => go(-1) }),
    el("span", { textContent: `${index + 1}/${siblings.length}` }),
    el("button", {
      type: "button",
      className: "icon",
      textContent: "›",
      title: "Next version",
      disabled: index === siblings.length - 1,
      onclick: () => go(1),
    }),
  );
}

function action(label, testid, onClick) {
  return el("button", { type: "button", className: "link", textContent: label, dataset: { testid }, onclick: onClick });
}

function showActions(message, view) {
  view.actions.replaceChildren();
  const sw = siblingSwitch(message);
  if (sw) view.actions.append(sw);
  if (current && current.messageId === message.id) return;
  if (message.role === "user") {
    view.actions.append(action("Edit", "edit", () => startEdit(message, view)));
  } else {
    view.actions.append(action("Copy", "copy", () => navigator.clipboard?.writeText(message.content)));
    const label = message.status === "failed" ? "Retry" : "Regenerate";
    view.actions.append(action(label, label.toLowerCase(), () => regenerate(message)));
  }
}

function statusLine(message) {
  if (message.status === "failed") return [message.error || "This answer failed.", "error"];
  if (message.status === "stopped") return ["Stopped.", "muted"];
  if (message.status === "queued") return ["Queued…", "muted"];
  if (message.status === "streaming") return ["Writing…", "muted"];
  if (message.role === "assistant" && message.status === "done") {
    const tps = message.tokens_per_second ? ` · ${message.tokens_per_second.toFixed(1)} tok/s` : "";
    return [`Done${tps}`, "muted"];
  }
  return ["", ""];
}

function drawMessage(message) {
  const view = messageView(message);
  view.addReasoning(message.reasoning);
  if (message.role === "user") {
    // what the person typed, exactly as typed: text, not markdown
    const body = view.article.querySelector(".content");
    body.replaceChildren();
    body.classList.add("plain");
    body.textContent = message.content;
  } else {
    view.content.set(message.content);
    view.content.finish();
  }
  view.setStatus(...statusLine(message));
  showActions(message, view);
  views.set(message.id, view);
  pane.append(view.article);
  return view;
}

function renderBranch() {
  views.clear();
  pane.replaceChildren();
  for (const message of branch()) drawMessage(message);
  highlightIn(pane);
  scrollDown();
  updateExports();
}

function refreshActions() {
  for (const message of branch()) {
    const view = views.get(message.id);
    if (view) showActions(message, view);
  }
}

function scrollDown() {
  pane.scrollTop = pane.scrollHeight;
}

function busy(on) {
  sendButton.disabled = on;
  stopButton.hidden = !on;
  refreshActions();
}

// --- editing and regenerating ---------------------------------------------------------

function startEdit(message, view) {
  if (current) return;
  const box = el("textarea", { value: message.content, rows: 3, dataset: { testid: "edit-input" } });
  const save = el("button", { type: "submit", textContent: "Save and send", dataset: { testid: "edit-send" } });
  const cancel = el("button", { type: "button", className: "secondary", textContent: "Cancel", onclick: () => renderBranch() });
  const editor = el("form", { className: "editor" }, box, el("div", { className: "editor-actions" }, save, cancel));
  editor.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!box.value.trim() || sending || current) return;
    pendingText = box.value;
    pendingFromComposer = false;
    send({ type: "send", content: box.value, edit_of: message.id });
  });
  view.article.querySelector(".content").replaceWith(editor);
  view.actions.replaceChildren();
  box.focus();
}

function regenerate(message) {
  if (current) return;
  send({ type: "regenerate", message_id: message.id });
}

// --- the websocket -------------------------------------------------------------------

function connect() {
  if (!conversation) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/chat/${conversation.id}/`);
  socket.addEventListener("open", () => {
    retry = 0;
    if (notice.classList.contains("muted")) say("");
    socket.dispatchEvent(new Event("ready"));
  });
  socket.addEventListener("message", (event) => handle(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    if ([4001, 4003, 4004].includes(event.code)) {
      say(event.code === 4004 ? "This conversation does not exist." : "You are signed out or not approved.");
      return;
    }
    retry += 1;
    const wait = Math.min(10_000, 500 * 2 ** retry);
    say(`Connection lost; reconnecting in ${Math.round(wait / 1000)} s…`, "muted");
    setTimeout(connect, wait);
  });
}

function send(frame) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    say("Not connected yet; try again in a moment.");
    return false;
  }
  if (frame.type !== "stop") {
    if (sending || current) return false; // one turn at a time
    sending = true;
  }
  say("");
  socket.send(JSON.stringify(frame));
  return true;
}

function viewOf(id) {
  return views.get(id);
}

function handle(event) {
  switch (event.type) {
    case "queued": {
      sending = false;
      if (!event.regenerate) {
        addMessage({ id: event.user_message_id, parent: event.user_parent_id, role: "user", content: pendingText ?? "", status: "done" });
        if (pendingFromComposer) prompt.value = "";
        pendingText = null;
      }
      addMessage({ id: event.message_id, parent: event.user_message_id, role: "assistant", status: "queued", model: event.model });
      current = { requestId: event.request_id, messageId: event.message_id };
      const appended = messages.get(event.user_message_id).parent === leaf && !event.regenerate;
      leaf = event.message_id;
      if (appended) {
        drawMessage(messages.get(event.user_message_id));
        drawMessage(messages.get(event.message_id));
        scrollDown();
        updateExports();
      } else {
        renderBranch();
      }
      if (event.title) setTitle(event.title);
      queueAhead = null;
      busy(true);
      break;
    }
    case "queue": {
      queueAhead = event.ahead;
      const view = viewOf(event.message_id);
      view?.setStatus(event.ahead ? `Waiting in the queue: ${event.ahead} ahead of you…` : "Next in the queue…", "muted");
      renderStatus();
      break;
    }
    case "resume": {
      const message = messages.get(event.message_id);
      if (!message) {
        location.reload(); // started elsewhere after this page loaded: fetch the tree again
        break;
      }
      message.content = event.content || "";
      message.reasoning = event.reasoning || "";
      message.status = "streaming";
      current = { requestId: event.request_id, messageId: event.message_id };
      leaf = event.message_id;
      renderBranch();
      viewOf(event.message_id)?.setStatus("Writing…", "muted");
      busy(true);
      break;
    }
    case "status":
      viewOf(event.message_id)?.setStatus(event.message, "muted");
      break;
    case "start": {
      queueAhead = null;
      const message = messages.get(event.message_id);
      if (message) message.status = "streaming";
      viewOf(event.message_id)?.setStatus("Writing…", "muted");
      renderStatus();
      break;
    }
    case "delta": {
      const message = messages.get(event.message_id);
      if (!message) break;
      const view = viewOf(event.message_id);
      if (event.reasoning) {
        message.reasoning += event.reasoning;
        view?.addReasoning(event.reasoning);
      }
      if (event.content) {
        message.content += event.content;
        view?.content.append(event.content);
      }
      if (view) scrollDown();
      break;
    }
    case "done": {
      const message = messages.get(event.message_id);
      if (message) {
        if (event.recovered) {
          message.content = event.content || "";
          message.reasoning = event.reasoning || "";
        }
        Object.assign(message, {
          status: event.status || "done",
          finish_reason: event.finish_reason,
          tokens_per_second: event.tokens_per_second,
          time_to_first_token_ms: event.time_to_first_token_ms,
        });
        if (event.usage && conversation) {
          conversation.totals.prompt_tokens += event.usage.prompt_tokens || 0;
          conversation.totals.completion_tokens += event.usage.completion_tokens || 0;
        }
        if (event.time_to_first_token_ms != null) {
          lastSpeed = { ttft: event.time_to_first_token_ms, tps: event.tokens_per_second };
        }
      }
      finishCurrent(event.message_id, Boolean(event.recovered));
      break;
    }
    case "error": {
      const message = event.message_id != null ? messages.get(event.message_id) : null;
      if (message && event.code !== "busy") {
        message.status = "failed";
        message.error = event.message;
        if (event.content) message.content = event.content;
        finishCurrent(event.message_id, Boolean(event.content));
      } else {
        if (event.message_id == null) sending = false; // the send was refused: nothing started
        say(event.message);
      }
      break;
    }
    case "ready":
      // After a reconnect: the answer this page was following finished while it was
      // away (nothing is active now). Ask for its stored outcome.
      if (current && event.active !== current.messageId) {
        socket.send(JSON.stringify({ type: "sync", message_id: current.messageId }));
      }
      break;
    case "title":
      setTitle(event.title);
      break;
    default:
      break;
  }
}

function finishCurrent(messageId, replaced) {
  const message = messages.get(messageId);
  const view = viewOf(messageId);
  if (current && current.messageId === messageId) current = null;
  queueAhead = null;
  if (view && message) {
    if (replaced) {
      // the stored text is the truth (an outcome this page missed while reconnecting)
      view.content.set(message.content);
      view.reasoning.set("");
      view.thinking.hidden = true;
      view.addReasoning(message.reasoning);
    }
    view.content.finish();
    view.setStatus(...statusLine(message));
  }
  busy(false);
  renderStatus();
  refreshStatus();
  setTimeout(refreshStatus, 2500); // the worker's next heartbeat says it is idle again
}

function setTitle(title) {
  if (!conversation || !title) return;
  conversation.title = title;
  titleEl.textContent = title;
  document.title = `${title} · chatweb`;
  sidebar.retitle(conversation.id, title);
}

// --- starting a conversation, sending ---------------------------------------------------

async function ensureConversation() {
  if (conversation) return;
  creating ??= createConversation().finally(() => {
    creating = null;
  });
  await creating;
}

async function createConversation() {
  const choice = modelSelect.value;
  const body = choice.startsWith("preset:") ? { preset: Number(choice.slice(7)) } : { model: choice };
  const panel = readParams();
  if (panel.changed) Object.assign(body, { params: panel.params, system_prompt: panel.system_prompt });
  const created = await postJSON("/c/new", body);
  conversation = created;
  history.replaceState(null, "", created.url);
  sidebar.currentId = created.id;
  sidebar.prepend({ id: created.id, title: created.title });
  fillModels();
  fillParams();
  updateExports();
  connect();
  const opening = socket;
  await new Promise((resolve, reject) => {
    opening.addEventListener("ready", resolve, { once: true });
    opening.addEventListener("close", () => reject(new Error("Could not connect; try again.")), { once: true });
  });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = prompt.value;
  if (!text.trim() || current || sending) return;
  try {
    await ensureConversation();
  } catch (error) {
    say(error.message);
    return;
  }
  if (sending || current) return;
  pendingText = text;
  pendingFromComposer = true;
  send({ type: "send", content: text, parent_id: leaf });
});

prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});

stopButton.addEventListener("click", () => {
  if (current) send({ type: "stop", request_id: current.requestId });
});

// --- model picker, parameters, exports, status bar ------------------------------------------

function fillModels() {
  const selected = conversation ? conversation.model : modelSelect.value;
  modelSelect.replaceChildren();
  const group = el("optgroup", { label: "Models" });
  for (const m of choices.models) {
    const label = `${m.display_name}${m.description ? ` — ${m.description}` : ""}${m.available ? "" : ` (unavailable: ${m.reason})`}`;
    group.append(el("option", { value: m.name, textContent: label, disabled: !m.available && m.name !== selected }));
  }
  modelSelect.append(group);
  if (!conversation && choices.presets.length) {
    const presets = el("optgroup", { label: "Presets" });
    for (const p of choices.presets) {
      const m = modelInfo(p.model);
      const label = `${p.name}${p.description ? ` — ${p.description}` : ""}${m && !m.available ? " (unavailable)" : ""}`;
      presets.append(el("option", { value: `preset:${p.id}`, textContent: label, disabled: m ? !m.available : true }));
    }
    modelSelect.append(presets);
  }
  if (!choices.models.length) {
    modelSelect.append(el("option", { value: "", textContent: "No model is configured", disabled: true, selected: true }));
  }
  const options = [...modelSelect.options];
  const keep = options.find((o) => o.value === selected) ?? options.find((o) => !o.disabled);
  if (keep) modelSelect.value = keep.value;
}

modelSelect.addEventListener("change", async () => {
  fillParams();
  if (!conversation) return;
  try {
    conversation = { ...conversation, ...(await postJSON(`/c/${conversation.id}/settings`, { model: modelSelect.value })) };
    renderStatus();
  } catch (error) {
    say(error.message);
    modelSelect.value = conversation.model;
  }
});

const PARAMS = ["temperature", "top_p", "max_tokens", "repetition_penalty", "reasoning_effort"];

function fillParams() {
  const model = modelInfo(currentModelName());
  const stored = conversation?.params ?? {};
  for (const name of PARAMS) {
    const input = paramsForm.elements[name];
    input.value = stored[name] ?? "";
    if (input.tagName === "INPUT") input.placeholder = model?.defaults?.[name] ?? "";
  }
  paramsForm.elements.system_prompt.value = conversation?.system_prompt ?? "";
  for (const node of paramsForm.querySelectorAll("[data-harmony-only]")) node.hidden = !model?.harmony;
  paramsNote.textContent = model ? `Empty fields use ${model.display_name}'s defaults.` : "";
}

function readParams() {
  const params = {};
  let changed = false;
  for (const name of PARAMS) {
    const value = paramsForm.elements[name].value.trim();
    if (value === "") continue;
    params[name] = name === "reasoning_effort" ? value : Number(value);
    changed = true;
  }
  const system_prompt = paramsForm.elements.system_prompt.value;
  return { params, system_prompt, changed: changed || system_prompt !== "" };
}

paramsForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const { params, system_prompt } = readParams();
  if (!conversation) {
    paramsNote.textContent = "Kept for this new chat; saved when you send the first message.";
    return;
  }
  try {
    conversation = { ...conversation, ...(await postJSON(`/c/${conversation.id}/settings`, { params, system_prompt })) };
    paramsNote.textContent = "Saved for this conversation.";
  } catch (error) {
    paramsNote.textContent = error.message;
  }
});

$("params-reset").addEventListener("click", () => {
  for (const name of PARAMS) paramsForm.elements[name].value = "";
  paramsForm.requestSubmit();
});

function updateExports() {
  exportLinks.box.hidden = !conversation;
  if (!conversation) return;
  exportLinks.md.href = `/c/${conversation.id}/export.md${leaf ? `?leaf=${leaf}` : ""}`;
  exportLinks.json.href = `/c/${conversation.id}/export.json`;
}

function renderStatus() {
  const model = modelInfo(currentModelName());
  let state;
  if (!model) state = "No model";
  else if (!model.available) state = `${model.display_name}: ${model.reason}`;
  else if (queueAhead != null) state = `${model.display_name}: in the queue, ${queueAhead} ahead`;
  else state = `${model.display_name}: ${model.state}${model.waiting ? `, ${model.waiting} waiting` : ""}`;
  bar.model.textContent = state;
  bar.memory.textContent = model?.memory_total ? `Memory ${fmtBytes(model.memory_used)} / ${fmtBytes(model.memory_total)}` : "";
  const totals = conversation?.totals;
  bar.tokens.textContent = totals ? `Tokens in ${totals.prompt_tokens.toLocaleString()} · out ${totals.completion_tokens.toLocaleString()}` : "";
  bar.speed.textContent =
    lastSpeed && lastSpeed.ttft != null
      ? `Last answer: first token ${Math.round(lastSpeed.ttft)} ms · ${lastSpeed.tps ? lastSpeed.tps.toFixed(1) : "?"} tok/s`
      : "";
}

async function refreshStatus() {
  try {
    choices = await getJSON("/models/status");
    const selected = modelSelect.value;
    fillModels();
    if ([...modelSelect.options].some((o) => o.value === selected && !o.disabled)) modelSelect.value = selected;
    renderStatus();
  } catch {
    // a blip: the next poll tries again
  }
}

// --- start --------------------------------------------------------------------------------

const sidebar = new Sidebar({
  list: $("conversation-list"),
  more: $("more"),
  search: $("search"),
  initial: data.sidebar,
  currentId: conversation?.id,
  say,
  onDeleted: (id) => {
    if (conversation && id === conversation.id) location.assign("/");
  },
  onRenamed: (id, title) => {
    if (conversation && id === conversation.id) setTitle(title);
  },
});

for (const message of data.messages) addMessage(message);
if (data.messages.length) {
  const latest = data.messages.reduce((a, b) => (a.id > b.id ? a : b));
  leaf = latest.id;
}
fillModels();
fillParams();
renderBranch();
const lastDone = branch().filter((m) => m.role === "assistant" && m.time_to_first_token_ms != null).pop();
if (lastDone) lastSpeed = { ttft: lastDone.time_to_first_token_ms, tps: lastDone.tokens_per_second };
renderStatus();
connect();
setInterval(() => {
  if (document.visibilityState === "visible") refreshStatus();
}, 10_000);
