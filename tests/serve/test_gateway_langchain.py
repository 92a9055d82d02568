"""LangChain's ChatOpenAI works against the gateway unchanged: invoke, stream, tool binding."""

from __future__ import annotations

from pathlib import Path

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from tests.serve.conftest import fake_route, gateway


def test_langchain_chat_openai_unchanged(tmp_path: Path) -> None:
    deps = [
        {"name": "bot", "routes": [fake_route("lc")]},
        {"name": "vec", "routes": [fake_route("v")]},
    ]
    with gateway(tmp_path, deps) as g:
        llm = ChatOpenAI(model="bot", base_url=g.url + "/v1", api_key=g.admin_key, max_retries=0)
        reply = llm.invoke([SystemMessage("be brief"), HumanMessage("你好")])
        assert reply.content == "lc: 你好"
        assert reply.response_metadata["finish_reason"] == "stop"
        assert reply.usage_metadata["total_tokens"] == 4  # 2 prompt chars + 2 pieces
        streamed = "".join(c.content for c in llm.stream("hello there"))
        assert streamed == "lc: hello there"

        def lookup_order(q: str) -> str:
            """Find an order by its number."""
            return q

        call = llm.bind_tools([lookup_order]).invoke("where is order 42")
        assert call.tool_calls[0]["name"] == "lookup_order"
        assert call.tool_calls[0]["args"] == {"q": "where is order 42"}
        emb = OpenAIEmbeddings(
            model="vec", base_url=g.url + "/v1", api_key=g.admin_key,
            check_embedding_ctx_length=False,
        )  # fmt: skip
        assert emb.embed_query("abcd") == [4.0, 1.0, 0.0]
