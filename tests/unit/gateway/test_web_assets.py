"""The web page's files: what the page loads exists, ships in the package, and keeps to the
rules the Content-Security-Policy and the no-HTML-from-data policy rely on."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest

from marquee_gateway.web import (
    CONTENT_SECURITY_POLICY,
    STATIC_DIR,
    content_security_policy,
    render_page,
)
from marquee_shared.api import MAX_QUERY_CHARS

PYPROJECT = Path(__file__).resolve().parents[3] / "services" / "gateway" / "pyproject.toml"
SCRIPTS = sorted((STATIC_DIR / "js").glob("*.js"))
IMPORT = re.compile(r"""^\s*(?:import|export)\s[^"']*?from\s+["']([^"']+)["']""", re.MULTILINE)


def test_there_is_a_page_and_scripts() -> None:
    assert (STATIC_DIR / "index.html").is_file()
    assert {p.name for p in SCRIPTS} >= {"main.js", "api.js", "palette.js", "views.js"}
    assert len(IMPORT.findall((STATIC_DIR / "js" / "main.js").read_text())) >= 3


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_module_import_resolves(script: Path) -> None:
    for target in IMPORT.findall(script.read_text()):
        assert target.startswith("./"), f"{script.name} imports {target}: no bare or remote imports"
        assert (script.parent / target).is_file(), f"{script.name} imports missing {target}"


def test_what_index_html_references_exists() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="/static/([^"]+)"', html)
    assert refs
    for ref in refs:
        assert (STATIC_DIR / ref).is_file(), ref


def test_every_static_file_ships_in_the_package() -> None:
    globs = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"][
        "marquee_gateway"
    ]
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            rel = path.relative_to(STATIC_DIR.parent).as_posix()
            assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not in package-data"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_never_build_html_from_strings(script: Path) -> None:
    # Titles, overviews and LLM text are data: they go into the DOM as text nodes only.
    code = script.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code, f"{script.name} uses {sink}"


def test_the_page_fits_its_content_security_policy() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert " style=" not in html, "inline styles are blocked by style-src 'self'"
    assert not re.search(r"<script(?![^>]*\ssrc=)", html), "inline scripts are blocked"
    assert not re.search(r"\son\w+=", html), "inline event handlers are blocked"
    for script in SCRIPTS:
        assert 'setAttribute("style"' not in script.read_text(), script.name


def test_the_search_box_takes_a_long_description() -> None:
    # A textarea (a paragraph wraps and the box grows) that is still the palette's combobox,
    # capped at the default query length (the gateway serves its own cap in its place).
    html = (STATIC_DIR / "index.html").read_text()
    box = re.search(r"<textarea[^>]*\sid=\"palette-input\"[^>]*>", html)
    assert box, "the search box is not a textarea"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', box.group(0)))
    assert attrs["role"] == "combobox"
    assert attrs["maxlength"] == str(MAX_QUERY_CHARS)
    assert attrs["aria-controls"] == "palette-results"
    for described_by in attrs["aria-describedby"].split():
        assert f'id="{described_by}"' in html, described_by
    assert "textarea" in (STATIC_DIR / "js" / "palette.js").read_text()  # in the focus trap


def test_the_page_names_its_image_host_and_the_policy_admits_that_host_alone() -> None:
    page = render_page(MAX_QUERY_CHARS, "http://127.0.0.1:9999/").decode()
    assert '<meta name="marquee-image-base" content="http://127.0.0.1:9999">' in page
    assert "img-src 'self' data: https://image.tmdb.org;" in content_security_policy(
        "https://image.tmdb.org/t/p"
    )
    # Images off: no host in the page, none in the policy.
    assert '<meta name="marquee-image-base" content="">' in render_page(MAX_QUERY_CHARS).decode()
    assert "img-src 'self' data:;" in content_security_policy(None) == CONTENT_SECURITY_POLICY
    assert 'content="http://x/&quot;&gt;"' in render_page(MAX_QUERY_CHARS, 'http://x/">').decode()


def test_the_footer_carries_tmdbs_attribution() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    footer = re.search(r"<footer.*?</footer>", html, re.DOTALL)
    assert footer
    assert "This product uses the TMDB API but is not endorsed or certified by TMDB." in " ".join(
        footer.group(0).split()
    )
