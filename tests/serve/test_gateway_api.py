"""The gateway's OpenAI-compatible API through the real `openai` client against a real uvicorn
server: chat (plain and streamed), tools, completions, embeddings, models, feedback, metrics,
request ids and labels, and clean 4xx answers to bad requests."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import openai
import pytest

from tests.serve.conftest import Gw, fake_route, gateway

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Gw:
    deps = [
        {"name": "assistant", "routes": [fake_route("alpha")], "system_prompt": "Be brief."},
        {"name": "embedder", "routes": [fake_route("vec")]},
    ]
    with gateway(tmp_path_factory.mktemp("gw"), deps) as g:
        yield g


def test_chat_reply_usage_request_id_and_label(gw: Gw) -> None:
    client = gw.client()
    raw = client.chat.completions.with_raw_response.create(
        model="assistant", messages=[{"role": "user", "content": "你好"}]
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "alpha: 你好"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == 2 and resp.usage.completion_tokens == 3
    assert resp.usage.total_tokens == 5
    extra = resp.model_extra["luodi"]
    assert extra["ai_generated"] is True
    assert extra["model_version"] == "openai:http://fake.invalid/v1#alpha"
    assert raw.headers["x-request-id"] == resp.id == extra["request_id"]
    assert raw.headers["x-luodi-model-version"] == extra["model_version"]


def test_stream_equals_plain_reply_and_reports_usage(gw: Gw) -> None:
    client = gw.client()
    msgs = [{"role": "user", "content": "stream me please"}]
    plain = client.chat.completions.create(model="assistant", messages=msgs)
    chunks = list(
        client.chat.completions.create(
            model="assistant", messages=msgs, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_system_prompt_of_the_deployment_reaches_the_backend(gw: Gw) -> None:
    gw.client().chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "hi"}]
    )
    gw.recorder.flush()
    from sqlalchemy import select

    from luodi.store.models import RequestLogRow

    with gw.store.engine.connect() as c:
        prompts = c.execute(select(RequestLogRow.prompt_masked)).scalars().all()
    first = json.loads(prompts[-1])[0]
    assert first == {"role": "system", "content": "Be brief."}


def test_tool_calls_plain_and_streamed(gw: Gw) -> None:
    client = gw.client()
    msgs = [{"role": "user", "content": "where is order 42"}]
    resp = client.chat.completions.create(model="assistant", messages=msgs, tools=TOOLS)
    call = resp.choices[0].message.tool_calls[0]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"q": "where is order 42"}
    chunks = list(
        client.chat.completions.create(model="assistant", messages=msgs, tools=TOOLS, stream=True)
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].tool_calls[0].function.name == "lookup_order"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # tool_choice "none" hides the tools: a plain reply
    resp = client.chat.completions.create(
        model="assistant", messages=msgs, tools=TOOLS, tool_choice="none"
    )
    assert resp.choices[0].message.content == "alpha: where is order 42"


def test_n_choices_and_completions(gw: Gw) -> None:
    client = gw.client()
    resp = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "x"}], n=3, seed=1
    )
    assert [c.index for c in resp.choices] == [0, 1, 2]
    comp = client.completions.create(model="assistant", prompt=["one", "two"], max_tokens=5)
    assert [c.text for c in comp.choices] == ["alpha: one", "alpha: two"]
    streamed = list(client.completions.create(model="assistant", prompt="three", stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "alpha: three"


def test_embeddings_float_and_base64(gw: Gw) -> None:
    client = gw.client()
    resp = client.embeddings.create(model="embedder", input=["ab", "abcd"])  # base64 by default
    assert [d.embedding for d in resp.data] == [[2.0, 1.0, 0.0], [4.0, 1.0, 0.0]]
    assert resp.usage.prompt_tokens == 6
    with gw.http() as h:
        body = h.post(
            "/v1/embeddings",
            json={"model": "embedder", "input": "abc", "encoding_format": "base64"},
        ).json()
    vec = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert vec.tolist() == [3.0, 1.0, 0.0]


def test_models_lists_deployments(gw: Gw) -> None:
    ids = sorted(m.id for m in gw.client().models.list())
    assert ids == ["assistant", "embedder"]
    card = gw.client().models.retrieve("assistant")
    assert card.owned_by == "default"


def test_feedback_on_a_response(gw: Gw) -> None:
    client = gw.client()
    resp = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "rate me"}]
    )
    with gw.http() as h:
        ok = h.post(
            "/v1/feedback",
            json={"request_id": resp.id, "rating": "4/5", "correction": "better answer"},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["rating"] == pytest.approx(0.8)
        missing = h.post("/v1/feedback", json={"request_id": "req-nope", "rating": 1})
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "invalid_request_error"


def test_metrics_count_requests_per_version(gw: Gw) -> None:
    gw.client().chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "m"}]
    )
    with gw.http() as h:
        text = h.get("/metrics").text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("luodi_requests_total{")
        and 'endpoint="chat.completions"' in ln
        and 'status="200"' in ln
    )
    assert 'model_version="openai:http://fake.invalid/v1#alpha"' in line
    assert float(line.rsplit(" ", 1)[1]) >= 1
    assert "luodi_request_latency_seconds_bucket" in text
    assert "luodi_queue_depth" in text


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"model": "assistant", "messages": "hi"}', 400, "messages"),
        (
            b'{"model": "assistant", "messages": [{"role": "user", "content": "x"}], '
            b'"temperature": "hot"}',
            400,
            "temperature",
        ),  # fmt: skip
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "nope"),
        (
            b'{"model": "assistant", "messages": [{"role": "user", "content": "x"}], '
            b'"max_tokens": 100000}',
            400,
            "max_tokens",
        ),  # fmt: skip
        (
            b'{"model": "assistant", "messages": [{"role": "user", "content": "x"}], '
            b'"logprobs": true}',
            400,
            "logprobs",
        ),  # fmt: skip
        (b'{"model": "embedder", "input": [[1, 2]]}', 400, "token arrays"),
    ],
)
def test_bad_requests_get_clear_4xx(gw: Gw, body: bytes, status: int, needle: str) -> None:
    path = "/v1/embeddings" if b'"input"' in body else "/v1/chat/completions"
    with gw.http() as h:
        r = h.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"]
    assert r.headers["x-request-id"].startswith("req-")


def test_oversized_body_is_413_with_and_without_length(gw: Gw) -> None:
    big = b'{"model": "assistant", "messages": [{"role": "user", "content": "' + b"a" * 1_100_000
    big += b'"}]}'
    with gw.http() as h:
        r = h.post(
            "/v1/chat/completions", content=big, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413
        chunked = h.post(
            "/v1/chat/completions",
            content=iter([big[:600_000], big[600_000:]]),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413
        assert "too large" in chunked.json()["error"]["message"]


def test_unknown_route_and_method(gw: Gw) -> None:
    with gw.http() as h:
        assert h.get("/v1/nothing").json()["error"]["message"].startswith("no such endpoint")
        assert h.get("/v1/chat/completions").status_code == 405


def test_openai_errors_surface_as_client_exceptions(gw: Gw) -> None:
    with pytest.raises(openai.NotFoundError):
        gw.client().chat.completions.create(
            model="ghost", messages=[{"role": "user", "content": "x"}]
        )


def test_label_text_appended_when_configured(tmp_path: Path) -> None:
    with gateway(tmp_path, [{"name": "a", "routes": [fake_route("l")]}], label_text=True) as g:
        resp = g.client().chat.completions.create(
            model="a", messages=[{"role": "user", "content": "q"}]
        )
        assert resp.choices[0].message.content.endswith("【本内容由人工智能生成 / AI-generated】")
        chunks = g.client().chat.completions.create(
            model="a", messages=[{"role": "user", "content": "q"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == resp.choices[0].message.content
