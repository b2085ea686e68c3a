// The conversation list: pages loaded as you scroll, search over titles and messages,
// rename in place, delete with confirmation. Titles are set as text, never as HTML.
import { getJSON, postJSON } from "./http.js";
import { _, fmt } from "./i18n.js";

export class Sidebar {
  constructor({ list, more, search, initial, currentId, onDeleted, onRenamed, say }) {
    Object.assign(this, { list, more, search, currentId, onDeleted, onRenamed, say });
    this.query = "";
    this.next = null;
    this.loading = false;
    this.show(initial.conversations, initial.next, false);
    more.addEventListener("click", () => this.loadMore());
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadMore();
    }).observe(more);
    let timer = null;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.find(search.value), 250);
    });
  }

  show(conversations, next, append) {
    if (!append) this.list.replaceChildren();
    for (const c of conversations) this.list.append(this.item(c));
    if (!append && conversations.length === 0) {
      const empty = document.createElement("li");
      empty.className = "muted empty";
      empty.textContent = this.query ? _("Nothing matches.") : _("No conversations yet.");
      this.list.append(empty);
    }
    this.next = next;
    this.more.hidden = !next;
  }

  item(c) {
    const li = document.createElement("li");
    li.dataset.id = c.id;
    li.dataset.testid = "conversation";
    if (c.id === this.currentId) li.classList.add("current");
    const link = document.createElement("a");
    link.href = `/c/${c.id}/`;
    link.textContent = c.title;
    link.title = c.title;
    const rename = this.button("✎", _("Rename"), "rename", () => this.rename(li, c));
    const remove = this.button("×", _("Delete"), "delete", () => this.remove(li, c));
    li.append(link, rename, remove);
    return li;
  }

  button(text, label, testid, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "icon";
    b.textContent = text;
    b.title = label;
    b.setAttribute("aria-label", label);
    b.dataset.testid = testid;
    b.addEventListener("click", onClick);
    return b;
  }

  async find(query) {
    this.query = query.trim();
    const data = await getJSON(`/c/list?q=${encodeURIComponent(this.query)}`).catch((e) => this.say(e.message));
    if (data) this.show(data.conversations, data.next, false);
  }

  async loadMore() {
    if (!this.next || this.loading) return;
    this.loading = true;
    try {
      const data = await getJSON(`/c/list?q=${encodeURIComponent(this.query)}&cursor=${encodeURIComponent(this.next)}`);
      this.show(data.conversations, data.next, true);
    } catch (error) {
      this.say(error.message);
    } finally {
      this.loading = false;
    }
  }

  prepend(c) {
    this.list.querySelector(".empty")?.remove();
    this.list.querySelector(`li[data-id="${c.id}"]`)?.remove();
    this.list.prepend(this.item(c));
  }

  retitle(id, title) {
    const link = this.list.querySelector(`li[data-id="${id}"] a`);
    if (link) {
      link.textContent = title;
      link.title = title;
    }
  }

  rename(li, c) {
    const input = document.createElement("input");
    input.type = "text";
    input.value = c.title;
    input.maxLength = 160;
    input.dataset.testid = "rename-input";
    const link = li.querySelector("a");
    link.hidden = true;
    li.prepend(input);
    input.focus();
    input.select();
    let finished = false;
    const finish = async (save) => {
      if (finished) return; // removing the input blurs it: that second call does nothing
      finished = true;
      input.remove();
      link.hidden = false;
      if (!save || input.value.trim() === c.title) return;
      try {
        const data = await postJSON(`/c/${c.id}/rename`, { title: input.value });
        c.title = data.title;
        this.retitle(c.id, data.title);
        this.onRenamed?.(c.id, data.title);
      } catch (error) {
        this.say(error.message);
      }
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") finish(true);
      if (event.key === "Escape") {
        event.preventDefault(); // the rename's, not the drawer's around it
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
  }

  async remove(li, c) {
    if (!window.confirm(fmt(_("Delete “%(title)s” and all its messages? This cannot be undone."), { title: c.title }))) return;
    try {
      await postJSON(`/c/${c.id}/delete`);
      li.remove();
      this.onDeleted?.(c.id);
    } catch (error) {
      this.say(error.message);
    }
  }
}
