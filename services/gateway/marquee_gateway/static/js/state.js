// What the browser remembers: the taste (liked / disliked movies) and the filters.
// Kept in localStorage, so it never leaves the browser except inside a request.

const TASTE_KEY = "marquee.taste.v1";
const FILTERS_KEY = "marquee.filters.v1";
const MAX_TASTE = 100; // the API takes 200 ids in all; leave room for "seen"

export const GENRES = [
  "Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Family",
  "Fantasy", "History", "Horror", "Music", "Mystery", "Romance", "Science Fiction", "TV Movie",
  "Thriller", "War", "Western",
];
export const DECADES = [2020, 2010, 2000, 1990, 1980, 1970, 1960, 1950, 1940, 1930, 1920];
export const MIN_RATINGS = [9, 8, 7, 6, 5];

function load(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key));
    return value && typeof value === "object" ? value : fallback;
  } catch {
    return fallback;
  }
}

function save(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // private mode or full storage: the page still works for this visit
  }
}

const listeners = new Set();
export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
function changed(what) {
  for (const fn of listeners) fn(what);
}

// --- taste ------------------------------------------------------------------------------------

/** {movies: {id: {title, year, opinion: "liked" | "disliked", at}}} */
let taste = load(TASTE_KEY, { movies: {} });
if (!taste.movies || typeof taste.movies !== "object") taste = { movies: {} };

export function opinionOf(id) {
  return taste.movies[id]?.opinion ?? null;
}

/** Set (or, with the same opinion again, clear) the opinion of a movie. */
export function toggleOpinion(movie, opinion) {
  const current = taste.movies[movie.tmdb_id];
  if (current && current.opinion === opinion) {
    delete taste.movies[movie.tmdb_id];
  } else {
    taste.movies[movie.tmdb_id] = {
      title: movie.title, year: movie.year ?? null, opinion, at: Date.now(),
    };
    const ids = Object.keys(taste.movies);
    if (ids.length > MAX_TASTE) {
      const oldest = ids.sort((a, b) => taste.movies[a].at - taste.movies[b].at)[0];
      delete taste.movies[oldest];
    }
  }
  save(TASTE_KEY, taste);
  changed("taste");
  return opinionOf(movie.tmdb_id);
}

export function forget(id) {
  delete taste.movies[id];
  save(TASTE_KEY, taste);
  changed("taste");
}

function idsWith(opinion) {
  return Object.entries(taste.movies)
    .filter(([, m]) => m.opinion === opinion)
    .sort(([, a], [, b]) => b.at - a.at)
    .map(([id]) => Number(id));
}
export const likedIds = () => idsWith("liked");
export const dislikedIds = () => idsWith("disliked");
export const tasteMovie = (id) => taste.movies[id] ?? null;

// --- filters ----------------------------------------------------------------------------------

/** {genre: "" | name, decade: "" | 1990, minRating: "" | 7} */
let filters = { genre: "", decade: "", minRating: "", ...load(FILTERS_KEY, {}) };

export const getFilters = () => ({ ...filters });

export function setFilters(next) {
  filters = { ...filters, ...next };
  save(FILTERS_KEY, filters);
  changed("filters");
}

export function hasFilters() {
  return Boolean(filters.genre || filters.decade || filters.minRating);
}

/** The filters as the API's query parameters (also the body's "filters" object). */
export function filterParams() {
  const params = {};
  if (filters.genre) params.genres = [filters.genre];
  if (filters.decade) {
    params.year_min = Number(filters.decade);
    params.year_max = Number(filters.decade) + 9;
  }
  if (filters.minRating) params.min_rating = Number(filters.minRating);
  return params;
}
