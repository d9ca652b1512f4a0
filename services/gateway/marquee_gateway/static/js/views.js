// The three pages: Discover (#/), a movie (#/movie/ID[?q=...]) and My taste (#/taste).

import { api } from "./api.js";
import {
  cardGrid, emptyNotice, fillFrom, filterBar, movieCard, opinionButtons, posterTile,
  ratingText, whyThis, yearText,
} from "./components.js";
import { h, plural } from "./dom.js";
import {
  dislikedIds, filterParams, forget, hasFilters, likedIds, onChange, tasteMovie,
} from "./state.js";

/** Each view returns {el, dispose}; dispose drops listeners when the route changes. */

export function homeView({ openPalette }) {
  const filters = h("div", { class: "filters", role: "group", "aria-label": "Filters" });
  const trending = h("section", { class: "shelf", "aria-labelledby": "trending-h" });
  const topRated = h("section", { class: "shelf", "aria-labelledby": "top-h" });
  const trendingBody = h("div", { class: "shelf-body" });
  const topBody = h("div", { class: "shelf-body" });
  trending.append(h("h2", { id: "trending-h" }, "Trending"), trendingBody);
  topRated.append(h("h2", { id: "top-h" }, "Top rated"), topBody);

  const shelf = (order, body) =>
    fillFrom(body, () => api(`/v1/browse/${order}`, { params: { k: 12, ...filterParams() } }), (data) =>
      data.results.length
        ? cardGrid(data.results)
        : emptyNotice("Nothing here.", "No movie in the catalog passes these filters: widen them."),
    );
  const load = () => {
    shelf("trending", trendingBody);
    shelf("top-rated", topBody);
  };
  filterBar(filters);
  const off = onChange((what) => { if (what === "filters") load(); });
  load();

  const el = h(
    "div",
    { class: "view home" },
    h(
      "section",
      { class: "hero" },
      h("h1", {}, "Find the movie you are thinking of."),
      h("p", { class: "lede" }, "Describe the plot, the mood, a scene you half remember. Marquee searches by meaning and by words, and says why each movie came up."),
      h("button", { type: "button", class: "hero-search", onclick: () => openPalette() },
        h("span", { class: "search-icon", "aria-hidden": "true" }, "⌕"),
        "a heist that goes wrong, told out of order…",
        h("kbd", { class: "shortcut" }, shortcutLabel()),
      ),
    ),
    filters,
    trending,
    topRated,
  );
  return { el, dispose: off, title: "Marquee" };
}

export function shortcutLabel() {
  return /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent) ? "⌘ K" : "Ctrl K";
}

export function movieView({ id, query }) {
  const el = h("div", { class: "view movie" });
  const detail = h("div", { class: "movie-detail" });
  const similar = h("section", { class: "shelf", "aria-labelledby": "similar-h" });
  const similarBody = h("div", { class: "shelf-body" });
  similar.append(h("h2", { id: "similar-h" }, "Similar movies"), similarBody);
  el.append(detail, similar);
  let title = "Movie";

  fillFrom(detail, () => api(`/v1/movies/${id}`), (movie) => {
    title = movie.title;
    document.title = `${movie.title} — Marquee`;
    return renderMovie(movie, query);
  }).then(() => detail.querySelector("h1")?.focus());
  fillFrom(similarBody, () => api(`/v1/movies/${id}/similar`, { params: { k: 12 } }), (data) =>
    data.results.length ? cardGrid(data.results) : emptyNotice("None yet.", "No similar movie is indexed."),
  );
  return { el, dispose: () => {}, title };
}

function renderMovie(movie, query) {
  const facts = [
    ["Released", movie.release_date || (movie.year ? String(movie.year) : "unknown")],
    ["Runtime", movie.runtime ? `${movie.runtime} min` : null],
    ["Rating", movie.vote_count ? `${ratingText(movie)} from ${plural(movie.vote_count, "vote")}` : "not rated yet"],
    ["Language", movie.original_language],
    ["Directed by", (movie.directors || []).join(", ") || null],
    ["Starring", (movie.cast || []).slice(0, 6).join(", ") || null],
    ["Keywords", (movie.keywords || []).slice(0, 8).join(", ") || null],
  ].filter(([, v]) => v);
  return h(
    "article",
    { class: "movie-article" },
    posterTile(movie, "poster-large"),
    h(
      "div",
      { class: "movie-info" },
      h("h1", { tabindex: "-1" }, movie.title, h("span", { class: "movie-year" }, ` (${yearText(movie)})`)),
      movie.tagline ? h("p", { class: "tagline" }, movie.tagline) : null,
      h("p", { class: "chips" }, (movie.genres || []).map((g) => h("span", { class: "chip" }, g))),
      h("p", { class: "overview" }, movie.overview),
      h("dl", { class: "facts-list" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      opinionButtons(movie),
      whyThisFor(movie, query),
    ),
  );
}

/** "Why this?" for a search hit when we came from a search, else for the taste. */
function whyThisFor(movie, query) {
  if (query) {
    return whyThis(`Why this for “${query}”?`, () =>
      api("/v1/explanations/search-hit", { body: { query, tmdb_id: movie.tmdb_id } }),
    );
  }
  const liked = likedIds().filter((x) => x !== movie.tmdb_id).slice(0, 50);
  if (liked.length) {
    return whyThis("Why this for my taste?", () =>
      api("/v1/explanations", {
        body: { target_id: movie.tmdb_id, liked, disliked: dislikedIds().filter((x) => x !== movie.tmdb_id).slice(0, 50) },
      }),
    );
  }
  return h("p", { class: "hint" }, "Like a few movies, or search for one, and “Why this?” will explain the match.");
}

export function tasteView() {
  const el = h("div", { class: "view taste" });
  const yours = h("section", { class: "taste-list", "aria-labelledby": "yours-h" });
  const filters = h("div", { class: "filters", role: "group", "aria-label": "Filters" });
  const recs = h("section", { class: "shelf", "aria-labelledby": "recs-h" });
  const recsBody = h("div", { class: "shelf-body", id: "recommendations" });
  const slider = h("input", {
    type: "range", id: "diversity", min: "0", max: "0.7", step: "0.1", value: "0.2",
    "aria-describedby": "diversity-help",
  });
  const sliderValue = h("output", { for: "diversity", id: "diversity-value" });
  const lambda = () => Math.round((1 - Number(slider.value)) * 10) / 10;
  const describe = () => {
    const v = Number(slider.value);
    const text = v === 0 ? "Closest matches only" : v <= 0.2 ? "A little variety" : v <= 0.4 ? "Balanced" : "Lots of variety";
    sliderValue.value = text;
    slider.setAttribute("aria-valuetext", text);
  };
  recs.append(
    h("div", { class: "shelf-head" },
      h("h2", { id: "recs-h" }, "Recommended for you"),
      h("div", { class: "diversity" },
        h("label", { for: "diversity" }, "Diversity"),
        slider,
        sliderValue,
        h("span", { id: "diversity-help", class: "visually-hidden" }, "Left for the closest matches to your taste, right for more variety."),
      ),
    ),
    filters,
    recsBody,
  );
  el.append(h("h1", { tabindex: "-1" }, "My taste"), yours, recs);

  const renderYours = () => {
    const liked = likedIds();
    const disliked = dislikedIds();
    const row = (id) => {
      const m = tasteMovie(id);
      return h("li", {},
        h("a", { href: `#/movie/${id}` }, m.title, m.year ? ` (${m.year})` : ""),
        h("button", { type: "button", class: "remove", "aria-label": `Forget ${m.title}`, onclick: () => forget(id) }, "×"),
      );
    };
    yours.replaceChildren(
      h("h2", { id: "yours-h", class: "visually-hidden" }, "Your movies"),
      h("div", { class: "taste-columns" },
        h("div", {}, h("h3", {}, `Liked (${liked.length})`), liked.length ? h("ul", { class: "pill-list", "aria-label": "Liked" }, liked.map(row)) : h("p", { class: "hint" }, "Nothing yet.")),
        h("div", {}, h("h3", {}, `Not for me (${disliked.length})`), disliked.length ? h("ul", { class: "pill-list", "aria-label": "Disliked" }, disliked.map(row)) : h("p", { class: "hint" }, "Nothing yet.")),
      ),
      h("p", { class: "hint" }, "Kept in this browser only. Use ♥ and ✕ on any movie."),
    );
  };

  let requestId = 0;
  const loadRecs = () => {
    const liked = likedIds();
    const disliked = dislikedIds();
    if (!liked.length) {
      recsBody.replaceChildren(
        emptyNotice("No taste yet.", "Like a few movies (♥ on any card or movie page) and recommendations appear here."),
      );
      return;
    }
    const mine = ++requestId;
    const body = {
      liked: liked.slice(0, 100), disliked: disliked.slice(0, 50), k: 20,
      mmr_lambda: lambda(), filters: filterParams(),
    };
    fillFrom(recsBody, () => api("/v1/recommendations", { body }), (data) => {
      if (mine !== requestId) return [];
      if (!data.results.length) {
        return emptyNotice("No recommendations.", hasFilters() ? "Filters are on: widen them." : "Like a few more movies.");
      }
      return h("ul", { class: "grid" }, data.results.map((m) => movieCard(m, { extra: becauseOf(m, liked, disliked) })));
    });
  };

  const becauseOf = (m, liked, disliked) => {
    const names = (m.because || []).map((id) => tasteMovie(id)?.title).filter(Boolean);
    return h("div", { class: "because" },
      // The closest liked movie only: naming every liked movie on every card says nothing.
      names.length ? h("p", { class: "because-text" }, `Because you liked ${names[0]}`) : null,
      whyThis("Why this?", () => api("/v1/explanations", { body: { target_id: m.tmdb_id, liked: liked.slice(0, 50), disliked: disliked.slice(0, 50) } })),
    );
  };

  slider.addEventListener("input", describe);
  slider.addEventListener("change", loadRecs); // on release, not on every step of a drag
  filterBar(filters);
  const off = onChange(() => { renderYours(); loadRecs(); });
  describe();
  renderYours();
  loadRecs();
  return { el, dispose: off, title: "My taste — Marquee" };
}

export function notFoundView() {
  return {
    el: h("div", { class: "view" }, emptyNotice("No such page.", ""), h("a", { href: "#/" }, "Back to Discover")),
    dispose: () => {},
    title: "Not found — Marquee",
  };
}
