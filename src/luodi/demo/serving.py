"""The demo's service: the gateway in this process, simulated users asking questions through
the real `openai` client, and their feedback (ratings and corrections) through /v1/feedback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from luodi.errors import ConflictError, LuodiError
from luodi.progress import Progress
from luodi.store import Store

TEAM = "xinghe"
DEPLOYMENT = "xinghe-assistant"
SYSTEM = "你是星河精密的客服助手，请根据资料简洁、准确地回答。"


@dataclass
class Running:
    """A gateway serving in a background thread."""

    url: str
    admin_key: str
    user_key: str


@contextmanager
def gateway(store: Store, port: int = 0) -> Iterator[Running]:
    """Serve the store's deployments on 127.0.0.1 (a free port by default) with auth on; a
    team, an admin key and a user key are made for the demo."""
    import uvicorn

    from luodi.serve.app import build_deps, create_app
    from luodi.serve.auth import KeyStore
    from luodi.serve.config import ServeConfig

    keys = KeyStore(store)
    try:
        keys.create_team(TEAM, by="luodi demo")
    except ConflictError:
        pass  # a second demo run in the same home
    _, admin = keys.create_key(TEAM, "admin", "demo-admin", by="luodi demo")
    _, user = keys.create_key(TEAM, "user", "demo-user", by="luodi demo")
    cfg = ServeConfig(host="127.0.0.1", port=port, auth=True, reload_interval_s=0.5)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(build_deps(store, cfg)),
            host=cfg.host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, name="luodi-demo-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise LuodiError("the demo gateway did not start")
        time.sleep(0.05)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Running(url=f"http://127.0.0.1:{bound}", admin_key=admin, user_key=user)
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def deploy(store: Store, routes: list[tuple[str, float]], kb: str) -> str:
    """Apply the demo deployment: `routes` (model, weight), grounded in `kb`, default guard."""
    from luodi.serve.deployments import DeploymentSpec, Route, apply

    spec = DeploymentSpec(
        name=DEPLOYMENT,
        team=TEAM,
        routes=[Route(model=m, weight=w) for m, w in routes],
        system_prompt=SYSTEM,
        guard="default",
        knowledge_bases=[kb],
        sticky="none",
    )
    return apply(store, spec).ref


def wait_serving(run: Running, ref: str, timeout_s: float = 300.0) -> None:
    """Block until the gateway serves deployment version `ref` (it reloads within a second,
    then loads the models)."""
    import httpx

    headers = {"authorization": f"Bearer {run.admin_key}"}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = httpx.get(f"{run.url}/admin/deployments", headers=headers, timeout=30).json()
        if any(d.get("serving") == ref for d in r["data"]):
            return
        if DEPLOYMENT in r.get("errors", {}):
            raise LuodiError(f"the gateway cannot serve {ref}: {r['errors'][DEPLOYMENT]}")
        time.sleep(0.25)
    raise LuodiError(f"the gateway did not pick up {ref} within {timeout_s:.0f} s")


class Answer(BaseModel):
    """One question a simulated user asked, and what they thought of the answer."""

    question: str
    answer: str
    served_by: str = Field(description="The model version that answered.")
    citations: list[str] = Field(description="Sources cited: document § section.")
    request_id: str
    stars: int | None = Field(default=None, description="The user's rating, 1–5.")
    corrected: bool = Field(default=False, description="The user sent the right answer.")


def questions(examples: Path, n: int) -> list[dict[str, Any]]:
    """The first `n` questions of the sample question set that carry a reference answer."""
    path = examples / "rag" / "xinghe_questions.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in rows if r.get("answer")][:n]


def _cite(c: dict[str, Any]) -> str:
    where = c.get("section") or (f"p.{c['page']}" if c.get("page") else "")
    return f"{c.get('document', '?')}{' § ' + where if where else ''}"


def ask(run: Running, question: str, *, temperature: float, seed: int, max_tokens: int) -> Answer:
    """Ask the deployment one question through the `openai` client."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{run.url}/v1", api_key=run.user_key, max_retries=0, timeout=600)
    r = client.chat.completions.create(
        model=DEPLOYMENT,
        messages=[{"role": "user", "content": question}],
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
    )
    extra = r.model_extra.get("luodi") or {}
    return Answer(
        question=question,
        answer=r.choices[0].message.content or "",
        served_by=extra.get("model_version", r.system_fingerprint or "?"),
        citations=[_cite(c) for c in extra.get("citations", [])],
        request_id=r.id,
    )


def send_feedback(run: Running, answer: Answer, reference: str) -> None:
    """A strict simulated user who knows the right answer: one star, plus one for every tenth
    of the right answer the reply holds (token F1), at most five; when the reply holds less
    than a third of it, the user also sends the right answer as a correction."""
    import httpx

    from luodi.eval.metrics import token_f1

    f1 = token_f1(answer.answer, reference)
    answer.stars = 1 + min(4, int(f1 * 10))
    body: dict[str, Any] = {"request_id": answer.request_id, "rating": answer.stars, "scale": "1-5"}
    if f1 < 1 / 3:
        body["correction"] = reference
        answer.corrected = True
    r = httpx.post(
        f"{run.url}/v1/feedback",
        json=body,
        headers={"authorization": f"Bearer {run.user_key}"},
        timeout=30,
    )
    if r.status_code >= 300:
        raise LuodiError(f"feedback was refused: {r.status_code} {r.text[:200]}")


def users(
    run: Running, examples: Path, n: int, max_tokens: int, progress: Progress
) -> list[Answer]:
    """`n` users each ask a question twice (greedy, then sampled) and rate both answers."""
    answers: list[Answer] = []
    for i, q in enumerate(questions(examples, n)):
        progress(task="demo", message=f"user {i + 1}/{n} asks: {q['question']}")
        for temperature in (0.0, 0.9):
            a = ask(run, q["question"], temperature=temperature, seed=i, max_tokens=max_tokens)
            send_feedback(run, a, q["answer"])
            answers.append(a)
    return answers
