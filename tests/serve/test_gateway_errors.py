"""A bug behind the gateway is a 500 in the OpenAI error shape that leaves the connection
usable: other requests on the same keep-alive connection, and concurrent clients, go on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from tests.serve.conftest import fake_route, gateway


def test_a_backend_bug_is_a_500_and_the_connection_survives(tmp_path: Path) -> None:
    with gateway(tmp_path, [{"name": "m", "routes": [fake_route("alpha")]}]) as gw:
        http = gw.http()
        body = {"model": "m", "messages": [{"role": "user", "content": "bug:boom"}]}
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 500
        err = r.json()["error"]
        assert err["type"] == "server_error" and err["code"] == "internal_error"
        assert r.headers["x-request-id"] in err["message"]
        assert "simulated bug" not in r.text  # internals stay in the log
        # the same client (one pooled keep-alive connection) carries on
        ok = http.post(
            "/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "hi"}]}
        )
        assert (
            ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "alpha: hi"
        )

        client = gw.client()

        def ask(i: int) -> str:
            text = "bug:x" if i % 3 == 0 else f"q{i}"
            try:
                r = client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": text}]
                )
                return r.choices[0].message.content or ""
            except openai.InternalServerError:
                return "500"

        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(ask, range(30)))
        assert got == ["500" if i % 3 == 0 else f"alpha: q{i}" for i in range(30)]
        metrics = http.get("/metrics").text
        assert (
            'luodi_errors_total{endpoint="/v1/chat/completions",type="server_error"} 11.0'
            in metrics
        )
