"""Fuzz every operation of the gateway's OpenAPI schema with schemathesis against the real
server: whatever a client sends, the answer is never a 5xx (and errors keep the OpenAI shape)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.serve.conftest import Gw, fake_route, gateway

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    deps = [
        {
            "name": "assistant",
            "guard": "default",
            "routes": [fake_route("a", 50), fake_route("b", 50)],
        },
    ]
    with gateway(tmp_path_factory.mktemp("fuzz"), deps) as g:
        yield g


def test_no_5xx_and_openai_error_shape(gw: Gw) -> None:
    import httpx
    from hypothesis import given

    spec = httpx.get(gw.url + "/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    headers = {"Authorization": f"Bearer {gw.admin_key}"}
    seen: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        seen.append(f"{op.method.upper()} {op.path}")

        @given(case=op.as_strategy())
        @settings(
            max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
            derandomize=True, database=None,
        )  # fmt: skip
        def check(case) -> None:  # noqa: ANN001 - a schemathesis Case
            resp = case.call(base_url=gw.url, headers=headers)
            assert resp.status_code < 500, (
                case.method,
                case.path,
                resp.status_code,
                resp.text[:500],
            )
            if resp.status_code >= 400:
                err = resp.json()["error"]
                assert isinstance(err["message"], str) and err["message"]
                assert err["type"]

        check()
    assert "POST /v1/chat/completions" in seen and "POST /admin/keys" in seen
