"""A model's id: name@version+digest, the digest over the files that define its vectors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from marquee_shared.model.files import ModelError
from marquee_shared.model.identity import ModelId, model_id
from tests.support.model_folders import write_bundle, write_st_folder


def test_the_id_reads_name_version_and_digest() -> None:
    model = ModelId("all-MiniLM-L6-v2", "0.1.0", "0123456789ab")
    assert str(model) == "all-MiniLM-L6-v2@0.1.0+0123456789ab"
    assert ModelId.parse(str(model)) == model
    with pytest.raises(ValueError, match="not a model id"):
        ModelId.parse("all-MiniLM-L6-v2")


def test_the_same_files_give_the_same_id_wherever_they_are(tmp_path: Path) -> None:
    one = write_st_folder(tmp_path / "one")
    other = write_st_folder(tmp_path / "other")
    assert model_id(one, name="m", version="1") == model_id(one, name="m", version="1")
    assert model_id(one).digest == model_id(other).digest
    assert model_id(one).same_vectors(model_id(other))
    assert len(model_id(one).digest) == 12


@pytest.mark.parametrize(
    "changed", ["model.safetensors", "tokenizer.json", "config.json", "1_Pooling/config.json"]
)
def test_changing_a_file_that_defines_the_vectors_changes_the_id(
    st_folder: Path, changed: str
) -> None:
    before = model_id(st_folder)
    path = st_folder / changed
    path.write_bytes(path.read_bytes() + b" ")
    after = model_id(st_folder)
    assert after.digest != before.digest
    assert not after.same_vectors(before)


def test_a_change_within_the_same_second_and_size_is_still_seen(st_folder: Path) -> None:
    # The digest cache is keyed by size and mtime in nanoseconds: an edit that keeps the size
    # must not be served from the cache.
    before = model_id(st_folder)
    weights = st_folder / "model.safetensors"
    stat = weights.stat()
    weights.write_bytes(b"WEIGHTS")  # same length
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert model_id(st_folder).digest != before.digest


def test_files_that_do_not_define_the_vectors_leave_the_id_alone(st_folder: Path) -> None:
    before = model_id(st_folder)
    (st_folder / "README.md").write_text("a new model card")
    (st_folder / "training_log.txt").write_text("loss 0.1")
    assert model_id(st_folder) == before


def test_a_bundle_is_named_by_its_manifest_and_hashed_over_its_onnx_and_tokenizer(
    tmp_path: Path,
) -> None:
    bundle = write_bundle(tmp_path / "b")
    bundle_id = model_id(bundle)
    assert (bundle_id.name, bundle_id.version) == ("movie-tuned", "1")
    # The maximum length changes the vectors of long texts, so it is part of the identity.
    shorter = write_bundle(tmp_path / "short", max_seq_length=128)
    assert model_id(shorter).digest != bundle_id.digest


def test_an_incomplete_folder_is_refused(st_folder: Path, tmp_path: Path) -> None:
    (st_folder / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"has no tokenizer\.json"):
        model_id(st_folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="neither a sentence-transformers model folder"):
        model_id(empty)
    shutil.rmtree(empty)
    with pytest.raises(ModelError, match="does not exist"):
        model_id(empty)
