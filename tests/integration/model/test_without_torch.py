"""The model package without its torch extra, as the embedder and search images run it.

The images export the stock model in a build stage that has torch and copy the ONNX files into
one that does not (deploy/*.Dockerfile). These tests do the same on this machine: the export
folder is copied elsewhere (new path, new modification times: the cache is found by the
model's digest, not by where or when it was written), and a child process in which torch,
transformers, sentence-transformers and onnx cannot be imported serves from it. Where the
files are missing, or the torch backend is asked for, the child stops with a ModelError that
names the extra to install.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from marquee_shared.model.encoder import (
    TORCH_EXTRA,
    default_model_path,
    export_folder,
    load_encoder,
    onnx_files,
)
from tests.support.paths import ROOT

pytestmark = pytest.mark.integration

ONNX_CACHE = Path.home() / ".cache" / "marquee" / "onnx"
TEXTS = ["a shark terrorises a beach town", "samurai"]
# Made unimportable in the child: sys.modules[name] = None makes ``import name`` fail and
# importlib.util.find_spec(name) answer None, as on an install without the extra.
BLOCKED = ("torch", "transformers", "sentence_transformers", "onnx")

CHILD = textwrap.dedent(
    """
    import json, sys
    for name in {blocked!r}:
        sys.modules[name] = None
    from pathlib import Path
    from marquee_shared.model.encoder import default_model_path, load_encoder
    from marquee_shared.model.files import ModelError
    try:
        encoder = load_encoder(default_model_path(), sys.argv[1], cache_dir=Path(sys.argv[2]))
        vectors = encoder.encode({texts!r}).tolist()
    except ModelError as exc:
        print(json.dumps({{"error": str(exc)}}))
    else:
        loaded = sorted(n for n in {blocked!r} if sys.modules.get(n) is not None)
        print(json.dumps({{"vectors": vectors, "loaded": loaded}}))
    """
)


def _child(backend: str, cache_dir: Path) -> dict[str, object]:
    code = CHILD.format(blocked=BLOCKED, texts=TEXTS)
    result = subprocess.run(
        [sys.executable, "-c", code, backend, str(cache_dir)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(answer, dict)
    return answer


@pytest.fixture(scope="module")
def copied_cache(tmp_path_factory: pytest.TempPathFactory, encoder: object) -> Path:
    """The stock model's fp32 and int8 exports, copied as ``COPY --from=export`` would."""
    # ``encoder`` first: it exports (or finds) the fp32 file; int8 is quantized from it.
    model = default_model_path()
    onnx_files(model, ONNX_CACHE, int8=True)
    target = tmp_path_factory.mktemp("image") / "onnx"
    source = export_folder(model, ONNX_CACHE)
    destination = export_folder(model, target)
    destination.parent.mkdir(parents=True)
    # copytree without copystat keeps neither times nor modes: a different file in every way
    # but its bytes.
    shutil.copytree(source, destination, copy_function=shutil.copyfile)
    return target


@pytest.mark.parametrize("backend", ["onnx-int8", "onnx"])
def test_serves_copied_exports_without_torch(copied_cache: Path, backend: str) -> None:
    answer = _child(backend, copied_cache)
    assert "error" not in answer, answer
    assert answer["loaded"] == []
    here = load_encoder(default_model_path(), backend, cache_dir=ONNX_CACHE).encode(TEXTS)  # type: ignore[arg-type]
    there = np.asarray(answer["vectors"], dtype=np.float32)
    assert there.shape == here.shape
    np.testing.assert_allclose(there, here, atol=1e-5)


def test_a_missing_export_names_the_extra(tmp_path: Path) -> None:
    answer = _child("onnx-int8", tmp_path / "empty")
    error = str(answer.get("error"))
    assert TORCH_EXTRA in error
    assert "torch" in error
    assert "model_qint8.onnx" in error


def test_the_torch_backend_names_the_extra(copied_cache: Path) -> None:
    answer = _child("torch", copied_cache)
    error = str(answer.get("error"))
    assert "the torch backend needs torch, transformers, sentence_transformers" in error
    assert TORCH_EXTRA in error
