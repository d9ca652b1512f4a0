// Boot: the router (hash-based, so the gateway serves one page), the palette, the header.

import { createPalette } from "./palette.js";
import { likedIds, dislikedIds, onChange } from "./state.js";
import { homeView, movieView, notFoundView, shortcutLabel, tasteView } from "./views.js";

const main = document.getElementById("main");
let current = null;

function navigate(href) {
  if (window.location.hash === href) route();
  else window.location.hash = href;
}

const palette = createPalette({ navigate });

function parse(hash) {
  const [path, search] = hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(search || "");
  const movie = /^\/movie\/(\d+)$/.exec(path || "");
  if (!path || path === "/") return { name: "home" };
  if (movie) return { name: "movie", id: Number(movie[1]), query: params.get("q") || "" };
  if (path === "/taste") return { name: "taste" };
  return { name: "missing" };
}

function route() {
  // A navigation (back button, a link, a pasted URL) with the palette open: close it, or the
  // new page would sit inert behind it until Escape.
  palette.close({ restoreFocus: false });
  const r = parse(window.location.hash);
  current?.dispose();
  if (r.name === "home") current = homeView({ openPalette: () => palette.open() });
  else if (r.name === "movie") current = movieView(r);
  else if (r.name === "taste") current = tasteView();
  else current = notFoundView();
  main.replaceChildren(current.el);
  document.title = current.title;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === r.name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  window.scrollTo(0, 0);
  if (r.name !== "movie") main.querySelector("h1[tabindex]")?.focus({ preventScroll: true });
}

function renderCount() {
  const badge = document.getElementById("taste-count");
  const n = likedIds().length + dislikedIds().length;
  badge.hidden = n === 0;
  badge.textContent = String(n);
  badge.setAttribute("aria-label", `${n} movies rated`);
}

document.getElementById("search-trigger").addEventListener("click", () => palette.open());
document.getElementById("shortcut-hint").textContent = shortcutLabel();
window.addEventListener("hashchange", route);
onChange(renderCount);
renderCount();
route();
