"""The gate every explanation passes: ids, titles, years and facts."""

from __future__ import annotations

from marquee_explainer.validation import Draft, validate
from tests.support.explainer_catalog import ALIEN, DUEL, JAWS, JAWS_2, SPIELBERG_DOC, make_taste


def check(index, text: str, cited: list[int] | None = None, refs: list[str] | None = None):
    return validate(Draft(text, cited or [], refs or []), make_taste(index), index)


def test_placeholders_become_titles_and_citations(index):
    verdict = check(index, "Roy Scheider is back: [[579]] follows [[578]].", refs=["F1"])
    assert verdict.ok, verdict.problems
    assert verdict.text == "Roy Scheider is back: Jaws 2 (1978) follows Jaws (1975)."
    assert verdict.cited_ids == [579, 578]
    assert [f.value for f in verdict.facts] == ["Roy Scheider"]


def test_a_year_written_after_a_placeholder_is_not_doubled(index):
    verdict = check(index, "Roy Scheider returns in [[579]] (1978).")
    assert verdict.text == "Roy Scheider returns in Jaws 2 (1978)."


def test_ids_outside_the_context_are_rejected(index):
    verdict = check(index, "Roy Scheider, as in [[49026]].", cited=[579])
    assert not verdict.ok
    assert any("[[49026]] is not one of the movies" in p for p in verdict.problems)
    verdict = check(index, "Roy Scheider stars in [[579]].", cited=[579, 862])
    assert any("it cites 862" in p for p in verdict.problems)


def test_catalog_titles_outside_the_context_are_rejected(index):
    verdict = check(index, "Since you loved The Dark Knight Rises, Roy Scheider is for you.")
    assert any('"The Dark Knight Rises"' in p for p in verdict.problems)
    verdict = check(index, "Fans of Heat will like Roy Scheider here.")
    assert any('"Heat"' in p for p in verdict.problems)
    # Written in lower case, it is a word, not the film.
    assert check(index, "Roy Scheider feels the heat in [[579]].").ok


def test_context_titles_are_fine_with_their_own_year_only(index):
    assert check(index, "Like Alien, it has Roy Scheider.").ok
    verdict = check(index, "Like Jaws (1976), it has Roy Scheider.")
    assert any("the year 1976" in p for p in verdict.problems)


def test_an_invented_film_with_a_year_is_rejected(index):
    verdict = check(index, "Like Shark Attack 3 (2002), it has Roy Scheider.")
    assert any("Shark Attack 3 (2002)" in p for p in verdict.problems)


def test_names_from_the_context_are_not_titles(index):
    # "Spielberg" is also a catalog title (a documentary), but here it is the context's
    # director's name.
    ctx = make_taste(index, target=DUEL, liked=[JAWS])
    text = "Like [[578]], it is directed by Steven Spielberg."
    verdict = validate(Draft(text, [], []), ctx, index)
    assert verdict.ok, verdict.problems
    # Outside any context name, the same word is a reference to the documentary.
    ctx = make_taste(index, target=JAWS_2, liked=[ALIEN])
    verdict = validate(Draft("Spielberg fans will like [[579]].", [], []), ctx, index)
    assert any(SPIELBERG_DOC.title in p for p in verdict.problems)


def test_the_text_must_state_a_computed_fact(index):
    verdict = check(index, "You will love [[579]], trust us.", refs=["F1"])
    assert any("states none of the listed facts" in p for p in verdict.problems)
    verdict = check(index, "Roy Scheider stars in [[579]].", refs=["F99"])
    assert any("F99" in p for p in verdict.problems)
    # A fact stated but not listed still counts.
    verdict = check(index, "Roy Scheider stars in [[579]].")
    assert verdict.ok
    assert [f.value for f in verdict.facts] == ["Roy Scheider"]


def test_length_limits(index):
    assert not check(index, "Roy").ok
    assert not check(index, "Roy Scheider. " * 80).ok
