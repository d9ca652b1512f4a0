"""The MODEL setting: stock, movie-tuned or a path, to a folder and an id."""

from __future__ import annotations

from pathlib import Path

import pytest

from marquee_shared.model import resolve
from marquee_shared.model.encoder import default_model_path
from marquee_shared.model.files import ModelError
from marquee_shared.model.resolve import resolve_model
from tests.support.model_folders import write_bundle


def test_stock_is_the_packaged_minilm() -> None:
    folder, model = resolve_model("stock")
    assert folder == default_model_path()
    assert model.name == "all-MiniLM-L6-v2"
    assert model.version == "0.1.0"
    assert str(model) == f"all-MiniLM-L6-v2@0.1.0+{model.digest}"
    # The same folder named by its path is the same model, with the same id.
    assert resolve_model(str(default_model_path())) == (folder, model)


def test_a_path_to_either_kind_of_folder(st_folder: Path, bundle: Path) -> None:
    folder, model = resolve_model(str(st_folder))
    assert folder == st_folder
    assert (model.name, model.version) == ("st", "local")
    folder, model = resolve_model(bundle)
    assert folder == bundle
    assert (model.name, model.version) == ("movie-tuned", "1")


def test_a_missing_path_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no such folder .*'stock', 'movie-tuned'"):
        resolve_model(str(tmp_path / "nowhere"))


def test_movie_tuned_when_this_build_has_no_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolve, "BUNDLES", tmp_path / "bundles")
    with pytest.raises(ModelError, match="'movie-tuned' is not packaged in this build"):
        resolve_model("movie-tuned")


def test_movie_tuned_when_this_build_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_bundle(tmp_path / "bundles" / "movie-tuned")
    monkeypatch.setattr(resolve, "BUNDLES", tmp_path / "bundles")
    folder, model = resolve_model("movie-tuned")
    assert folder == tmp_path / "bundles" / "movie-tuned"
    assert model.name == "movie-tuned"
