// The chat page: one websocket per conversation, answers rendered as they stream.
// Each concern lives in its own module under chat/; this one starts them in order.
import "./chat/composer.js";
import { handle } from "./chat/events.js";
import { renderBranch } from "./chat/messages.js";
import { fillModels, fillParams, onModelChange } from "./chat/settings.js";
import { connect, onServerEvent } from "./chat/socket.js";
import { addMessage, branch, data, state } from "./chat/state.js";
import { pollStatus, renderStatus, speedOf } from "./chat/statusbar.js";
import { Drawer } from "./drawer.js";

new Drawer({ layout: document.querySelector("[data-testid=chat]"), toggle: document.getElementById("drawer-toggle") });

for (const message of data.messages) addMessage(message);
if (data.messages.length) {
  const latest = data.messages.reduce((a, b) => (a.id > b.id ? a : b));
  state.leaf = latest.id;
}
onModelChange(renderStatus);
fillModels();
fillParams();
renderBranch();
const lastDone = branch().filter((m) => m.role === "assistant" && m.time_to_first_token_ms != null).pop();
if (lastDone) state.lastSpeed = speedOf(lastDone);
renderStatus();
onServerEvent(handle);
connect();
pollStatus();
