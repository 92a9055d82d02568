"""The front door: `luodi teams/keys create`, `luodi serve --config deploy.yaml` as a real
process serving the default SmolLM2 (llama.cpp) and the shipped MiniLM embedder, the real
`openai` client against it, then `luodi deploy` and `luodi usage` on what it served."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import luodi_bin, run_cli

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_cli_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_cli("teams", "create", "acme", home=home)
    key = run_cli(
        "keys", "create", "--team", "acme", "--role", "admin", "--name", "ops", home=home
    ).stdout.strip()
    assert key.startswith("ld-")
    port = _free_port()
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text(
        f"""# luodi serve --config deploy.yaml
serve:
  port: {port}
  limits: {{max_tokens_cap: 64}}
deployments:
  - name: assistant
    team: acme
    system_prompt: You are the helpdesk of Xinghe Manufacturing.
    routes: [{{model: default, weight: 100}}]
  - name: embed
    team: acme
    routes: [{{model: minilm, engine: embedding}}]
""",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUODI_")}
    env["LUODI_HOME"] = str(home)
    proc = subprocess.Popen(
        [luodi_bin(), "serve", "--config", str(deploy)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway did not become ready"
            time.sleep(0.5)
        client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
        resp = client.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=16,
            temperature=0,
        )
        served = resp.model_extra["luodi"]["model_version"]
        assert served.startswith("smollm2")  # the default base, registered on first use
        assert resp.choices[0].message.content.strip()
        assert resp.usage.completion_tokens <= 16
        streamed = client.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=16,
            temperature=0,
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert text == resp.choices[0].message.content  # greedy: the same reply
        emb = client.embeddings.create(model="embed", input=["warranty period", "保修期"])
        assert [len(d.embedding) for d in emb.data] == [384, 384]
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": "x"}], max_tokens=500
            )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    shown = json.loads(run_cli("deploy", "show", "assistant", "--json", home=home).stdout)
    assert shown["spec"]["routes"][0]["served"] == served
    report = json.loads(
        run_cli("usage", "report", "--by", "model", "--period", "1d", "--json", home=home).stdout
    )
    rows = {r["group"]: r for r in report["rows"]}
    assert rows[served]["requests"] == 3  # two chats and the rejected one
    assert rows[served]["errors"] == 1
