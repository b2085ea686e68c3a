// The conversation's websocket: connect, reconnect with a growing wait, send one turn at a time.
import { _, fmt } from "../i18n.js";
import { say, sayingMuted } from "./dom.js";
import { CLOSE, FRAME } from "./protocol.js";
import { state } from "./state.js";

let socket = null;
let retry = 0;
let onEvent = () => {};

// Set once at start: what to do with each event the server sends.
export function onServerEvent(handler) {
  onEvent = handler;
}

// Opens the socket of the current conversation; the returned socket fires "ready" once open.
export function connect() {
  if (!state.conversation) return null;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const opening = new WebSocket(`${scheme}://${location.host}/ws/chat/${state.conversation.id}/`);
  socket = opening;
  opening.addEventListener("open", () => {
    retry = 0;
    if (sayingMuted()) say("");
    opening.dispatchEvent(new Event("ready"));
  });
  opening.addEventListener("message", (event) => onEvent(JSON.parse(event.data)));
  opening.addEventListener("close", (event) => {
    if (Object.values(CLOSE).includes(event.code)) {
      say(event.code === CLOSE.NOT_FOUND ? _("This conversation does not exist.") : _("You are signed out or not approved."));
      return;
    }
    retry += 1;
    const wait = Math.min(10_000, 500 * 2 ** retry);
    say(fmt(_("Connection lost; reconnecting in %(seconds)s s…"), { seconds: Math.round(wait / 1000) }), "muted");
    setTimeout(connect, wait);
  });
  return opening;
}

export function send(frame) {
  const connecting = socket && socket.readyState === WebSocket.CONNECTING;
  if (!socket || (socket.readyState !== WebSocket.OPEN && !connecting)) {
    say(_("Not connected yet; try again in a moment."));
    return false;
  }
  if (frame.type !== FRAME.STOP) {
    if (state.sending || state.current) return false; // one turn at a time
    state.sending = true;
  }
  say("");
  if (connecting) {
    // Sent in the moment the socket opens (a reload, or a reconnect still under way),
    // rather than dropped: the person pressed Send once and should not have to again.
    const opening = socket;
    const closedFirst = () => {
      opening.removeEventListener("open", sendOnOpen);
      if (frame.type !== FRAME.STOP) state.sending = false;
    };
    const sendOnOpen = () => {
      opening.removeEventListener("close", closedFirst);
      opening.send(JSON.stringify(frame));
    };
    opening.addEventListener("open", sendOnOpen, { once: true });
    opening.addEventListener("close", closedFirst, { once: true });
    return true;
  }
  socket.send(JSON.stringify(frame));
  return true;
}

// Asks for the stored outcome of an answer (outside the one-turn rule: it starts nothing).
export function requestSync(messageId) {
  socket.send(JSON.stringify({ type: FRAME.SYNC, message_id: messageId }));
}
