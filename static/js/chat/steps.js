// An answer's built-in tool steps (a search, a page read, python run), one collapsible
// block each: open while it runs, folded once the answer is done. Everything in a step
// came from the model, a web page or the sandbox: it goes in as text, never as markup.
// The headline says what conversations/builtin/steps.py says for the export. The search of
// the person's files ("knowledge") is a step too: its sources are listed under it.
import { _, fmt, ngettext } from "../i18n.js";
import { el } from "./dom.js";
import { openSource, sourceLabel } from "./sources.js";

const WEB = /^https?:\/\//i;

// "Searched 3 files: 5 passages", as steps.py knowledge_headline says it.
function knowledgeHeadline(step) {
  const files = Number.parseInt(step.files, 10) || 0;
  const passages = Number.parseInt(step.passages, 10) || 0;
  return fmt(_("Searched %(files)s: %(passages)s"), {
    files: fmt(ngettext("%(count)s file", "%(count)s files", files), { count: files }),
    passages: fmt(ngettext("%(count)s passage", "%(count)s passages", passages), { count: passages }),
  });
}

function headline(step) {
  let text;
  const running = step.status === "running";
  if (step.kind === "knowledge") {
    text = running ? _("Searching your files…") : knowledgeHeadline(step);
  } else if (step.kind === "search") {
    text = fmt(running ? _("Searching for “%(query)s”…") : _("Searched for “%(query)s”"), { query: step.query || "" });
  } else if (step.kind === "open") {
    const page = step.title || step.url || step.target || "";
    text = fmt(running ? _("Reading %(page)s…") : _("Read %(page)s"), { page });
  } else if (step.kind === "find") {
    text = fmt(running ? _("Looking for “%(pattern)s”…") : _("Looked for “%(pattern)s”"), { pattern: step.pattern || "" });
  } else if (step.kind === "python") {
    text = running ? _("Running python…") : _("Ran python");
  } else {
    text = fmt(_("Called %(tool)s"), { tool: step.tool || "" });
  }
  if (step.status === "limit") text += ` · ${_("stopped by a limit")}`;
  else if (step.status === "failed") text += ` · ${_("failed")}`;
  else if (step.status === "stopped") text += ` · ${_("stopped")}`;
  else if (step.status === "interrupted") text += ` · ${_("interrupted")}`;
  if (typeof step.seconds === "number") {
    text +=
      step.kind === "knowledge"
        ? ` · ${fmt(_("%(ms)s ms"), { ms: Math.round(step.seconds * 1000) })}`
        : ` · ${fmt(_("%(seconds)s s"), { seconds: step.seconds.toFixed(1) })}`;
  }
  return text;
}

// A page's address as a link, only for the web's own schemes (never javascript: or data:).
export function pageLink(url, text) {
  if (!url || !WEB.test(url)) return null;
  return el("a", { href: url, target: "_blank", rel: "noopener noreferrer", textContent: text ?? url });
}

function section(label, text, testid) {
  return el("div", { className: "step-part" }, el("div", { className: "step-label", textContent: label }), el("pre", { textContent: text, dataset: { testid } }));
}

// The search's sources, each opening its passage: "[1] handbook.pdf, page 2 (Security)".
function sourceList(sources) {
  const list = el("ol", { className: "step-sources", dataset: { testid: "step-sources" } });
  for (const source of sources) {
    if (!source || !Number.isInteger(source.n)) continue;
    const button = el("button", {
      type: "button",
      className: "link step-source",
      textContent: `[${source.n}] ${sourceLabel(source)}`,
      dataset: { testid: "step-source" },
    });
    button.setAttribute("aria-haspopup", "dialog");
    button.setAttribute("aria-expanded", "false");
    button.addEventListener("click", () => openSource(source, button));
    list.append(el("li", {}, button));
  }
  return list;
}

function body(step) {
  const parts = [];
  if (step.kind === "knowledge" && Array.isArray(step.sources) && step.sources.length) {
    parts.push(el("div", { className: "step-part" }, el("div", { className: "step-label", textContent: _("Sources") }), sourceList(step.sources)));
  }
  if (step.code) parts.push(section(_("Code"), step.code, "step-code"));
  if (step.output) parts.push(section(_("Output"), step.output, "step-output"));
  const link = pageLink(step.url);
  if (link) parts.push(el("div", { className: "step-part" }, el("span", { className: "step-label", textContent: `${_("Address")} ` }), link));
  if (step.error) parts.push(section(_("Error"), step.error, "step-error"));
  return parts;
}

// The steps of one answer on screen: `update` takes a step as the worker sends it (a step
// comes again, under the same id, when it ends).
export class StepList {
  constructor(box) {
    this.box = box;
    this.blocks = new Map(); // step id -> <details>
    this.steps = new Map(); // step id -> the step as last heard
  }

  update(step) {
    if (!step || typeof step.id !== "string") return;
    let block = this.blocks.get(step.id);
    const open = block ? block.open : true;
    const fresh = el(
      "details",
      { className: `step ${step.status || ""}`, open: step.status === "running" || open, dataset: { testid: "step", status: step.status || "" } },
      el("summary", { textContent: headline(step), dataset: { testid: "step-headline" } }),
      ...body(step),
    );
    if (block) block.replaceWith(fresh);
    else this.box.append(fresh);
    this.blocks.set(step.id, fresh);
    this.steps.set(step.id, step);
    this.box.hidden = false;
  }

  set(steps) {
    this.box.replaceChildren();
    this.blocks.clear();
    this.steps.clear();
    this.box.hidden = true;
    for (const step of steps || []) this.update(step);
  }

  // The answer ended: every step folded; one still running was cut off with it (its
  // worker lost, or the answer failed around it).
  fold() {
    for (const step of [...this.steps.values()]) {
      if (step.status === "running") this.update({ ...step, status: "interrupted" });
    }
    for (const block of this.blocks.values()) block.open = false;
  }
}

function hostOf(url) {
  try {
    return new URL(url).hostname;
  } catch {
    return url;
  }
}

// Turn the model's citations, 【cursor†L3-L5】, into links to the page that cursor opened.
// Runs over text nodes only: the answer's markup was sanitized before, and what is put in
// is text and an <a> this code makes.
const CITATION = /【(\d+)†([^【】]*)】/g;

export function linkCitations(root, steps) {
  const pages = new Map();
  for (const step of steps || []) {
    if (step.kind === "open" && typeof step.cursor === "number" && WEB.test(step.url || "")) {
      pages.set(step.cursor, { url: step.url, title: step.title || step.url });
    }
  }
  if (!pages.size) return;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) {
    if (walker.currentNode.parentElement?.closest("a, code, pre")) continue;
    if (walker.currentNode.nodeValue.includes("【")) nodes.push(walker.currentNode);
  }
  for (const node of nodes) {
    const text = node.nodeValue;
    const out = [];
    let last = 0;
    for (const match of text.matchAll(CITATION)) {
      const page = pages.get(Number(match[1]));
      if (!page) continue;
      out.push(text.slice(last, match.index));
      const link = pageLink(page.url, hostOf(page.url));
      link.className = "citation";
      link.title = page.title;
      link.dataset.testid = "citation";
      out.push(link);
      last = match.index + match[0].length;
    }
    if (!out.length) continue;
    out.push(text.slice(last));
    node.replaceWith(...out);
  }
}
