// The search palette: Ctrl+K / Cmd+K, search as you type, keyboard navigation.
// ARIA: a modal dialog holding a combobox that controls a listbox (WAI-ARIA APG combobox).

import { api, isAbort } from "./api.js";
import { filterBar, movieHref, ratingText, yearText } from "./components.js";
import { clear, debounce, h, highlighted, plural } from "./dom.js";
import { filterParams, hasFilters, onChange } from "./state.js";

const DEBOUNCE_MS = 160;
const RESULTS = 8;
const COUNT_FROM = 0.8; // show the character count from this share of the limit on
const COUNT_NOTE_MS = 1000; // screen readers hear the count once typing pauses, not per key
const STOPWORDS = new Set(
  ("a an and are about as at be but by for from has have he her his in into is it its movie " +
    "film of on or she that the their then there they this to was were where which while who " +
    "with about after before like one two some when what where").split(" "),
);
const EXAMPLES = [
  "a shark terrorizes a beach town",
  "toys that come alive when nobody is watching",
  "a hacker learns reality is a simulation",
];

/** Query words worth showing as matched (no stopwords; 3+ letters). */
function queryWords(q) {
  return [...new Set(q.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || [])].filter(
    (w) => !STOPWORDS.has(w),
  );
}

/** Why a hit matched, from what the page can see: its title, genres and plot. */
export function matchReason(hit, q) {
  const words = queryWords(q);
  const stem = (w) => w.slice(0, Math.max(4, Math.min(w.length, 6)));
  const inText = (text) => words.filter((w) => text.toLowerCase().includes(stem(w)));
  const title = inText(hit.title);
  if (title.length && title.length >= Math.min(words.length, 2)) return { text: "Title match", words: title };
  const genres = inText((hit.genres || []).join(" "));
  const plot = inText(hit.overview || "");
  const found = [...new Set([...title, ...genres, ...plot])];
  if (found.length) {
    const where = plot.length ? "the plot" : genres.length ? "its genres" : "the title";
    return {
      text: `Mentions ${found.slice(0, 3).map((w) => `“${w}”`).join(", ")} in ${where}`,
      words: found.map(stem),
    };
  }
  return { text: "Close in meaning to what you described", words: [] };
}

export function createPalette({ navigate }) {
  const backdrop = document.getElementById("palette");
  const input = document.getElementById("palette-input");
  const list = document.getElementById("palette-results");
  const status = document.getElementById("palette-status");
  const closeButton = document.getElementById("palette-close");
  const filtersEl = document.getElementById("palette-filters");
  const count = document.getElementById("palette-count");
  const countNote = document.getElementById("palette-count-note");
  let hits = [];
  let active = -1;
  let controller = null;
  let opener = null;
  let lastQuery = "";
  let pasteCut = false;

  filterBar(filtersEl);

  /** The box grows with its text up to its CSS max-height, then scrolls. */
  function fit() {
    input.style.height = "auto";
    input.style.height = `${input.scrollHeight}px`;
  }

  /** Near the limit (the box's maxlength, which the gateway sets to its cap), say how near. */
  function showCount() {
    const limit = input.maxLength;
    const n = input.value.length;
    if (n < limit) pasteCut = false;
    if (limit <= 0 || n < limit * COUNT_FROM) {
      count.hidden = true;
      countNote.textContent = "";
      return;
    }
    const fmt = (x) => x.toLocaleString("en");
    let note = `${fmt(n)} of ${fmt(limit)} characters.`;
    if (n >= limit) {
      note = pasteCut
        ? `The pasted text was cut at the limit, ${fmt(limit)} characters. Keep the details that set the film apart.`
        : `That is the limit, ${fmt(limit)} characters.`;
    }
    count.hidden = false;
    count.classList.toggle("palette-count-full", n >= limit);
    count.textContent = n >= limit ? note : `${fmt(n)} / ${fmt(limit)}`;
    announceCount(note);
  }
  const announceCount = debounce((note) => { countNote.textContent = note; }, COUNT_NOTE_MS);

  function setText(value) {
    input.value = value;
    fit();
    showCount();
  }

  function setStatus(...content) {
    clear(status).append(...content);
  }

  function isOpen() {
    return !backdrop.hidden;
  }

  function open(initial = "") {
    if (isOpen()) {
      input.focus();
      input.select();
      return;
    }
    opener = document.activeElement;
    backdrop.hidden = false;
    document.body.classList.add("modal-open");
    setBackgroundInert(true);
    if (initial) setText(initial);
    input.focus();
    fit(); // its width may have changed while it was hidden
    input.select();
    if (input.value.trim()) run();
    else showHints();
  }

  /** restoreFocus: back to what opened it; false when a navigation is about to place it. */
  function close({ restoreFocus = true } = {}) {
    if (!isOpen()) return;
    controller?.abort();
    search.cancel();
    backdrop.hidden = true;
    document.body.classList.remove("modal-open");
    setBackgroundInert(false);
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    if (restoreFocus) {
      (opener && document.contains(opener) ? opener : document.getElementById("search-trigger")).focus();
    }
  }

  function showHints() {
    hits = [];
    active = -1;
    clear(list);
    input.setAttribute("aria-expanded", "false");
    setStatus(
      "Describe a plot, a mood, a title or a name. Try: ",
      EXAMPLES.map((ex, i) => [
        i ? ", " : "",
        h("button", { type: "button", class: "link-button", onclick: () => { setText(ex); run(); input.focus(); } }, ex),
      ]),
    );
  }

  function setActive(index) {
    const items = list.querySelectorAll("[role=option]");
    if (!items.length) return;
    active = (index + items.length) % items.length;
    items.forEach((item, i) => item.setAttribute("aria-selected", String(i === active)));
    input.setAttribute("aria-activedescendant", items[active].id);
    items[active].scrollIntoView({ block: "nearest" });
  }

  function openHit(index) {
    const hit = hits[index];
    if (!hit) return;
    const q = lastQuery;
    close();
    navigate(movieHref(hit.tmdb_id, q));
  }

  function render(q) {
    clear(list);
    active = -1;
    input.removeAttribute("aria-activedescendant");
    if (!hits.length) {
      input.setAttribute("aria-expanded", "false");
      setStatus(
        h("strong", {}, "No movies match. "),
        hasFilters()
          ? "Filters are on: clear or widen them, or describe it differently."
          : "Describe it differently: a plot detail, an actor, the decade.",
      );
      return;
    }
    hits.forEach((hit, i) => {
      const reason = matchReason(hit, q);
      list.append(
        h(
          "li",
          {
            id: `palette-option-${hit.tmdb_id}`,
            role: "option",
            "aria-selected": "false",
            class: "palette-option",
            dataset: { tmdbId: hit.tmdb_id },
            onmousemove: () => { if (active !== i) setActive(i); },
            onclick: () => openHit(i),
          },
          h("div", { class: "option-main" },
            h("span", { class: "option-title" }, hit.title),
            h("span", { class: "option-meta" }, ` ${yearText(hit)} · ${ratingText(hit)}`),
          ),
          h("div", { class: "option-genres" }, (hit.genres || []).slice(0, 3).join(", ")),
          h("div", { class: "option-why" }, reason.text),
          h("div", { class: "option-overview" }, highlighted(clip(hit.overview || "", 160), reason.words)),
        ),
      );
    });
    input.setAttribute("aria-expanded", "true");
    setStatus(plural(hits.length, "movie"), hasFilters() ? " (filtered)" : "", ". Up and down to choose, Enter to open.");
    setActive(0);
  }

  async function run() {
    const q = input.value.trim();
    controller?.abort(); // a newer keystroke wins: cancel the stale request
    if (!q) {
      showHints();
      return;
    }
    controller = new AbortController();
    const { signal } = controller;
    list.setAttribute("aria-busy", "true");
    setStatus(h("span", { class: "spinner", "aria-hidden": "true" }), "Searching…");
    try {
      const data = await api("/v1/search", { params: { q, k: RESULTS, ...filterParams() }, signal });
      if (signal.aborted) return;
      hits = data.results;
      lastQuery = q;
      render(q);
      // What the list shows now (scripts and tests can tell stale results from fresh ones).
      Object.assign(list.dataset, { query: q, state: hits.length ? "results" : "empty" });
    } catch (err) {
      if (isAbort(err)) return;
      hits = [];
      clear(list);
      input.setAttribute("aria-expanded", "false");
      setStatus(h("span", { class: `palette-error palette-error-${err.kind}`, role: "alert" }, err.message));
      Object.assign(list.dataset, { query: q, state: "error" });
    } finally {
      if (!signal.aborted) list.removeAttribute("aria-busy");
    }
  }
  const search = debounce(run, DEBOUNCE_MS);

  input.addEventListener("input", () => { fit(); showCount(); search(); });
  input.addEventListener("paste", (e) => {
    // maxlength cuts a long paste silently: remember it, so the count can say so.
    const pasted = e.clipboardData?.getData("text") ?? "";
    const kept = input.value.length - (input.selectionEnd - input.selectionStart);
    pasteCut = kept + pasted.length > input.maxLength;
  });
  input.addEventListener("keydown", (e) => {
    if (e.isComposing) return; // Enter that confirms an IME composition is not a search
    if (e.key === "ArrowDown") { e.preventDefault(); setActive(active + 1); }
    else if (e.key === "ArrowUp") { e.preventDefault(); setActive(active - 1); }
    else if (e.key === "Home" && e.ctrlKey) { e.preventDefault(); setActive(0); }
    else if (e.key === "End" && e.ctrlKey) { e.preventDefault(); setActive(-1); }
    else if (e.key === "Enter" && !e.shiftKey) { // Shift+Enter: a new line, as in any text box
      e.preventDefault();
      // The active option opens only if the list is for the text as it is now.
      if (active >= 0 && lastQuery === input.value.trim()) openHit(active);
      else { search.cancel(); run(); }
    }
  });
  closeButton.addEventListener("click", () => close());
  window.addEventListener("resize", () => { if (isOpen()) fit(); }); // wraps differently
  backdrop.addEventListener("mousedown", (e) => { if (e.target === backdrop) close(); });
  backdrop.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { e.preventDefault(); close(); return; }
    if (e.key === "Tab") trapFocus(e, backdrop);
  });
  onChange((what) => { if (what === "filters" && isOpen() && input.value.trim()) run(); });

  document.addEventListener("keydown", (e) => {
    if ((e.metaKey || e.ctrlKey) && e.key.toLowerCase() === "k") {
      e.preventDefault();
      if (isOpen()) close(); else open();
    } else if (e.key === "/" && !isOpen() && !isTyping(e.target)) {
      e.preventDefault();
      open();
    }
  });
  return { open, close, isOpen };
}

/** The page behind the dialog: out of reach of Tab, clicks and screen readers while open. */
function setBackgroundInert(inert) {
  for (const el of document.querySelectorAll("body > header, body > main, body > footer, .skip-link")) {
    el.inert = inert;
  }
}

function clip(text, n) {
  return text.length <= n ? text : `${text.slice(0, text.lastIndexOf(" ", n))}…`;
}

function isTyping(el) {
  return el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
}

/** Keep Tab inside the dialog (aria-modal promises it). */
function trapFocus(e, root) {
  const focusable = [...root.querySelectorAll("input, textarea, select, button, a[href], [tabindex]:not([tabindex='-1'])")]
    .filter((el) => !el.disabled && el.offsetParent !== null);
  if (!focusable.length) return;
  const first = focusable[0];
  const last = focusable[focusable.length - 1];
  if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
  else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
}
