// The composer: Enter sends (Shift+Enter is a new line), Stop stops; the first
// message of a new chat creates the conversation and opens its socket first.
import { postJSON } from "../http.js";
import { _ } from "../i18n.js";
import { $, say } from "./dom.js";
import { sidebar, updateExports } from "./header.js";
import { fillModels, fillParams, modelChoice, readParams, readTools } from "./settings.js";
import { FRAME } from "./protocol.js";
import { connect, send } from "./socket.js";
import { state } from "./state.js";

const form = $("composer");
const prompt = $("prompt");
const stopButton = $("stop");
let creating = null; // the promise of the /c/new call in flight

async function ensureConversation() {
  if (state.conversation) return;
  creating ??= createConversation().finally(() => {
    creating = null;
  });
  await creating;
}

async function createConversation() {
  const choice = modelChoice();
  const body = choice.startsWith("preset:") ? { preset: Number(choice.slice(7)) } : { model: choice };
  const panel = readParams();
  if (panel.changed) Object.assign(body, { params: panel.params, system_prompt: panel.system_prompt });
  const tools = readTools();
  if (tools.length) body.builtin_tools = tools;
  const created = await postJSON("/c/new", body);
  state.conversation = created;
  history.replaceState(null, "", created.url);
  sidebar.currentId = created.id;
  sidebar.prepend({ id: created.id, title: created.title });
  fillModels();
  fillParams();
  updateExports();
  const opening = connect();
  await new Promise((resolve, reject) => {
    opening.addEventListener("ready", resolve, { once: true });
    opening.addEventListener("close", () => reject(new Error(_("Could not connect; try again."))), { once: true });
  });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = prompt.value;
  if (!text.trim() || state.current || state.sending) return;
  try {
    await ensureConversation();
  } catch (error) {
    say(error.message);
    return;
  }
  if (state.sending || state.current) return;
  state.pendingText = text;
  state.pendingFromComposer = true;
  send({ type: FRAME.SEND, content: text, parent_id: state.leaf });
});

prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});

stopButton.addEventListener("click", () => {
  if (state.current) send({ type: FRAME.STOP, request_id: state.current.requestId });
});
