// What the chat page knows: the conversation, the model choices, the answer being
// followed, and the message tree.
//
// Messages form a tree (a regenerated answer or an edited question is a sibling
// branch); the page shows one branch, ending at `state.leaf`. The `messages` map is
// the truth; views are redrawn from it. One object holds the fields the modules
// change, since an imported binding cannot be assigned.
export const data = JSON.parse(document.getElementById("page-data").textContent);

export const state = {
  conversation: data.conversation, // null until the first message
  choices: data.choices,
  current: null, // the answer being written: {requestId, messageId}
  lastSpeed: null, // {ttft, tps} of the last answer
  queueAhead: null,
  leaf: null, // the last message of the branch on screen
  pendingText: null, // the text of a send until the server acknowledges it ("queued")
  pendingFromComposer: false,
  sending: false, // a send / regenerate frame is out and not yet acknowledged
};

export const messages = new Map(); // id -> {id, parent, role, content, reasoning, status, error, ...}

export function children(parentId) {
  return [...messages.values()].filter((m) => m.parent === parentId).sort((a, b) => a.id - b.id);
}

export function newestLeafUnder(message) {
  let node = message;
  for (;;) {
    const kids = children(node.id);
    if (!kids.length) return node.id;
    node = kids[kids.length - 1];
  }
}

export function branch() {
  const chain = [];
  let node = state.leaf != null ? messages.get(state.leaf) : null;
  while (node) {
    chain.push(node);
    node = node.parent != null ? messages.get(node.parent) : null;
  }
  return chain.reverse();
}

export function addMessage(message) {
  messages.set(message.id, { content: "", reasoning: "", error: "", ...message });
  return messages.get(message.id);
}

export function modelInfo(name) {
  return state.choices.models.find((m) => m.name === name);
}
