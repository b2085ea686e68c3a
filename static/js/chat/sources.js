// An answer's sources (the passages the search of the person's files gave it): the [n]
// the model wrote become buttons, and a button opens a small panel with the file's name,
// the page, the heading and the passage itself. Names and passages came from uploaded
// files and the answer from the model: all of it goes in as text, never as markup.
import { _, fmt } from "../i18n.js";
import { downloadUrl } from "./documents.js";
import { el } from "./dom.js";

// A message's sources: stored with it, or (while it is written) those of its search step.
export function sourcesOf(message) {
  if (Array.isArray(message?.sources) && message.sources.length) return message.sources;
  const step = (message?.tool_steps || []).find((s) => s && s.kind === "knowledge");
  return Array.isArray(step?.sources) ? step.sources : [];
}

// "report.pdf, page 3 (Results > Costs)", as conversations/builtin/steps.py source_label says it.
export function sourceLabel(source) {
  let label = String(source.name ?? "");
  if (source.page) label += `, ${fmt(_("page %(page)s"), { page: source.page })}`;
  if (source.heading) label += ` (${source.heading})`;
  return label;
}

// [1], and lists like [1, 2] or [1][2]: each number a source of this message.
const CITE = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;

function sourceButton(source) {
  const button = el("button", {
    type: "button",
    className: "source-ref",
    textContent: `[${source.n}]`,
    title: sourceLabel(source),
    dataset: { testid: "source-citation", n: String(source.n) },
  });
  button.setAttribute("aria-label", fmt(_("Source %(n)s: %(label)s"), { n: source.n, label: sourceLabel(source) }));
  button.setAttribute("aria-haspopup", "dialog");
  button.setAttribute("aria-expanded", "false");
  button.addEventListener("click", (event) => {
    event.preventDefault();
    openSource(source, button);
  });
  return button;
}

// Turns the citations in `root`'s text into buttons. Runs over text nodes only (not inside
// code, links or a button already made), so running it again changes nothing.
export function linkSources(root, sources) {
  if (!sources?.length) return;
  const byNumber = new Map();
  for (const source of sources) {
    if (source && Number.isInteger(source.n)) byNumber.set(source.n, source);
  }
  if (!byNumber.size) return;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement?.closest("a, code, pre, button")) continue;
    if (node.nodeValue.includes("[")) nodes.push(node);
  }
  for (const node of nodes) {
    const text = node.nodeValue;
    const out = [];
    let last = 0;
    for (const match of text.matchAll(CITE)) {
      const numbers = match[1].split(",").map((n) => Number(n.trim()));
      if (!numbers.every((n) => byNumber.has(n))) continue; // [3] with no source 3 stays text
      out.push(text.slice(last, match.index));
      for (const n of numbers) out.push(sourceButton(byNumber.get(n)));
      last = match.index + match[0].length;
    }
    if (!out.length) continue;
    out.push(text.slice(last));
    node.replaceWith(...out);
  }
}

// --- the panel -------------------------------------------------------------------------

let panel = null;
let opener = null;

function closePanel({ focus = true } = {}) {
  if (!panel || panel.hidden) return;
  panel.hidden = true;
  if (opener) {
    opener.setAttribute("aria-expanded", "false");
    if (focus && opener.isConnected) opener.focus({ preventScroll: true });
  }
  opener = null;
}

function makePanel() {
  const box = el("div", { className: "source-panel", hidden: true, tabIndex: -1, dataset: { testid: "source-panel" } });
  box.setAttribute("role", "dialog");
  box.setAttribute("aria-labelledby", "source-panel-title");
  document.body.append(box);
  // (on the window, capturing: before the drawer's own Escape, which then leaves it alone)
  window.addEventListener(
    "keydown",
    (event) => {
      if (event.key === "Escape" && !box.hidden) {
        event.preventDefault(); // the panel's, not the drawer's behind it
        closePanel();
      }
    },
    true,
  );
  document.addEventListener("pointerdown", (event) => {
    if (box.hidden || box.contains(event.target) || event.target.closest?.(".source-ref, .step-source")) return;
    closePanel({ focus: false });
  });
  window.addEventListener("resize", () => closePanel({ focus: false }));
  // the answer scrolled under it: the panel follows its button (or goes, with the button)
  document.addEventListener(
    "scroll",
    (event) => {
      if (box.hidden || box.contains(event.target)) return;
      if (opener?.isConnected) place(box, opener);
      else closePanel({ focus: false });
    },
    true,
  );
  return box;
}

function place(box, anchor) {
  if (window.matchMedia("(max-width: 48rem)").matches) {
    box.style.left = box.style.top = ""; // a sheet at the bottom of the screen (the stylesheet)
    return;
  }
  const rect = anchor.getBoundingClientRect();
  const width = box.offsetWidth;
  const height = box.offsetHeight;
  const margin = 8;
  let left = rect.left;
  left = Math.max(margin, Math.min(left, window.innerWidth - width - margin));
  let top = rect.bottom + 6;
  if (top + height > window.innerHeight - margin && rect.top - height - 6 > margin) top = rect.top - height - 6;
  box.style.left = `${Math.round(left + window.scrollX)}px`;
  box.style.top = `${Math.round(top + window.scrollY)}px`;
}

export function openSource(source, anchor) {
  panel ??= makePanel();
  if (!panel.hidden && opener === anchor) {
    closePanel();
    return;
  }
  closePanel({ focus: false });
  const close = el("button", {
    type: "button",
    className: "icon source-close",
    textContent: "×",
    title: _("Close"),
    dataset: { testid: "source-close" },
    onclick: () => closePanel(),
  });
  close.setAttribute("aria-label", _("Close"));
  const where = [];
  if (source.page) where.push(el("span", { textContent: fmt(_("page %(page)s"), { page: source.page }), dataset: { testid: "source-page" } }));
  if (source.heading) where.push(el("span", { textContent: String(source.heading), dataset: { testid: "source-heading" } }));
  const parts = [
    el(
      "div",
      { className: "source-head" },
      el("span", { className: "source-number", textContent: `[${source.n}]` }),
      el("strong", { id: "source-panel-title", textContent: String(source.name ?? ""), dataset: { testid: "source-name" } }),
      close,
    ),
  ];
  if (where.length) parts.push(el("div", { className: "source-where muted" }, ...where));
  parts.push(el("blockquote", { className: "source-text", textContent: String(source.text ?? ""), dataset: { testid: "source-text" } }));
  if (Number.isInteger(source.document_id)) {
    parts.push(
      el("a", {
        className: "source-download",
        href: downloadUrl(source.document_id),
        download: "",
        textContent: _("Download the file"),
        dataset: { testid: "source-download" },
      }),
    );
  }
  panel.replaceChildren(...parts);
  panel.hidden = false;
  opener = anchor;
  anchor.setAttribute("aria-expanded", "true");
  place(panel, anchor);
  panel.focus({ preventScroll: true });
}
