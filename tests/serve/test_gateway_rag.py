"""A deployment with a knowledge base: the question is grounded in retrieved chunks (numbered
sources in the prompt), the response cites them, the request log keeps their ids, and a
question the knowledge base has nothing on is answered with the not-found message."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from luodi.config import Settings
from luodi.rag.chunk import ChunkConfig
from luodi.rag.kb import KBConfig, add_documents, create_kb
from luodi.store import Store
from luodi.store.models import RequestLogRow
from tests.serve.conftest import fake_route, gateway

DOCS = {
    "warranty.md": "# Warranty\n\nThe XH-S200 sensor carries a warranty of 24 months from "
    "delivery. Damage from water ingress is not covered.\n",
    "shipping.md": "# Shipping\n\nOrders leave the Suzhou warehouse within 3 working days. "
    "Express delivery to Beijing takes two days.\n",
}


def test_grounded_answer_cites_sources_and_says_when_it_knows_nothing(tmp_path: Path) -> None:
    store = Store(Settings(home=tmp_path / "home"))
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    create_kb(store, KBConfig(name="manuals", embedder="minilm", chunk=ChunkConfig(size=200)))
    add_documents(store, "manuals", [docs])
    dep = {
        "name": "helpdesk",
        "knowledge_bases": ["manuals"],
        "rag": {"top_k": 2, "min_score": 0.3},
        "routes": [fake_route("h")],
    }
    with gateway(tmp_path, [dep], store=store) as g:
        client = g.client()
        resp = client.chat.completions.create(
            model="helpdesk",
            messages=[{"role": "user", "content": "How long is the warranty of the XH-S200?"}],
        )
        extra = resp.model_extra["luodi"]
        cites = extra["citations"]
        assert cites[0]["document"].endswith("warranty.md") and cites[0]["index"] == 1
        assert cites[0]["knowledge_base"] == "manuals:v2"
        assert extra["retrieved"][0] == cites[0]["chunk_id"]
        g.recorder.flush()
        with g.store.engine.connect() as c:
            row = c.execute(select(RequestLogRow).where(RequestLogRow.request_id == resp.id)).one()
        system = json.loads(row.prompt_masked)[0]["content"]
        assert "[1] (" in system and "24 months" in system
        assert row.retrieved[0] == cites[0]["chunk_id"]
        nothing = client.chat.completions.create(
            model="helpdesk",
            messages=[{"role": "user", "content": "quantum chromodynamics gluon lattice"}],
        )
        assert nothing.choices[0].message.content.startswith("抱歉，知识库中没有")
        assert nothing.model_extra["luodi"]["citations"] == []
        streamed = client.chat.completions.create(
            model="helpdesk",
            messages=[{"role": "user", "content": "How long is the warranty of the XH-S200?"}],
            stream=True,
        )
        chunks = list(streamed)
        assert chunks[0].model_extra["luodi"]["citations"][0]["document"].endswith("warranty.md")
