// The chat page: one websocket per conversation, answers rendered as they stream.
import { StreamingMarkdown, highlightIn } from "./markdown.js";

const data = JSON.parse(document.getElementById("page-data").textContent);
const pane = document.getElementById("messages");
const form = document.getElementById("composer");
const prompt = document.getElementById("prompt");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const notice = document.getElementById("notice");
const modelSelect = document.getElementById("model");

let conversationId = data.conversation_id;
let socket = null;
let retry = 0;
let current = null; // {requestId, messageId, view}
const views = new Map(); // message id -> view

function csrfToken() {
  return document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] ?? "";
}

function say(text, kind = "error") {
  notice.hidden = !text;
  notice.textContent = text || "";
  notice.className = `notice ${kind}`;
}

function messageView(role, id) {
  const article = document.createElement("article");
  article.className = `message ${role}`;
  article.dataset.testid = `message-${role}`;
  const thinking = document.createElement("details");
  thinking.className = "thinking";
  thinking.hidden = true;
  const summary = document.createElement("summary");
  summary.textContent = "Thinking";
  const reasoning = document.createElement("div");
  reasoning.className = "reasoning";
  thinking.append(summary, reasoning);
  const body = document.createElement("div");
  body.className = "content";
  body.dataset.testid = "content";
  const status = document.createElement("div");
  status.className = "status";
  article.append(thinking, body, status);
  pane.append(article);
  const view = {
    article,
    content: new StreamingMarkdown(body),
    reasoning: new StreamingMarkdown(reasoning),
    thinking,
    status,
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
  if (id) views.set(id, view);
  return view;
}

function renderStored(message) {
  const view = messageView(message.role, message.id);
  if (message.role === "user") {
    view.content.set(message.content);
  } else {
    view.addReasoning(message.reasoning);
    view.content.set(message.content);
    view.content.finish();
    if (message.status === "failed") view.setStatus(message.error || "This answer failed.", "error");
    if (message.status === "stopped") view.setStatus("Stopped.", "muted");
  }
  return view;
}

function scrollDown() {
  pane.scrollTop = pane.scrollHeight;
}

function busy(on) {
  sendButton.disabled = on;
  stopButton.hidden = !on;
}

function connect() {
  if (!conversationId) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/chat/${conversationId}/`);
  socket.addEventListener("open", () => {
    retry = 0;
    say("");
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

function handle(event) {
  switch (event.type) {
    case "queued": {
      current = { requestId: event.request_id, messageId: event.message_id, view: messageView("assistant", event.message_id) };
      current.view.setStatus("Queued…", "muted");
      busy(true);
      break;
    }
    case "resume": {
      const view = views.get(event.message_id) ?? messageView("assistant", event.message_id);
      view.content.set(event.content || "");
      view.reasoning.set("");
      view.addReasoning(event.reasoning);
      view.setStatus("Writing…", "muted");
      current = { requestId: event.request_id, messageId: event.message_id, view };
      busy(true);
      break;
    }
    case "status":
      current?.view.setStatus(event.message, "muted");
      break;
    case "start":
      current?.view.setStatus("Writing…", "muted");
      break;
    case "delta":
      if (!current) break;
      current.view.addReasoning(event.reasoning);
      if (event.content) current.view.content.append(event.content);
      scrollDown();
      break;
    case "done": {
      if (!current) break;
      const view = current.view;
      if (event.recovered) view.content.set(event.content || "");
      view.content.finish();
      const tps = event.tokens_per_second ? ` · ${event.tokens_per_second.toFixed(1)} tok/s` : "";
      view.setStatus(event.status === "stopped" ? "Stopped." : `Done${tps}`, "muted");
      current = null;
      busy(false);
      break;
    }
    case "error":
      if (current && (event.message_id === current.messageId || event.message_id == null)) {
        current.view.setStatus(event.message, "error");
        if (event.code !== "busy") {
          current = null;
          busy(false);
        }
      } else {
        say(event.message);
      }
      break;
    default:
      break;
  }
}

async function ensureConversation() {
  if (conversationId) return;
  const response = await fetch("/c/new", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify({ model: modelSelect.value }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || "Could not start a conversation.");
  conversationId = body.id;
  history.replaceState(null, "", body.url);
  modelSelect.disabled = true;
  connect();
  await new Promise((resolve) => socket.addEventListener("ready", resolve, { once: true }));
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = prompt.value;
  if (!text.trim()) return;
  try {
    await ensureConversation();
  } catch (error) {
    say(error.message);
    return;
  }
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    say("Not connected yet; try again in a moment.");
    return;
  }
  const view = messageView("user");
  view.content.set(text);
  scrollDown();
  prompt.value = "";
  socket.send(JSON.stringify({ type: "send", content: text }));
});

prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});

stopButton.addEventListener("click", () => {
  if (current && socket?.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "stop", request_id: current.requestId }));
  }
});

for (const message of data.messages) renderStored(message);
highlightIn(pane);
scrollDown();
connect();
