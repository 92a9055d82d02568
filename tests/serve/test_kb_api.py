"""/v1/knowledge-bases on the real gateway: team scoping, roles (a user searches but does not
upload), multipart uploads with a bad file reported, deletes, and errors in the OpenAI shape."""

from __future__ import annotations

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
