// Where the conversation is named: the heading, the tab's title, its entry in the
// sidebar, and the export links.
import { Sidebar } from "../sidebar.js";
import { $, say } from "./dom.js";
import { data, state } from "./state.js";

const titleEl = $("title");
const exportLinks = { box: $("exports"), md: $("export-md"), json: $("export-json") };

export function setTitle(title) {
  if (!state.conversation || !title) return;
  state.conversation.title = title;
  titleEl.textContent = title;
  document.title = `${title} · chatweb`;
  sidebar.retitle(state.conversation.id, title);
}

export function updateExports() {
  const { conversation, leaf } = state;
  exportLinks.box.hidden = !conversation;
  if (!conversation) return;
  exportLinks.md.href = `/c/${conversation.id}/export.md${leaf ? `?leaf=${leaf}` : ""}`;
  exportLinks.json.href = `/c/${conversation.id}/export.json`;
}

export const sidebar = new Sidebar({
  list: $("conversation-list"),
  more: $("more"),
  search: $("search"),
  initial: data.sidebar,
  currentId: state.conversation?.id,
  say,
  onDeleted: (id) => {
    if (state.conversation && id === state.conversation.id) location.assign("/");
  },
  onRenamed: (id, title) => {
    if (state.conversation && id === state.conversation.id) setTitle(title);
  },
});
