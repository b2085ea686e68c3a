// On a narrow screen the sidebar is a drawer over the page: the toggle opens it
// (aria-expanded says which), its close button, the backdrop or Escape close it, and
// the page behind is inert while it is open. On a wide screen the stylesheet shows
// the sidebar beside the chat and the toggle is hidden.
const NARROW = window.matchMedia("(max-width: 48rem)");

export class Drawer {
  constructor({ layout, toggle }) {
    this.layout = layout;
    this.toggle = toggle;
    this.panel = document.getElementById(toggle.getAttribute("aria-controls"));
    this.behind = layout.querySelector("[data-drawer-behind]");
    toggle.addEventListener("click", () => this.set(!this.open));
    for (const node of layout.querySelectorAll("[data-drawer-close]")) {
      node.addEventListener("click", () => this.set(false));
    }
    // An Escape another control has used (cancelling a rename) is not for the drawer.
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.open && !event.defaultPrevented) this.set(false);
    });
    NARROW.addEventListener("change", () => this.set(false));
  }

  get open() {
    return this.toggle.getAttribute("aria-expanded") === "true";
  }

  set(open) {
    if (open === this.open) return;
    this.toggle.setAttribute("aria-expanded", String(open));
    this.layout.classList.toggle("drawer-open", open);
    if (this.behind) this.behind.inert = open;
    if (open) this.panel.querySelector("[data-drawer-close], a, button, input")?.focus();
    else this.toggle.focus({ preventScroll: true });
  }
}
