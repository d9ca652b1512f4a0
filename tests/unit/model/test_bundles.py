"""A Marquee bundle: its files are checked against the manifest before use, it serves only
onnx-int8, and query windows follow its tokenizer and maximum length."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marquee_shared.model.encoder import load_encoder
from marquee_shared.model.files import ModelError, verify_bundle
from marquee_shared.model.identity import model_id
from marquee_shared.model.windows import Windower, WindowParams
from tests.support.model_folders import write_bundle


def test_an_intact_bundle_verifies(bundle: Path) -> None:
    manifest = verify_bundle(bundle)
    assert manifest.backend == "onnx-int8"
    assert set(manifest.files) == {"model_qint8.onnx", "tokenizer.json"}


@pytest.mark.parametrize("changed", ["model_qint8.onnx", "tokenizer.json"])
def test_a_changed_file_is_rejected_with_its_name(bundle: Path, changed: str) -> None:
    path = bundle / changed
    path.write_bytes(path.read_bytes()[:-1] + b"#")
    with pytest.raises(ModelError, match=rf"{changed} does not match marquee_model\.json"):
        verify_bundle(bundle)
    with pytest.raises(ModelError, match="corrupt or was changed after export"):
        model_id(bundle)  # the id is never computed over unverified files


def test_a_missing_file_is_rejected(bundle: Path) -> None:
    (bundle / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"tokenizer\.json is listed .* but missing"):
        verify_bundle(bundle)


def test_a_manifest_without_the_onnx_file_or_of_another_backend_is_rejected(
    bundle: Path,
) -> None:
    manifest_path = bundle / "marquee_model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "backend": "torch"}))
    with pytest.raises(ModelError, match="backend 'torch' is not supported"):
        verify_bundle(bundle)
    del manifest["files"]["model_qint8.onnx"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"does not list model_qint8\.onnx"):
        verify_bundle(bundle)
    manifest_path.write_text("{not json")
    with pytest.raises(ModelError, match="cannot read the model bundle manifest"):
        verify_bundle(bundle)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_bundle_refuses_any_backend_but_onnx_int8(bundle: Path, backend: str) -> None:
    with pytest.raises(ModelError, match=f"serves only the onnx-int8 backend, not {backend}"):
        load_encoder(bundle, backend)  # type: ignore[arg-type]


def test_windows_use_the_bundles_tokenizer_and_never_exceed_its_length(tmp_path: Path) -> None:
    short = write_bundle(tmp_path / "short", max_seq_length=34)
    windower = Windower(short, WindowParams(max_tokens=128))
    assert windower.limit == 32  # its 34 word pieces less [CLS] and [SEP]
    text = " ".join(f"The detective finds clue number {i} in the old house." for i in range(12))
    windows = windower.windows(text)
    assert len(windows) > 2
    for window in windows[1:]:  # the first is the request whole (the head)
        assert len(windower._tokenizer.encode(window, add_special_tokens=False).ids) <= 32
