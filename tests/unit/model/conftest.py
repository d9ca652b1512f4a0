"""Model folders of both kinds built from small files: identities and manifest checks read
files and hashes, never weights, so no model is loaded here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.model_folders import write_bundle, write_st_folder


@pytest.fixture
def st_folder(tmp_path: Path) -> Path:
    return write_st_folder(tmp_path / "st")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "bundle")
