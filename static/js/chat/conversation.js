// A new chat becomes a conversation on its first message, or its first attached file:
// created with the model, parameters and tools chosen so far, its address put in the
// location bar and the sidebar, and its socket opened. Other modules hear of it through
// onCreated (the composer's attachments save the collections picked before it existed).
import { postJSON } from "../http.js";
import { _ } from "../i18n.js";
import { sidebar, updateExports } from "./header.js";
import { fillModels, fillParams, modelChoice, readParams, readTools } from "./settings.js";
import { connect } from "./socket.js";
import { state } from "./state.js";

let creating = null; // the promise of the /c/new call in flight
const listeners = [];

export function onCreated(listener) {
  listeners.push(listener);
}

export async function ensureConversation() {
  if (state.conversation) return state.conversation;
  creating ??= createConversation().finally(() => {
    creating = null;
  });
  await creating;
  return state.conversation;
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
  const ready = new Promise((resolve, reject) => {
    opening.addEventListener("ready", resolve, { once: true });
    opening.addEventListener("close", () => reject(new Error(_("Could not connect; try again."))), { once: true });
  });
  await Promise.all([ready, ...listeners.map((listener) => listener(created))]);
}
