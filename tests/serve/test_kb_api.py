"""/v1/knowledge-bases on the real gateway: team scoping, roles (a user searches but does not
upload), multipart uploads with a bad file reported, deletes, and errors in the OpenAI shape."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx

from tests.serve.conftest import gateway

MANUAL = (
    "# Power\n\nConnect the grounding wire before switching on the XH-200 press.\n\n"
    "# Calibration\n\nCalibrate the pressure sensor every six months.\n"
)
FAQ = "The warranty covers parts and labour for twenty-four months.\n"


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]
    return err


def test_kb_api_roles_teams_and_documents(tmp_path: Path) -> None:
    with gateway(tmp_path / "home") as g:
        dev = g.http(g.key("developer", team="support"))
        user = g.http(g.key("user", team="support"))
        other = g.http(g.key("developer", team="sales"))
        admin = g.http()

        r = dev.post(
            "/v1/knowledge-bases",
            json={"name": "manuals", "embedder": "e5", "chunk": {"size": 200, "overlap": 20}},
        )
        assert r.status_code == 201, r.text
        assert (r.json()["ref"], r.json()["team"]) == ("manuals:v1", "support")
        _error(dev.post("/v1/knowledge-bases", json={"name": "manuals"}), 409)
        # a developer may not create in another team, nor load a server-side model folder
        _error(dev.post("/v1/knowledge-bases", json={"name": "x", "team": "sales"}), 403)
        _error(dev.post("/v1/knowledge-bases", json={"name": "x", "embedder": "/etc"}), 403)
        _error(user.post("/v1/knowledge-bases", json={"name": "mine"}), 403)

        # empty: a clear 409 on search
        err = _error(user.post("/v1/knowledge-bases/manuals/search", json={"query": "x"}), 409)
        assert "no documents" in err["message"]

        files = [
            ("files", ("manual.md", MANUAL.encode(), "text/markdown")),
            ("files", ("faq.txt", FAQ.encode(), "text/plain")),
            ("files", ("scan.pdf", b"%PDF-1.4 garbage", "application/pdf")),
        ]
        _error(user.post("/v1/knowledge-bases/manuals/documents", files=files), 403)
        r = dev.post("/v1/knowledge-bases/manuals/documents", files=files, data={"tags": "hw"})
        assert r.status_code == 200, r.text
        ch = r.json()
        assert ch["kb"]["ref"] == "manuals:v2"
        assert sorted(d["source"] for d in ch["added"]) == ["faq.txt", "manual.md"]
        assert [s["file"] for s in ch["skipped"]] == ["scan.pdf"]
        assert all(d["path"].startswith("upload:") and d["tags"] == ["hw"] for d in ch["added"])

        # the user of the team searches; the chunk text, source and scores come back
        r = user.post(
            "/v1/knowledge-bases/manuals/search",
            json={"query": "grounding wire", "top_k": 2, "mode": "hybrid"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["knowledge_base"] == "manuals:v2" and len(body["data"]) == 2
        top = body["data"][0]
        assert top["source"] == "manual.md" and "grounding wire" in top["text"]
        assert top["section"] == "Power" and top["rank"] == 1
        r = user.post(
            "/v1/knowledge-bases/manuals/search",
            json={"query": "warranty", "mode": "lexical", "documents": ["faq.txt"]},
        )
        assert [h["source"] for h in r.json()["data"]] == ["faq.txt"]

        # another team neither sees nor searches it (404, like a missing name)
        assert other.get("/v1/knowledge-bases").json()["data"] == []
        err = _error(other.get("/v1/knowledge-bases/manuals"), 404)
        assert "manuals" in err["message"] and "yours: none" in err["message"]
        _error(other.post("/v1/knowledge-bases/manuals/search", json={"query": "wire"}), 404)
        _error(other.delete("/v1/knowledge-bases/manuals/documents/faq.txt"), 404)
        assert [k["name"] for k in user.get("/v1/knowledge-bases").json()["data"]] == ["manuals"]
        assert [k["name"] for k in admin.get("/v1/knowledge-bases").json()["data"]] == ["manuals"]

        shown = user.get("/v1/knowledge-bases/manuals").json()
        assert [v["ref"] for v in shown["versions"]] == ["manuals:v1", "manuals:v2"]

        # delete: the user may not; the developer may, and its chunks leave search
        _error(user.delete("/v1/knowledge-bases/manuals/documents/manual.md"), 403)
        r = dev.delete("/v1/knowledge-bases/manuals/documents/manual.md")
        assert r.status_code == 200 and r.json()["removed"] == ["manual.md"]
        r = user.post(
            "/v1/knowledge-bases/manuals/search", json={"query": "grounding wire", "mode": "dense"}
        )
        assert [h["source"] for h in r.json()["data"]] == ["faq.txt"]
        _error(dev.delete("/v1/knowledge-bases/manuals/documents/manual.md"), 404)

        # client mistakes are 4xx in the OpenAI shape
        _error(user.post("/v1/knowledge-bases/nope/search", json={"query": "x"}), 404)
        _error(user.post("/v1/knowledge-bases/manuals/search", json={"query": ""}), 400)
        _error(
            user.post("/v1/knowledge-bases/manuals/search", json={"query": "x", "top_k": 0}), 400
        )
        _error(user.post("/v1/knowledge-bases/manuals/search", json={"q": "x"}), 400)
        _error(dev.post("/v1/knowledge-bases/manuals/documents"), 400)  # no files
        bad = [("files", ("..", b"x", "text/plain"))]
        _error(dev.post("/v1/knowledge-bases/manuals/documents", files=bad), 400)
        _error(httpx.get(g.url + "/v1/knowledge-bases"), 401)


def test_kb_api_rebuild_and_lineage(tmp_path: Path) -> None:
    with gateway(tmp_path / "home") as g:
        dev = g.http(g.key("developer", team="support"))
        user = g.http(g.key("user", team="support"))
        other = g.http(g.key("developer", team="sales"))
        admin = g.http()
        r = dev.post("/v1/knowledge-bases", json={"name": "manuals", "embedder": "e5"})
        assert r.status_code == 201, r.text
        files = [
            ("files", ("manual.md", MANUAL.encode(), "text/markdown")),
            ("files", ("faq.txt", FAQ.encode(), "text/plain")),
        ]
        v2 = dev.post("/v1/knowledge-bases/manuals/documents", files=files).json()["kb"]

        # rebuild with smaller chunks: a new version, every chunk re-embedded and <= 40 chars
        r = dev.post(
            "/v1/knowledge-bases/manuals/rebuild", json={"chunk": {"size": 40, "overlap": 0}}
        )
        assert r.status_code == 200, r.text
        ch = r.json()
        assert ch["kb"]["ref"] == "manuals:v3" and ch["kb"]["chunks"] > v2["chunks"]
        assert ch["chunks_embedded"] == ch["kb"]["chunks"]
        assert (ch["kb"]["change"]["op"], ch["kb"]["change"]["embedder"]) == ("rebuild", "e5")
        shown = user.get("/v1/knowledge-bases/manuals").json()
        assert shown["config"]["chunk"] == {"size": 40, "overlap": 0, "unit": "chars"}
        hits = user.post(
            "/v1/knowledge-bases/manuals/search",
            json={"query": "grounding wire", "top_k": 100, "mode": "lexical"},
        ).json()
        assert hits["knowledge_base"] == "manuals:v3" and hits["data"]
        assert all(len(h["text"]) <= 40 for h in hits["data"])
        assert any("grounding wire" in h["text"] for h in hits["data"])
        # no body: the same config again (what repairs a damaged index)
        r = dev.post("/v1/knowledge-bases/manuals/rebuild")
        assert r.status_code == 200, r.text
        assert (r.json()["kb"]["ref"], r.json()["kb"]["chunks"]) == (
            "manuals:v4",
            ch["kb"]["chunks"],
        )

        # lineage: v4 -> v3 -> v2 -> v1, each with the uploaded files by sha256
        tree = user.get("/v1/knowledge-bases/manuals/lineage").json()
        chain = []
        node = tree
        while node:
            chain.append((node["ref"], node["role"]))
            node = node["parents"][0] if node["parents"] else None
        assert chain == [("manuals:v4", "self"), ("manuals:v3", "previous"),
                         ("manuals:v2", "previous"), ("manuals:v1", "previous")]  # fmt: skip
        assert {s["sha256"] for s in tree["sources"]} == {
            hashlib.sha256(MANUAL.encode()).hexdigest(),
            hashlib.sha256(FAQ.encode()).hexdigest(),
        }
        old = user.get("/v1/knowledge-bases/manuals:v2/lineage").json()
        assert old["ref"] == "manuals:v2" and len(old["parents"]) == 1

        # who may, and bad input: a clear 4xx, and no new version
        _error(user.post("/v1/knowledge-bases/manuals/rebuild"), 403)
        _error(other.post("/v1/knowledge-bases/manuals/rebuild"), 404)
        _error(other.get("/v1/knowledge-bases/manuals/lineage"), 404)
        _error(dev.post("/v1/knowledge-bases/nope/rebuild"), 404)
        _error(user.get("/v1/knowledge-bases/nope/lineage"), 404)
        err = _error(dev.post("/v1/knowledge-bases/manuals:v2/rebuild"), 409)
        assert "newest version" in err["message"]
        err = _error(
            dev.post("/v1/knowledge-bases/manuals/rebuild", json={"chunk": {"overlap": 40}}), 400
        )
        assert "overlap (40) must be smaller than size (40)" in err["message"]
        _error(dev.post("/v1/knowledge-bases/manuals/rebuild", json={"index": "annoy"}), 400)
        _error(dev.post("/v1/knowledge-bases/manuals/rebuild", json={"chunks": {}}), 400)
        _error(dev.post("/v1/knowledge-bases/manuals/rebuild", json={"embedder": "/etc"}), 403)
        err = _error(
            admin.post("/v1/knowledge-bases/manuals/rebuild", json={"embedder": "nope"}), 400
        )
        assert "unknown embedder 'nope'" in err["message"]
        versions = user.get("/v1/knowledge-bases/manuals").json()["versions"]
        assert [v["ref"] for v in versions][-1] == "manuals:v4"


def _upload(name: str, size: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    line = b"The XH-200 press must be calibrated every six months by a technician.\n"
    return [("files", (name, (line * (size // len(line) + 1))[:size], "text/plain"))]


def test_uploads_have_their_own_body_limit(tmp_path: Path) -> None:
    limits = {"max_body_bytes": 2048, "max_upload_bytes": 20_000}
    with gateway(tmp_path / "home", limits=limits) as g:
        admin = g.http()
        assert (
            admin.post("/v1/knowledge-bases", json={"name": "kb", "embedder": "e5"}).status_code
            == 201
        )
        # an upload above max_body_bytes but within max_upload_bytes is accepted
        r = admin.post("/v1/knowledge-bases/kb/documents", files=_upload("ok.txt", 6000))
        assert r.status_code == 200, r.text
        assert [d["source"] for d in r.json()["added"]] == ["ok.txt"]

        # beyond max_upload_bytes: 413 in the OpenAI shape, with a Content-Length ...
        err = _error(
            admin.post("/v1/knowledge-bases/kb/documents", files=_upload("big.txt", 30_000)), 413
        )
        assert "20000 bytes" in err["message"] and "max_upload_bytes" in err["message"]
        assert err["code"] == "request_too_large"
        # ... and chunked (no Content-Length)
        req = httpx.Request("POST", g.url, files=_upload("big.txt", 30_000))
        body = req.read()
        pieces = [body[i : i + 8192] for i in range(0, len(body), 8192)]
        r = admin.post(
            "/v1/knowledge-bases/kb/documents",
            content=iter(pieces),
            headers={"content-type": req.headers["content-type"]},
        )
        err = _error(r, 413)
        assert "max_upload_bytes" in err["message"]
        # a chunked upload within the limit goes through whole
        req = httpx.Request("POST", g.url, files=_upload("chunked.txt", 9000))
        body = req.read()
        r = admin.post(
            "/v1/knowledge-bases/kb/documents",
            content=iter([body[:4000], body[4000:]]),
            headers={"content-type": req.headers["content-type"]},
        )
        assert r.status_code == 200, r.text
        assert r.json()["added"][0]["source"] == "chunked.txt"

        # every other route keeps max_body_bytes, the knowledge-base ones included
        err = _error(admin.post("/v1/knowledge-bases/kb/search", json={"query": "x" * 3000}), 413)
        assert "2048 bytes" in err["message"] and "max_body_bytes" in err["message"]
        _error(
            admin.post("/v1/knowledge-bases", json={"name": "x", "description": "d" * 3000}), 413
        )
        # nothing half-written: two versions after create, and the two accepted uploads
        shown = admin.get("/v1/knowledge-bases/kb").json()
        assert sorted(d["source"] for d in shown["documents"]) == ["chunked.txt", "ok.txt"]
        assert [v["ref"] for v in shown["versions"]] == ["kb:v1", "kb:v2", "kb:v3"]
