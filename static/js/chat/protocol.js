// The socket's names, as the server defines them (conversations/socket_protocol.py hands
// them to the page): event kinds, the frames the page sends, close codes.
import { data } from "./state.js";

export const EVENT = Object.freeze(data.protocol.event);
export const FRAME = Object.freeze(data.protocol.frame);
export const CLOSE = Object.freeze(data.protocol.close);
