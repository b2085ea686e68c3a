// The composer: Enter sends (Shift+Enter is a new line), Stop stops; the first
// message of a new chat creates the conversation and opens its socket first.
import { _, fmt } from "../i18n.js";
import { unready } from "./attachments.js";
import { ensureConversation } from "./conversation.js";
import { $, say } from "./dom.js";
import { FRAME } from "./protocol.js";
import { send } from "./socket.js";
import { state } from "./state.js";

const form = $("composer");
const prompt = $("prompt");
const stopButton = $("stop");

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
  if (!send({ type: FRAME.SEND, content: text, parent_id: state.leaf })) return;
  // The answer searches the files that are ready now; say which ones it cannot yet.
  const waiting = unready();
  if (waiting.length) {
    say(fmt(_("Still being read, so not searched for this answer: %(names)s."), { names: waiting.join(", ") }), "muted");
  }
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
