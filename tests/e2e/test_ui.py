"""The web UI in a real headless Chromium (Debian's, driven by Playwright) against the whole
stack started as `make run` does, with the demo catalog.

Screenshots at desktop and phone width land in test-artifacts/ui/ (kept by CI as artifacts).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright

import devstack
from marquee_shared.api import MAX_QUERY_CHARS
from marquee_shared.events import CATALOG_STREAM, Movie, MovieFetched, encode_event
from tests.fakes.tmdb_images import FakeTmdbImages
from tests.support.ingest import DEMO_IDS
from tests.support.stack import wait_applied

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM = os.environ.get("MARQUEE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
SLOW = 40_000  # ms: explanations and recommendations on a loaded 2-core machine
# Assertions retry until this (the default, 5 s, is short when the suite loads both cores).
expect.set_options(timeout=20_000)

SHARK = "a great white shark keeps killing swimmers at a beach town"
JAWS, TOY_STORY, SPIRITED_AWAY, SHINING, ALIEN = 578, 862, 129, 694, 348


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's (apt-get install chromium; .ci/run "
            "does) or set MARQUEE_CHROMIUM",
            pytrace=False,
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            # No sandbox: CI runs as root in a container. No background traffic: no internet.
            args=[
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield browser
        browser.close()


class PageErrors:
    """Uncaught exceptions and console errors; failed fetches are the tests' own business."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("console", self._console)

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            self.errors.append(f"console: {msg.text}")


def open_page(browser: Browser, base_url: str, **context: Any) -> tuple[Page, PageErrors]:
    ctx = browser.new_context(base_url=base_url, **{"viewport": DESKTOP, **context})
    ctx.set_default_timeout(20_000)
    page = ctx.new_page()
    return page, PageErrors(page)


@pytest.fixture
def page(demo_stack: devstack.Stack, browser: Browser) -> Iterator[Page]:
    # The stack first: its start waits with devstack's backlog check, which runs an event loop
    # of its own, and cannot once Playwright's sync API runs one in this thread.
    page, errors = open_page(browser, demo_stack.gateway_url)
    yield page
    page.context.close()
    assert not errors.errors, errors.errors


def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=full_page)


def option_ids(page: Page) -> list[int]:
    ids: list[str] = page.locator("#palette-results [role=option]").evaluate_all(
        "els => els.map(e => e.dataset.tmdbId)"
    )
    return [int(i) for i in ids]


def search_in_palette(page: Page, text: str) -> list[int]:
    """Type into the open palette; the ids shown once the results are for exactly this text."""
    box = page.get_by_role("combobox", name="Search movies")
    box.fill("")
    box.press_sequentially(text, delay=10)
    expect(page.locator(f"#palette-results[data-query={json.dumps(text)}]")).to_be_attached()
    return option_ids(page)


def movie_links(page: Page, scope: str) -> set[int]:
    hrefs: list[str] = page.locator(f"{scope} a[href^='#/movie/']").evaluate_all(
        "els => els.map(e => e.getAttribute('href'))"
    )
    return {int(re.match(r"#/movie/(\d+)", h).group(1)) for h in hrefs}  # type: ignore[union-attr]


def test_the_page_is_served_with_a_strict_policy(demo_stack: devstack.Stack) -> None:
    r = httpx.get(demo_stack.gateway_url + "/", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    js = httpx.get(demo_stack.gateway_url + "/static/js/main.js", timeout=10)
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert js.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(demo_stack.gateway_url + "/static/nope.js", timeout=10).status_code == 404


def test_ctrl_k_finds_a_described_plot_opens_it_and_explains_why(page: Page) -> None:
    page.goto("/")
    expect(page.locator(".shelf .card").first).to_be_visible()
    shot(page, "desktop-home")

    page.keyboard.press("Control+k")
    dialog = page.get_by_role("dialog", name="Search movies")
    expect(dialog).to_be_visible()
    expect(page.get_by_role("combobox", name="Search movies")).to_be_focused()
    ids = search_in_palette(page, SHARK)
    assert JAWS in ids[:3], ids
    expect(page.locator(f"[role=option][data-tmdb-id='{JAWS}'] .option-why")).to_contain_text(
        "shark"
    )
    shot(page, "desktop-palette")

    # Arrow keys move the active option (aria-activedescendant), Enter opens it.
    for _ in range(ids.index(JAWS) + len(ids)):  # once round the list and back to Jaws
        page.keyboard.press("ArrowDown")
    expect(page.get_by_role("combobox", name="Search movies")).to_have_attribute(
        "aria-activedescendant", f"palette-option-{JAWS}"
    )
    expect(page.locator("[role=option][aria-selected=true]")).to_have_attribute(
        "data-tmdb-id", str(JAWS)
    )
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page).to_have_url(re.compile(rf"#/movie/{JAWS}\?q="))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Jaws")
    expect(page.locator(".shelf .card").first).to_be_visible()  # similar movies

    page.get_by_role("button", name=re.compile("Why this")).click()
    explanation = page.locator(".explanation")
    expect(explanation).to_be_visible(timeout=SLOW)
    expect(explanation.locator(".explanation-text")).to_contain_text("Jaws")
    cited = movie_links(page, ".explanation")
    assert JAWS in cited
    assert cited <= DEMO_IDS, (
        f"the explanation links movies outside the catalog: {cited - DEMO_IDS}"
    )
    shot(page, "desktop-movie-why-this", full_page=True)


LONG_DESCRIPTION = (
    "Help me find an animated film I saw as a kid, I think it was Japanese and hand-drawn. A "
    "sulky ten-year-old girl is moving to a new town with her parents, and on the way her "
    "father takes a wrong turn down a forest road and they end up at what looks like an "
    "abandoned theme park. Her parents find a food stall with nobody around and start eating "
    "everything, and when night falls they turn into pigs. The girl is trapped in a world of "
    "spirits and gods, and a boy who can turn into a white dragon helps her get a job at a "
    "huge bathhouse run by a greedy old witch with a giant head, who takes away her name and "
    "gives her a new one. She works hard cleaning the baths, she helps a stinky river spirit "
    "who is full of garbage, and a lonely masked spirit with no face follows her around and "
    "swallows people when he gets greedy. Later she rides a train across the water to visit "
    "the witch's twin sister to save the dragon boy, and at the end she has to pick her "
    "parents out from a pen full of pigs to go home. There is a scene where she eats a rice "
    "ball and cries, and a giant baby gets turned into a tiny mouse. It won a lot of awards, "
    "maybe even an Oscar. I remember a six-armed old man running "
    "the boiler room with little soot balls carrying coal. The music was beautiful and sad. "
    "I watched it dubbed in English on a rainy afternoon and I have been trying to remember "
    "the title ever since, because I want to show it to my own daughter now that she is "
    "about the same age as the girl in the story."
)


def paste(page: Page, text: str) -> None:
    """Put ``text`` on the clipboard and paste it with Ctrl+V into what has focus."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.evaluate("text => navigator.clipboard.writeText(text)", text)
    page.keyboard.press("Control+v")


def test_a_long_pasted_description_grows_the_box_and_finds_the_film(page: Page) -> None:
    assert 1400 <= len(LONG_DESCRIPTION) <= 1600
    page.goto("/")
    expect(page.locator(".shelf .card").first).to_be_visible()
    # Page timers stand still (the search-as-you-type debounce with them) until resumed: the
    # search below is the one Enter sends, whatever the machine's load.
    page.clock.install()
    page.clock.pause_at(page.evaluate("Date.now()") + 1000)
    page.keyboard.press("Control+k")
    box = page.get_by_role("combobox", name="Search movies")
    expect(box).to_be_focused()
    assert box.evaluate("el => el.tagName") == "TEXTAREA"
    expect(box).to_have_attribute("maxlength", str(MAX_QUERY_CHARS))  # the gateway's cap
    one_line = box.evaluate("el => el.getBoundingClientRect().height")

    paste(page, LONG_DESCRIPTION)
    expect(box).to_have_value(LONG_DESCRIPTION)
    size = box.evaluate(
        "el => ({height: el.getBoundingClientRect().height, max: parseFloat("
        "getComputedStyle(el).maxHeight), scroll: el.scrollHeight, client: el.clientHeight})"
    )
    # It grew to its maximum height, and scrolls for the rest.
    assert size["height"] > 4 * one_line, (one_line, size)
    assert size["height"] <= size["max"] + 1, size
    assert size["scroll"] > size["client"], size
    expect(page.locator("#palette-count")).to_be_hidden()  # far from the limit: no count
    shot(page, "desktop-palette-long-description")

    with page.expect_response(lambda r: "/v1/search?" in r.url) as response:
        page.keyboard.press("Enter")
    assert response.value.status == 200
    page.clock.resume()
    results = page.locator("#palette-results")
    expect(results).to_have_attribute("data-state", "results")
    assert results.get_attribute("data-query") == LONG_DESCRIPTION
    assert SPIRITED_AWAY in option_ids(page)[:3], option_ids(page)
    expect(page.get_by_role("dialog", name="Search movies")).to_be_visible()

    # Shift+Enter starts a new line instead of searching or opening a result.
    box.press("End")
    box.press("Shift+Enter")
    expect(box).to_have_value(LONG_DESCRIPTION + "\n")
    expect(page.get_by_role("dialog", name="Search movies")).to_be_visible()


def test_a_paste_past_the_limit_is_cut_and_says_so(page: Page) -> None:
    page.goto("/")
    page.keyboard.press("Control+k")
    box = page.get_by_role("combobox", name="Search movies")
    expect(box).to_be_focused()
    too_long = (LONG_DESCRIPTION + " ") * 2  # about 3,000 characters
    assert len(too_long) > MAX_QUERY_CHARS
    paste(page, too_long)
    expect(box).to_have_value(too_long[:MAX_QUERY_CHARS])
    count = page.locator("#palette-count")
    expect(count).to_be_visible()
    expect(count).to_contain_text(f"cut at the limit, {MAX_QUERY_CHARS:,} characters")
    # The same words reach screen readers once typing pauses.
    expect(page.locator("#palette-count-note")).to_contain_text("cut at the limit")
    # What is left is a valid query: it searches as any other.
    expect(page.locator("#palette-results")).to_have_attribute("data-state", "results")
    assert SPIRITED_AWAY in option_ids(page)[:3], option_ids(page)
    shot(page, "desktop-palette-at-the-limit")

    # Deleting a little brings back the plain count; far enough, it goes.
    box.press("End")
    box.press("Backspace")
    expect(count).to_have_text(f"{MAX_QUERY_CHARS - 1:,} / {MAX_QUERY_CHARS:,}")
    box.fill("shark")
    expect(count).to_be_hidden()


def test_the_palette_keeps_focus_and_gives_it_back(page: Page) -> None:
    page.goto("/")
    trigger = page.locator("#search-trigger")
    trigger.click()
    dialog = page.get_by_role("dialog", name="Search movies")
    expect(dialog).to_be_visible()
    expect(page.get_by_role("combobox", name="Search movies")).to_have_attribute(
        "aria-expanded", "false"
    )
    for _ in range(12):  # more than the dialog has controls: Tab must wrap, not leave
        page.keyboard.press("Tab")
        assert dialog.evaluate("d => d.contains(document.activeElement)")
    page.keyboard.press("Shift+Tab")
    assert dialog.evaluate("d => d.contains(document.activeElement)")
    # The page behind is out of reach (and of the accessibility tree) while the dialog is open.
    assert page.locator("main").evaluate("m => m.inert")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(trigger).to_be_focused()
    assert not page.locator("main").evaluate("m => m.inert")

    page.keyboard.press("Meta+k")  # Cmd+K on a Mac
    expect(dialog).to_be_visible()
    # Dense search always finds something near; filters can leave nothing.
    page.locator("#palette-filters select[name=genre]").select_option("Documentary")
    page.locator("#palette-filters select[name=decade]").select_option("1920")
    search_in_palette(page, "penguins")
    expect(page.locator("#palette-status")).to_contain_text("No movies match")
    expect(page.locator("#palette-status")).to_contain_text("Filters are on")
    expect(page.get_by_role("combobox", name="Search movies")).to_have_attribute(
        "aria-expanded", "false"
    )


def test_a_navigation_with_the_palette_open_closes_it(page: Page) -> None:
    # Back button, a pasted URL: the palette used to stay open over the new page, which sat
    # inert behind it, so nothing could be clicked until Escape (issue 15, item 6).
    dialog = page.get_by_role("dialog", name="Search movies")
    heading = page.get_by_role("heading", level=1)
    page.goto("/")
    expect(page.locator(".shelf .card").first).to_be_visible()
    page.goto(f"/#/movie/{JAWS}")
    expect(heading).to_contain_text("Jaws")

    page.keyboard.press("Control+k")
    expect(dialog).to_be_visible()
    assert page.locator("main").evaluate("m => m.inert")
    page.go_back()
    expect(dialog).to_be_hidden()
    expect(heading).to_contain_text("Find the movie")
    assert not page.locator("main").evaluate("m => m.inert")
    assert not page.evaluate("document.body.classList.contains('modal-open')")
    page.locator(".shelf .card-link").first.click()  # the page answers clicks again
    expect(page).to_have_url(re.compile(r"#/movie/\d+$"))

    page.keyboard.press("Control+k")
    expect(dialog).to_be_visible()
    page.evaluate("location.hash = '#/taste'")  # a URL pasted into the address bar
    expect(dialog).to_be_hidden()
    expect(heading).to_have_text("My taste")
    page.get_by_role("link", name="Discover").click()
    expect(heading).to_contain_text("Find the movie")
    # Opened again, it still works as before.
    page.keyboard.press("Control+k")
    expect(dialog).to_be_visible()
    assert TOY_STORY in search_in_palette(page, "a cowboy doll is jealous of a space ranger")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_a_newer_keystroke_cancels_the_stale_search(page: Page) -> None:
    held: list[Route] = []
    failed: list[str] = []
    jaws = re.compile(r"/v1/search\?q=jaws&")
    page.route(jaws, lambda route: held.append(route))  # never answered: stays in flight
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto("/")
    page.keyboard.press("Control+k")
    box = page.get_by_role("combobox", name="Search movies")
    box.press_sequentially("jaws")
    deadline = time.monotonic() + 20
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the search for 'jaws' was never sent"
    expect(page.locator("#palette-status")).to_contain_text("Searching")

    box.fill("toy story about a cowboy doll")
    expect(page.locator("#palette-results")).to_have_attribute(
        "data-query", "toy story about a cowboy doll"
    )
    assert option_ids(page)[0] == TOY_STORY
    assert any("q=jaws&" in url for url in failed), "the stale request was not cancelled"
    page.unroute(jaws)


def test_filters_narrow_the_shelves_and_the_search(page: Page) -> None:
    page.goto("/")
    expect(page.locator(".shelf .card").first).to_be_visible()
    with page.expect_response(
        lambda r: "/v1/browse/trending" in r.url and "Animation" in r.url
    ) as resp:
        page.locator(".view .filters select[name=genre]").select_option("Animation")
    trending = resp.value.json()["results"]
    assert trending, "no animated movie is trending in the demo catalog"
    assert all("Animation" in m["genres"] for m in trending)
    first_shelf = page.locator(".shelf").first
    expect(first_shelf.locator(".card").first).to_have_attribute(
        "data-tmdb-id", str(trending[0]["tmdb_id"])
    )
    with page.expect_response(
        lambda r: "/v1/browse/top-rated" in r.url and "year_min=1990" in r.url
    ) as resp:
        page.locator(".view .filters select[name=decade]").select_option("1990")
    assert all(1990 <= m["year"] <= 1999 for m in resp.value.json()["results"])

    # The palette shows (and applies) the same filters.
    page.keyboard.press("Control+k")
    expect(page.locator("#palette-filters select[name=genre]")).to_have_value("Animation")
    expect(page.locator("#palette-filters select[name=decade]")).to_have_value("1990")
    with page.expect_response(
        lambda r: "/v1/search" in r.url and "genres=Animation" in r.url
    ) as resp:
        search_in_palette(page, "a cowboy doll is jealous of a space ranger toy")
    hits = resp.value.json()["results"]
    assert hits[0]["tmdb_id"] == TOY_STORY
    assert all("Animation" in m["genres"] and 1990 <= m["year"] <= 1999 for m in hits)
    expect(page.locator("#palette-status")).to_contain_text("filtered")


def test_liking_two_movies_gives_recommendations_that_explain_themselves(page: Page) -> None:
    for tmdb_id, title in ((SHINING, "The Shining"), (ALIEN, "Alien")):
        page.goto(f"/#/movie/{tmdb_id}")
        like = page.get_by_role("button", name=f"Like {title}", exact=True).first
        like.click()
        expect(like).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#taste-count")).to_have_text("2")

    page.get_by_role("link", name=re.compile("My taste")).click()
    liked = page.get_by_role("list", name="Liked")
    expect(liked.get_by_role("listitem")).to_have_count(2)
    recs = page.locator("#recommendations .card")
    expect(recs.first).to_be_visible(timeout=SLOW)
    rec_ids = {int(i) for i in recs.evaluate_all("els => els.map(e => e.dataset.tmdbId)")}
    assert rec_ids <= DEMO_IDS
    assert not rec_ids & {SHINING, ALIEN}, "liked movies came back as recommendations"
    expect(page.locator(".because-text").first).to_contain_text("Because you liked")

    first = recs.first
    target = int(first.get_attribute("data-tmdb-id") or 0)
    first.get_by_role("button", name="Why this?").click()
    expect(first.locator(".explanation")).to_be_visible(timeout=SLOW)
    cited = movie_links(page, "#recommendations .card:first-child .explanation")
    assert target in cited
    assert cited <= {target, SHINING, ALIEN}, f"cites movies outside its context: {cited}"
    shot(page, "desktop-my-taste", full_page=True)

    # The diversity slider asks again with a lower relevance weight.
    def is_recs(r: Request) -> bool:
        return r.url.endswith("/v1/recommendations") and r.method == "POST"

    with page.expect_request(is_recs) as request:
        page.locator("#diversity").fill("0.6")
    assert request.value.post_data_json["mmr_lambda"] == pytest.approx(0.4)
    expect(page.locator("#diversity")).to_have_attribute("aria-valuetext", "Lots of variety")
    expect(recs.first).to_be_visible(timeout=SLOW)

    # Forgetting one updates the taste and the badge.
    page.get_by_role("button", name="Forget Alien").click()
    expect(liked.get_by_role("listitem")).to_have_count(1)
    expect(page.locator("#taste-count")).to_have_text("1")


def test_the_page_works_at_phone_width(browser: Browser, demo_stack: devstack.Stack) -> None:
    page, errors = open_page(
        browser, demo_stack.gateway_url, viewport=PHONE, is_mobile=True, has_touch=True
    )
    try:
        page.goto("/")
        expect(page.locator(".shelf .card").first).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(page, "phone-home")
        page.locator("#search-trigger").tap()
        palette = page.locator(".palette")
        expect(palette).to_be_visible()
        box = palette.bounding_box()
        assert box is not None
        assert box["width"] >= PHONE["width"] - 1, "the palette should fill a phone's width"
        ids = search_in_palette(page, SHARK)
        assert JAWS in ids[:3]
        shot(page, "phone-palette")
        page.locator(f"[role=option][data-tmdb-id='{JAWS}']").tap()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Jaws")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(page, "phone-movie", full_page=True)
    finally:
        page.context.close()
    assert not errors.errors, errors.errors


def extra_gateway(
    stack: devstack.Stack, name: str, tmp: Path, **env: str
) -> tuple[devstack.Proc, str]:
    """A second gateway process over the same stack, with some settings changed."""
    port = devstack.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = devstack.service_proc(
        name, "marquee_gateway.app", port, {**stack.env, **env}, tmp / "logs"
    ).start()
    try:
        proc.wait_until(lambda: devstack.http_ok(url + "/health"), "healthy", 60)
    except devstack.StackError as exc:
        proc.stop()
        pytest.fail(str(exc), pytrace=False)
    return proc, url


def test_backend_down_and_gateway_gone_say_what_happened(
    browser: Browser, demo_stack: devstack.Stack, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{devstack.free_port()}"  # nothing listens there
    gateway, url = extra_gateway(
        demo_stack, "gateway-search-down", tmp_path, MARQUEE_GATEWAY_SEARCH_URL=dead
    )
    page, errors = open_page(browser, url)
    try:
        page.goto("/")
        alert = page.locator(".shelf [role=alert]").first
        expect(alert).to_contain_text("The search service is down")
        expect(alert.get_by_role("button", name="Try again")).to_be_visible()
        page.keyboard.press("Control+k")
        search_in_palette(page, SHARK)
        expect(page.locator("#palette-status [role=alert]")).to_contain_text(
            "The search service is down"
        )
        shot(page, "desktop-search-down")

        gateway.stop()
        search_in_palette(page, "toys that come alive")
        expect(page.locator("#palette-status [role=alert]")).to_contain_text("Cannot reach Marquee")
        shot(page, "desktop-offline")
    finally:
        page.context.close()
        gateway.stop()
    assert not errors.errors, errors.errors


def test_rate_limited_says_when_to_retry(
    browser: Browser, demo_stack: devstack.Stack, tmp_path: Path
) -> None:
    # Its own Redis database: the other gateway's counters for this client must not interfere.
    redis_db15 = re.sub(r"/\d+$", "/15", demo_stack.redis_url)
    with redis.Redis.from_url(redis_db15) as client:
        client.flushdb()
    gateway, url = extra_gateway(
        demo_stack,
        "gateway-rate-limited",
        tmp_path,
        MARQUEE_REDIS_URL=redis_db15,
        MARQUEE_GATEWAY_RATE_LIMIT_PER_MINUTE="2",  # the page's two shelves spend it
    )
    page, errors = open_page(browser, url)
    try:
        page.goto("/")
        expect(page.locator(".shelf .card").first).to_be_visible()  # page assets are not counted
        page.keyboard.press("Control+k")
        search_in_palette(page, SHARK)
        status = page.locator("#palette-status [role=alert]")
        expect(status).to_contain_text("too many requests")
        expect(status).to_contain_text(re.compile(r"Try again in \d+ s"))
    finally:
        page.context.close()
        gateway.stop()
    assert not errors.errors, errors.errors


# --- posters ---------------------------------------------------------------------------------


def movie_now(base_url: str, tmdb_id: int) -> Movie:
    data = httpx.get(f"{base_url}/v1/movies/{tmdb_id}", timeout=10).json()
    data.pop("version")
    return Movie.model_validate(data)


def publish_and_wait(stack: devstack.Stack, movies: list[Movie]) -> None:
    """Publish the movies as they are now, and wait until search serves them so."""
    with redis.Redis.from_url(stack.redis_url) as client:
        for movie in movies:
            client.xadd(CATALOG_STREAM, encode_event(MovieFetched(source="test", movie=movie)))
    # In a thread: devstack's backlog check runs its own event loop, and Playwright's sync
    # API already runs one in this thread.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(wait_applied, stack).result()
    deadline = time.monotonic() + 60
    wanted = {m.tmdb_id: (m.poster_path, m.backdrop_path) for m in movies}
    while time.monotonic() < deadline:
        # The browse shelves answer from each search replica's mirror, which follows the index
        # changelog: wait for it too, not only for Chroma.
        shelf = httpx.get(f"{stack.gateway_url}/v1/browse/trending?k=100", timeout=10).json()
        seen = {
            h["tmdb_id"]: (h.get("poster_path"), h.get("backdrop_path"))
            for h in shelf["results"]
            if h["tmdb_id"] in wanted
        }
        if all(seen.get(i, wanted[i]) == wanted[i] for i in wanted):
            return
        time.sleep(0.3)
    msg = f"search does not serve the new images yet: {seen}"
    raise AssertionError(msg)


def test_posters_load_lazily_from_the_image_host_with_the_gradient_as_fallback(
    demo_stack: devstack.Stack, browser: Browser, tmp_path: Path
) -> None:
    # A local server stands in for TMDB's image host (MARQUEE_GATEWAY_IMAGE_BASE_URL).
    first = httpx.get(demo_stack.gateway_url + "/v1/browse/trending?k=1", timeout=10).json()
    trending = first["results"][0]["tmdb_id"]
    originals = {i: movie_now(demo_stack.gateway_url, i) for i in {JAWS, ALIEN, trending}}
    jaws_poster, trending_backdrop = "/jawsPoster578.jpg", f"/backdrop{trending}.jpg"
    with contextlib.ExitStack() as cleanup:
        images = cleanup.enter_context(FakeTmdbImages())
        images.add(jaws_poster, trending_backdrop)  # Alien's poster is missing there: 404
        publish_and_wait(
            demo_stack,
            [
                originals[JAWS].model_copy(update={"poster_path": jaws_poster}),
                originals[ALIEN].model_copy(update={"poster_path": "/alienPosterGone.jpg"}),
                originals[trending].model_copy(update={"backdrop_path": trending_backdrop}),
            ],
        )
        # Whatever happens, the other tests get the demo catalog back as it was.
        cleanup.callback(publish_and_wait, demo_stack, list(originals.values()))
        gateway, url = extra_gateway(
            demo_stack, "gateway-images", tmp_path, MARQUEE_GATEWAY_IMAGE_BASE_URL=images.url
        )
        cleanup.callback(gateway.stop)
        policy = httpx.get(url + "/", timeout=10).headers["content-security-policy"]
        assert f"img-src 'self' data: {images.url.removesuffix('/t/p')};" in policy

        page, errors = open_page(browser, url)
        cleanup.callback(page.context.close)
        page.goto(f"/#/movie/{JAWS}")
        expect(page.get_by_role("heading", level=1)).to_contain_text("Jaws")
        poster = page.locator(".movie-article .poster img")
        expect(poster).to_have_attribute("src", f"{images.url}/w342{jaws_poster}")
        expect(poster).to_have_attribute("loading", "lazy")
        assert (poster.get_attribute("width"), poster.get_attribute("height")) == ("342", "513")
        page.wait_for_function(
            "() => { const i = document.querySelector('.movie-article .poster img');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        assert images.requested(jaws_poster), images.requests
        expect(page.locator("#tmdb-attribution")).to_contain_text(
            "This product uses the TMDB API but is not endorsed or certified by TMDB."
        )
        shot(page, "desktop-movie-poster")

        # A card shows the wide backdrop (16:9, like the card).
        page.goto("/")
        card = page.locator(f".shelf .card[data-tmdb-id='{trending}']").first
        expect(card.locator(".poster img")).to_have_attribute(
            "src", f"{images.url}/w300{trending_backdrop}"
        )
        page.wait_for_function(
            f"() => {{ const i = document.querySelector(\".card[data-tmdb-id='{trending}'] img\");"
            " return i && i.complete && i.naturalWidth > 0; }"
        )

        # Not on the host: the image goes, the gradient and the initials stay.
        page.goto(f"/#/movie/{ALIEN}")
        expect(page.get_by_role("heading", level=1)).to_contain_text("Alien")
        tile = page.locator(".movie-article .poster")
        expect(tile).to_be_visible()
        expect(tile.locator("img")).to_have_count(0)
        expect(tile).to_have_text("A")

        # The image host gone (offline): the same for a poster that loaded before (in a new
        # browser context, whose cache does not hold it).
        images.__exit__(None, None, None)
        offline, offline_errors = open_page(browser, url)
        cleanup.callback(offline.context.close)
        offline.goto(f"/#/movie/{JAWS}")
        expect(offline.get_by_role("heading", level=1)).to_contain_text("Jaws")
        expect(offline.locator(".movie-article .poster img")).to_have_count(0)
        expect(offline.locator(".movie-article .poster")).to_have_text("J")
    assert not errors.errors, errors.errors
    assert not offline_errors.errors, offline_errors.errors
