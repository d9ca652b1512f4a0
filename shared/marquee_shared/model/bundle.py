"""Exporting a sentence-transformers folder to a Marquee bundle (``files.py`` describes one):
the transformer to ONNX with torch.onnx, its MatMuls quantised to int8 per channel (the same
code and settings as the services' on-the-fly ``onnx-int8`` export), the tokenizer files
beside it and a manifest with every file's sha256. The int8 file runs on any CPU instruction
set; only its speed differs.

The bundle needs no torch at run time, so the fine-tuned model ships as package data
(``bundles/movie-tuned/``) and starts without training or downloads.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import structlog

from marquee_shared.model.encoder import export_fp32, onnx_files, quantize_int8
from marquee_shared.model.files import (
    BUNDLE_BACKEND,
    BUNDLE_ONNX,
    MANIFEST,
    TOKENIZER,
    BundleManifest,
    ModelError,
    is_bundle,
    max_seq_length,
    sha256_file,
    vector_files,
)
from marquee_shared.model.identity import ModelId, model_id

log = structlog.get_logger(__name__)

TOKENIZER_FILES = (TOKENIZER, "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
"""Copied when present: ``tokenizer.json`` is all the services read; the others let
transformers' AutoTokenizer open the bundle too."""
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def export_bundle(
    st_model_dir: Path,
    out_dir: Path,
    *,
    name: str,
    version: str,
    base: str = "sentence-transformers/all-MiniLM-L6-v2",
    cache_dir: Path | None = None,
) -> ModelId:
    """Write the bundle of ``st_model_dir`` to ``out_dir`` and return its id.

    ``out_dir`` must be absent, empty or an earlier bundle (replaced whole, never half
    written). ``cache_dir``: where the fp32 export is kept and looked for (the services'
    ONNX cache reuses an export they made already); default a temporary folder.
    """
    for label, value in (("name", name), ("version", version)):
        if not _LABEL.match(value) or "+" in value:
            msg = f"bundle {label} {value!r}: letters, digits, '.', '_' and '-' only"
            raise ModelError(msg)
    _check_pooling(st_model_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not is_bundle(out_dir):
        msg = f"{out_dir} exists and is not a Marquee bundle: not overwriting it"
        raise ModelError(msg)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}-") as tmp:
        staging = Path(tmp) / "bundle"
        staging.mkdir()
        if cache_dir is not None:
            fp32 = onnx_files(st_model_dir, cache_dir, int8=False)
        else:
            fp32 = Path(tmp) / "model.onnx"
            export_fp32(st_model_dir, fp32)
        quantize_int8(fp32, staging / BUNDLE_ONNX, embeddings=True)
        for tokenizer_file in TOKENIZER_FILES:
            if (st_model_dir / tokenizer_file).is_file():
                shutil.copyfile(st_model_dir / tokenizer_file, staging / tokenizer_file)
        for path in staging.iterdir():
            path.chmod(0o644)  # the export's temporary files are private; a bundle is not
        manifest = BundleManifest(
            name=name,
            version=version,
            base=base,
            backend=BUNDLE_BACKEND,
            max_seq_length=max_seq_length(st_model_dir),
            files={p.name: sha256_file(p) for p in staging.iterdir()},
        )
        (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        # Swapped in whole: a reader never sees a bundle whose files and manifest disagree.
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.replace(out_dir)
    exported = model_id(out_dir)
    log.info(
        "bundle_exported",
        source=str(st_model_dir),
        bundle=str(out_dir),
        model=str(exported),
        bytes=sum(p.stat().st_size for p in out_dir.iterdir()),
    )
    return exported


def _check_pooling(folder: Path) -> None:
    """A bundle is served with mean pooling and L2 normalisation (``OnnxEncoder``): refuse a
    model whose own modules do something else, rather than ship other vectors."""
    vector_files(folder)  # a complete sentence-transformers folder
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    pooling = next((m for m in modules if str(m.get("type", "")).endswith(".Pooling")), None)
    config = (
        json.loads((folder / str(pooling["path"]) / "config.json").read_text(encoding="utf-8"))
        if pooling is not None
        else {}
    )
    # sentence-transformers < 6 writes one flag per mode; 6 and later one "pooling_mode".
    modes = {k for k, v in config.items() if k.startswith("pooling_mode_") and v is True}
    if "pooling_mode" in config:
        modes.add(f"pooling_mode_{config['pooling_mode']}_tokens")
    if kinds != ["Transformer", "Pooling", "Normalize"] or modes != {"pooling_mode_mean_tokens"}:
        msg = (
            f"{folder}: modules {kinds} with pooling {sorted(modes)}; a bundle serves "
            "Transformer, mean Pooling, Normalize only"
        )
        raise ModelError(msg)
