"""The store contract, run on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
import threading

import pytest

from luodi.errors import BadInputError, NotFoundError
from luodi.store import Store, parse_ref
from luodi.store.hashing import sha256_dir


def _make(store: Store, name: str, payload: str, parents=(), meta=None):
    with store.create("dataset", name, parents=parents, meta=meta or {}) as d:
        (d.path / "data.txt").write_text(payload, encoding="utf-8")
    return d.artifact


def test_versions_refs_and_manifest(any_store: Store) -> None:
    v1 = _make(any_store, "faq", "one", meta={"rows": 1})
    v2 = _make(any_store, "faq", "two", parents=[v1])
    assert (v1.ref, v2.ref) == ("faq:v1", "faq:v2")
    assert any_store.resolve("faq", "dataset").ref == "faq:v2"  # bare name = latest
    assert any_store.resolve("faq:v1", "dataset").meta == {"rows": 1}
    manifest = json.loads((v2.path / "manifest.json").read_text())
    assert manifest["name"] == "faq" and manifest["version"] == 2
    assert manifest["parents"][0]["name"] == "faq" and manifest["parents"][0]["version"] == 1
    assert manifest["content_hash"] == sha256_dir(v2.path) == v2.content_hash
    assert v2.path.name == "v2" and v2.path.parent.name == "faq"


def test_content_hash_depends_on_content_only(any_store: Store) -> None:
    a = _make(any_store, "a", "same")
    b = _make(any_store, "b", "same")
    c = _make(any_store, "c", "different")
    assert a.content_hash == b.content_hash != c.content_hash


def test_unknown_refs_name_what_exists(any_store: Store) -> None:
    _make(any_store, "faq", "x")
    with pytest.raises(NotFoundError, match="faq:v1"):
        any_store.resolve("faq:v9", "dataset")
    with pytest.raises(NotFoundError, match="known datasets: faq"):
        any_store.resolve("nope", "dataset")
    with pytest.raises(BadInputError):
        parse_ref("bad/name")
    assert parse_ref("手册:v3") == ("手册", 3)


def test_failed_build_registers_nothing(any_store: Store) -> None:
    with pytest.raises(RuntimeError):
        with any_store.create("dataset", "broken") as d:
            (d.path / "half.txt").write_text("partial")
            raise RuntimeError("disk full halfway")
    assert any_store.list("dataset") == []
    folder = any_store.root / "dataset" / "broken"
    assert not any(folder.iterdir())  # temp folder removed, no v1


def test_missing_parent_rolls_back(any_store: Store) -> None:
    v1 = _make(any_store, "faq", "x")
    ghost = v1.model_copy(update={"name": "ghost"})
    with pytest.raises(NotFoundError):
        _make(any_store, "faq", "y", parents=[ghost])
    assert [i.ref for i in any_store.list("dataset")] == ["faq:v1"]
    assert not (any_store.root / "dataset" / "faq" / "v2").exists()


def test_lineage_walks_to_sources(any_store: Store) -> None:
    src = [{"path": "/data/a.pdf", "sha256": "ab" * 32}]
    raw = _make(any_store, "raw", "r", meta={"sources": src})
    _make(any_store, "clean", "c", parents=[raw])
    tree = any_store.lineage("clean", "dataset")
    assert tree.ref == "clean:v1"
    assert tree.parents[0].ref == "raw:v1" and tree.parents[0].sources == src


def test_concurrent_writers_get_distinct_versions(any_store: Store) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            _make(any_store, "race", f"payload {i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    versions = sorted(i.version for i in any_store.list("dataset", "race"))
    assert versions == [1, 2, 3, 4]
    for i in any_store.list("dataset", "race"):
        assert (i.path / "manifest.json").exists()
