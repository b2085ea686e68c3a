// The branch on screen: one view per message, redrawn from the tree, with ‹ 1/2 ›
// switches where a message has siblings, and each message's actions (edit and
// resend a question; copy, regenerate or retry an answer).
import { _, fmt } from "../i18n.js";
import { StreamingMarkdown, highlightIn } from "../markdown.js";
import { $, el } from "./dom.js";
import { updateExports } from "./header.js";
import { FRAME } from "./protocol.js";
import { send } from "./socket.js";
import { linkSources, sourcesOf } from "./sources.js";
import { branch, children, newestLeafUnder, state } from "./state.js";
import { StepList, linkCitations } from "./steps.js";

const pane = $("messages");
const sendButton = $("send");
const stopButton = $("stop");
const views = new Map(); // id -> view of a message on screen

export const viewOf = (id) => views.get(id);

function messageView(message) {
  const thinking = el("details", { className: "thinking", hidden: true }, el("summary", { textContent: _("Thinking") }));
  const reasoningBox = el("div", { className: "reasoning", dataset: { testid: "reasoning" } });
  thinking.append(reasoningBox);
  const stepsBox = el("div", { className: "steps", hidden: true, dataset: { testid: "steps" } });
  const body = el("div", { className: "content", dataset: { testid: "content" } });
  const status = el("div", { className: "status", dataset: { testid: "status" } });
  const actions = el("div", { className: "actions" });
  const article = el(
    "article",
    { className: `message ${message.role}`, dataset: { testid: `message-${message.role}`, id: message.id } },
    thinking,
    stepsBox,
    body,
    status,
    actions,
  );
  const view = {
    article,
    thinking,
    status,
    actions,
    content: Object.assign(new StreamingMarkdown(body), {
      // [n] a button to its passage as soon as it is drawn (the search's step comes first)
      decorate: (part) => linkSources(part, sourcesOf(message)),
    }),
    reasoning: new StreamingMarkdown(reasoningBox),
    steps: new StepList(stepsBox),
    setStatus(text, kind = "") {
      status.textContent = text;
      status.className = `status ${kind}`;
    },
    // The answer is done: fold its steps and link its citations to the pages and passages they name.
    settle(message) {
      view.content.finish();
      view.steps.fold();
      linkCitations(body, message.tool_steps);
      linkSources(body, sourcesOf(message));
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
    if (!target || state.current) return;
    state.leaf = newestLeafUnder(target);
    renderBranch();
  };
  return el(
    "span",
    { className: "siblings", dataset: { testid: "siblings" } },
    el("button", { type: "button", className: "icon", textContent: "‹", title: _("Previous version"), disabled: index === 0, onclick: () => go(-1) }),
    el("span", { textContent: `${index + 1}/${siblings.length}` }),
    el("button", {
      type: "button",
      className: "icon",
      textContent: "›",
      title: _("Next version"),
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
  if (state.current && state.current.messageId === message.id) return;
  if (message.role === "user") {
    view.actions.append(action(_("Edit"), "edit", () => startEdit(message, view)));
  } else {
    view.actions.append(action(_("Copy"), "copy", () => navigator.clipboard?.writeText(message.content)));
    const [label, testid] = message.status === "failed" ? [_("Retry"), "retry"] : [_("Regenerate"), "regenerate"];
    view.actions.append(action(label, testid, () => regenerate(message)));
  }
}

export function statusLine(message) {
  if (message.status === "failed") return [message.error || _("This answer failed."), "error"];
  if (message.status === "stopped") return [_("Stopped."), "muted"];
  if (message.status === "queued") return [_("Queued…"), "muted"];
  if (message.status === "streaming") return [_("Writing…"), "muted"];
  if (message.role === "assistant" && message.status === "done") {
    const tps = message.tokens_per_second;
    return [tps ? fmt(_("Done · %(speed)s tok/s"), { speed: tps.toFixed(1) }) : _("Done"), "muted"];
  }
  return ["", ""];
}

export function drawMessage(message) {
  const view = messageView(message);
  view.addReasoning(message.reasoning);
  if (message.role === "user") {
    // what the person typed, exactly as typed: text, not markdown
    const body = view.article.querySelector(".content");
    body.replaceChildren();
    body.classList.add("plain");
    body.textContent = message.content;
  } else {
    view.steps.set(message.tool_steps);
    view.content.set(message.content);
    if (message.status === "queued" || message.status === "streaming") view.content.finish();
    else view.settle(message);
  }
  view.setStatus(...statusLine(message));
  showActions(message, view);
  views.set(message.id, view);
  pane.append(view.article);
  return view;
}

export function renderBranch() {
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

export function scrollDown() {
  pane.scrollTop = pane.scrollHeight;
}

export function busy(on) {
  sendButton.disabled = on;
  stopButton.hidden = !on;
  refreshActions();
}

// --- editing and regenerating ---------------------------------------------------------

function startEdit(message, view) {
  if (state.current) return;
  const box = el("textarea", { value: message.content, rows: 3, dataset: { testid: "edit-input" } });
  const save = el("button", { type: "submit", textContent: _("Save and send"), dataset: { testid: "edit-send" } });
  const cancel = el("button", { type: "button", className: "secondary", textContent: _("Cancel"), onclick: () => renderBranch() });
  const editor = el("form", { className: "editor" }, box, el("div", { className: "editor-actions" }, save, cancel));
  editor.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!box.value.trim() || state.sending || state.current) return;
    state.pendingText = box.value;
    state.pendingFromComposer = false;
    send({ type: FRAME.SEND, content: box.value, edit_of: message.id });
  });
  view.article.querySelector(".content").replaceWith(editor);
  view.actions.replaceChildren();
  box.focus();
}

function regenerate(message) {
  if (state.current) return;
  send({ type: FRAME.REGENERATE, message_id: message.id });
}
