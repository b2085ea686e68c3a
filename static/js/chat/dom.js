// Small helpers for the chat page's modules: elements by id, building elements, the notice line.
export const $ = (id) => document.getElementById(id);

const notice = $("notice");

export function say(text, kind = "error") {
  notice.hidden = !text;
  notice.textContent = text || "";
  notice.className = `notice ${kind}`;
}

// True while the notice shows a passing state (reconnecting), not an error the person must read.
export const sayingMuted = () => notice.classList.contains("muted");

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

export function fmtBytes(n) {
  if (!n) return "?";
  const gib = n / 2 ** 30;
  return gib >= 1 ? `${gib.toFixed(1)} GiB` : `${Math.round(n / 2 ** 20)} MiB`;
}
