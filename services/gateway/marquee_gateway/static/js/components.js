// Pieces every view uses: movie cards, the filter bar, notices, "Why this?" panels.

import { api, isAbort } from "./api.js";
import { append, clear, h } from "./dom.js";
import {
  DECADES, GENRES, MIN_RATINGS, getFilters, onChange, opinionOf, setFilters, toggleOpinion,
} from "./state.js";

export const movieHref = (id, query) =>
  query ? `#/movie/${id}?q=${encodeURIComponent(query)}` : `#/movie/${id}`;

export function yearText(movie) {
  return movie.year ? String(movie.year) : "year unknown";
}

export function ratingText(movie) {
  const rating = movie.rating ?? movie.vote_average;
  if (rating === null || rating === undefined || !movie.vote_count) return "not rated";
  return `★ ${rating.toFixed(1)}`;
}

// TMDB's image host (or a stand-in), as the gateway serves it; empty: images are off.
const IMAGE_BASE = document.querySelector('meta[name="marquee-image-base"]')?.content || "";
const IMAGE_PATH = /^\/[A-Za-z0-9_-]{1,100}\.(jpg|jpeg|png|webp|svg)$/; // the contract's form
// TMDB's sizes, [1x, 2x, width, height]: cards are 16:9 (a backdrop fits), the movie page's
// tile is 2:3 (a poster fits); either falls back to the other kind, cropped.
const IMAGE_SIZES = {
  card: { backdrop_path: ["w300", "w780", 300, 169], poster_path: ["w342", "w500", 342, 513] },
  large: { poster_path: ["w342", "w780", 342, 513], backdrop_path: ["w780", "w1280", 780, 439] },
};

/**
 * The movie's TMDB image, lazily loaded, over the gradient tile; null when there is none. A
 * failed load (offline, missing on the host) removes it, and the gradient shows again.
 */
function tileImage(movie, large) {
  if (!IMAGE_BASE) return null;
  const sizes = IMAGE_SIZES[large ? "large" : "card"];
  const field = Object.keys(sizes).find((f) => IMAGE_PATH.test(movie[f] || ""));
  if (!field) return null;
  const [one, two, width, height] = sizes[field];
  const url = (size) => `${IMAGE_BASE}/${size}${movie[field]}`;
  const img = h("img", {
    class: `poster-img ${field === "poster_path" ? "poster-img-poster" : "poster-img-backdrop"}`,
    src: url(one),
    srcset: `${url(one)} 1x, ${url(two)} 2x`,
    width,
    height,
    alt: "",
    loading: "lazy",
    decoding: "async",
    referrerpolicy: "no-referrer",
  });
  img.addEventListener("error", () => img.remove(), { once: true });
  return img;
}

/**
 * A poster tile: a gradient from the id with the title's initials, under the movie's TMDB image
 * when the catalog has one (the gradient stays when it has none, or it cannot be loaded).
 */
export function posterTile(movie, size = "") {
  const hue = (movie.tmdb_id * 47) % 360;
  const initials = movie.title
    .split(/\s+/)
    .filter((w) => /^[\p{L}\p{N}]/u.test(w))
    .slice(0, 2)
    .map((w) => w[0])
    .join("")
    .toUpperCase();
  const tile = h("div", { class: `poster ${size}`, "aria-hidden": "true" }, h("span", {}, initials));
  // Through the CSSOM: the page's CSP forbids inline style attributes.
  tile.style.setProperty("--hue", String(hue));
  const image = tileImage(movie, size === "poster-large");
  if (image) tile.append(image);
  return tile;
}

/** Like / dislike toggles for one movie (aria-pressed says which is on). */
export function opinionButtons(movie, { compact = false } = {}) {
  const like = h("button", { type: "button", class: "opinion like" });
  const dislike = h("button", { type: "button", class: "opinion dislike" });
  const render = () => {
    const opinion = opinionOf(movie.tmdb_id);
    like.setAttribute("aria-pressed", String(opinion === "liked"));
    dislike.setAttribute("aria-pressed", String(opinion === "disliked"));
    like.setAttribute("aria-label", `Like ${movie.title}`);
    dislike.setAttribute("aria-label", `Dislike ${movie.title}`);
    // Plain glyphs, not emoji: they render with any font (headless browsers have no emoji).
    like.replaceChildren(compact ? "♥" : opinion === "liked" ? "♥ Liked" : "♥ Like");
    dislike.replaceChildren(compact ? "✕" : opinion === "disliked" ? "✕ Not for me" : "✕ Not for me");
    if (compact) {
      like.title = "Like";
      dislike.title = "Not for me";
    }
  };
  like.addEventListener("click", (e) => {
    e.preventDefault();
    toggleOpinion(movie, "liked");
    render();
  });
  dislike.addEventListener("click", (e) => {
    e.preventDefault();
    toggleOpinion(movie, "disliked");
    render();
  });
  render();
  return h("div", { class: "opinions", role: "group", "aria-label": "Your opinion" }, like, dislike);
}

/** A result card: links to the movie page; `extra` goes under the facts. */
export function movieCard(movie, { query = "", extra = null, actions = null } = {}) {
  return h(
    "li",
    { class: "card", dataset: { tmdbId: movie.tmdb_id } },
    h(
      "a",
      { class: "card-link", href: movieHref(movie.tmdb_id, query) },
      posterTile(movie),
      h(
        "div",
        { class: "card-body" },
        h("h3", { class: "card-title" }, movie.title),
        h(
          "p",
          { class: "card-meta" },
          yearText(movie), " · ", ratingText(movie),
        ),
        h("p", { class: "card-genres" }, (movie.genres || []).slice(0, 3).join(", ")),
      ),
    ),
    extra,
    h("div", { class: "card-actions" }, opinionButtons(movie, { compact: true }), actions),
  );
}

export function cardGrid(movies, options = {}) {
  return h("ul", { class: "grid" }, movies.map((m) => movieCard(m, options)));
}

// --- notices ----------------------------------------------------------------------------------

export function loading(text = "Loading…") {
  return h("div", { class: "notice notice-loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), text);
}

export function errorNotice(err, retry) {
  return h(
    "div",
    { class: `notice notice-error notice-${err.kind || "error"}`, role: "alert" },
    h("strong", {}, titleFor(err)),
    " ",
    err.message,
    retry ? h("button", { type: "button", class: "link-button", onclick: retry }, "Try again") : null,
  );
}

function titleFor(err) {
  switch (err.kind) {
    case "offline": return "Offline.";
    case "down": return "Service down.";
    case "rate": return "Rate-limited.";
    case "notfound": return "Not found.";
    case "invalid": return "Cannot do that.";
    default: return "Error.";
  }
}

export function emptyNotice(title, text) {
  return h("div", { class: "notice notice-empty", role: "status" }, h("strong", {}, title), " ", text);
}

/** Fill `el` with the result of `load()`, showing loading and error states. */
export async function fillFrom(el, load, render) {
  clear(el).append(loading());
  el.setAttribute("aria-busy", "true");
  try {
    const data = await load();
    clear(el);
    append(el, [render(data)]);
  } catch (err) {
    if (isAbort(err)) return;
    clear(el).append(errorNotice(err, () => fillFrom(el, load, render)));
  } finally {
    el.removeAttribute("aria-busy");
  }
}

// --- filters ----------------------------------------------------------------------------------

function select(label, name, options, value) {
  const id = `filter-${name}-${Math.random().toString(36).slice(2, 7)}`;
  return h(
    "div",
    { class: "filter" },
    h("label", { class: "filter-label", for: id }, label),
    h(
      "select",
      { id, name },
      options.map(([v, text]) => h("option", { value: v, selected: String(v) === String(value) }, text)),
    ),
  );
}

/** Genre, decade and minimum rating. Changing one updates every filter bar on the page. */
export function filterBar(container) {
  const f = getFilters();
  const clearButton = h(
    "button",
    { type: "button", class: "link-button", onclick: () => setFilters({ genre: "", decade: "", minRating: "" }) },
    "Clear filters",
  );
  container.replaceChildren(
    select("Genre", "genre", [["", "Any genre"], ...GENRES.map((g) => [g, g])], f.genre),
    select("Decade", "decade", [["", "Any decade"], ...DECADES.map((d) => [d, `${d}s`])], f.decade),
    select("Rating", "minRating", [["", "Any rating"], ...MIN_RATINGS.map((r) => [r, `★ ${r}+`])], f.minRating),
    clearButton,
  );
  // Update values in place (rebuilding would take the focus from the select being used).
  const sync = () => {
    const now = getFilters();
    for (const el of container.querySelectorAll("select")) el.value = String(now[el.name] ?? "");
    clearButton.hidden = !(now.genre || now.decade || now.minRating);
  };
  container.addEventListener("change", (e) => {
    if (e.target.name) setFilters({ [e.target.name]: e.target.value });
  });
  // Every bar shows the same filters; a bar whose view is gone stops listening.
  let shown = false;
  const off = onChange((what) => {
    if (shown && !container.isConnected) off();
    else if (what === "filters") sync();
    shown ||= container.isConnected;
  });
  sync();
  return sync;
}

// --- "Why this?" ------------------------------------------------------------------------------

const FACT_LABEL = {
  director: "Same director", cast: "Shared cast", genre: "Genre", theme: "Theme",
  decade: "Decade", query: "Matches your search",
};

/**
 * A "Why this?" button and the panel it opens. `request()` returns the API promise; the
 * explanation's text gets every movie it cites linked to that movie's page.
 */
export function whyThis(label, request) {
  const panel = h("div", { class: "why-panel", hidden: true, "aria-live": "polite" });
  const button = h("button", { type: "button", class: "why-button", "aria-expanded": "false" }, label);
  let loaded = false;
  button.addEventListener("click", async () => {
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    panel.hidden = !open;
    if (!open || loaded) return;
    loaded = true;
    await fillFrom(panel, async () => {
      const explanation = await request();
      return { explanation, cited: await citedMovies(explanation) };
    }, renderExplanation);
    if (panel.querySelector(".notice-error")) loaded = false; // let the next click retry
  });
  return h("div", { class: "why" }, button, panel);
}

async function citedMovies(explanation) {
  const ids = [...new Set(explanation.cited_ids)];
  const movies = await Promise.all(
    ids.map((id) => api(`/v1/movies/${id}`).catch(() => null)),
  );
  return movies.filter(Boolean);
}

function linkedText(text, movies) {
  // Longest titles first, so "Alien" does not take the start of "Aliens".
  const byTitle = [...movies].sort((a, b) => b.title.length - a.title.length);
  if (!byTitle.length) return [text];
  const escaped = byTitle.map((m) => m.title.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const re = new RegExp(`(${escaped.join("|")})`, "g");
  const parts = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    const movie = byTitle.find((x) => x.title === m[0]);
    if (m.index > last) parts.push(text.slice(last, m.index));
    parts.push(h("a", { href: movieHref(movie.tmdb_id), class: "cited" }, m[0]));
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

function renderExplanation({ explanation, cited }) {
  const titles = new Map(cited.map((m) => [m.tmdb_id, m.title]));
  const facts = explanation.facts.filter((f) => f.kind !== "query" || f.value);
  const byLlm = !explanation.fallback_reason && explanation.generator !== "deterministic";
  return h(
    "div",
    { class: "explanation", dataset: { confidence: explanation.confidence } },
    h("p", { class: "explanation-text" }, linkedText(explanation.text, cited)),
    facts.length
      ? h(
          "ul",
          { class: "facts", "aria-label": "What it rests on" },
          facts.slice(0, 6).map((f) =>
            h(
              "li",
              {},
              h("span", { class: "fact-kind" }, FACT_LABEL[f.kind] || f.kind), " ",
              h("span", { class: "fact-value" }, f.value),
              f.movie_ids.filter((id) => id !== explanation.target_id && titles.has(id)).length
                ? [" — with ", f.movie_ids
                    .filter((id) => id !== explanation.target_id && titles.has(id))
                    .map((id, i) => [i ? ", " : "", h("a", { href: movieHref(id) }, titles.get(id))])]
                : null,
            ),
          ),
        )
      : null,
    cited.length
      ? h(
          "p",
          { class: "cites" },
          "Cites: ",
          cited.map((m, i) => [i ? ", " : "", h("a", { href: movieHref(m.tmdb_id), class: "cited-movie", dataset: { tmdbId: m.tmdb_id } }, `${m.title}${m.year ? ` (${m.year})` : ""}`)]),
        )
      : null,
    h(
      "p",
      { class: "explanation-meta" },
      h("span", { class: `confidence confidence-${explanation.confidence}` }, `${explanation.confidence} confidence`),
      " · ",
      byLlm ? `written by ${explanation.generator}` : "written from the catalog's facts",
      explanation.cached ? " · cached" : "",
    ),
  );
}
