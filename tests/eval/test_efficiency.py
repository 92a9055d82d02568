"""Streaming targets and the efficiency task: a tiny local model (stream equals generate,
token counts equal transformers' own), an OpenAI-compatible streaming server started by the
test (usage and timing lower bounds it controls), and `luodi eval run` with a suite file."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from luodi.config import Settings
from luodi.errors import BadInputError
from luodi.eval import parse_suite, run_eval
from luodi.eval.openai_target import OpenAITarget
from luodi.eval.targets import (
    GenerationParams,
    LocalCausalTarget,
    Prompt,
    TargetError,
    TokenStream,
    Unsupported,
)
from luodi.eval.tasks.efficiency import peak_rss_bytes
from luodi.models.chat import stop_token_ids
from luodi.models.tiny import build_tiny, train_tokenizer
from luodi.store import Store
from luodi.train import TrainConfig, run_train
from tests.helpers import run_cli, save_qa

QA = [
    ("What are the office hours?", "Monday to Friday, 9am to 6pm."),
    ("年假有多少天？", "入职满一年后每年十五天年假。"),
    ("Where is the VPN guide?", "On the intranet under IT."),
    ("报销需要什么材料？", "发票原件和审批单。"),
    ("Who approves travel?", "Your manager."),
]


@pytest.fixture(scope="module")
def tiny() -> LocalCausalTarget:
    tok = train_tokenizer([q + " " + a for q, a in QA] * 4, vocab_size=300)
    return LocalCausalTarget(build_tiny("test", tok, seed=2), tok, ref="tiny-random")


class Counting:
    """Wraps a target, counting stream calls."""

    def __init__(self, inner: LocalCausalTarget) -> None:
        self.inner, self.streams = inner, 0
        self.ref, self.artifact, self.capabilities = inner.ref, None, inner.capabilities

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def stream(self, prompt: Prompt, params: GenerationParams) -> TokenStream:
        self.streams += 1
        return self.inner.stream(prompt, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_local_stream_equals_generate_and_counts_tokens(tiny: LocalCausalTarget) -> None:
    params = GenerationParams(max_new_tokens=12)
    for q, _ in QA[:3]:
        prompt = [{"role": "user", "content": q}]
        stream = tiny.stream(prompt, params)
        pieces = list(stream)
        assert "".join(pieces).strip() == tiny.generate([prompt], params)[0]
        # The reference: transformers' generate on the same prompt ids.
        text = tiny.tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True
        )
        ids = tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            out = tiny.model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=12,
                do_sample=False,
                eos_token_id=stop_token_ids(tiny.tokenizer),
                pad_token_id=tiny.tokenizer.pad_token_id,
            )
        new = out[0, len(ids) :]
        assert stream.completion_tokens == len(new) and stream.exact
        assert "".join(pieces) == tiny.tokenizer.decode(new, skip_special_tokens=True)
        assert len(pieces) in (len(new), len(new) + 1)  # one per token (+ a held-back tail)


def test_closing_a_local_stream_early_stops_generation(tiny: LocalCausalTarget) -> None:
    forwards = [0]
    hook = tiny.model.register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    prompt = [{"role": "user", "content": QA[0][0]}]
    params = GenerationParams(max_new_tokens=40)
    try:
        full = tiny.stream(prompt, params)
        list(full)
        n_full, forwards[0] = forwards[0], 0
        early = tiny.stream(prompt, params)
        next(early)
        early.close()  # returns once the generating thread has ended
        n_early = forwards[0]
    finally:
        hook.remove()
    assert full.completion_tokens > 10  # the full reply is long ...
    assert n_early <= 3 < n_full  # ... the closed one stopped at the next token
    assert list(early) == []


def test_efficiency_on_a_tiny_local_model(store: Store, tiny: LocalCausalTarget) -> None:
    save_qa(store, QA)
    suite = parse_suite(
        {
            "name": "speed",
            "tasks": [{"task": "efficiency", "dataset": "faq", "max_new_tokens": 8, "warmup": 2}],
        }
    )
    target = Counting(tiny)
    res = run_eval(store, target, suite)  # type: ignore[arg-type]
    (task,) = res.tasks
    m = task.metrics
    assert target.streams == 2 + len(QA)  # warm-up requests are not timed
    body = json.loads((Path(res.path) / "results.json").read_text(encoding="utf-8"))
    t = body["tasks"]["efficiency"]
    items = t["items"]
    assert len(items) == len(QA)
    params = GenerationParams(max_new_tokens=8)
    for it, (q, _) in zip(items, QA, strict=True):
        assert 0 < it["ttft_s"] <= it["latency_s"]
        assert it["completion_tokens"] > 0
        assert it["tokens_per_s"] == pytest.approx(it["completion_tokens"] / it["latency_s"])
        assert it["prediction"] == tiny.generate([[{"role": "user", "content": q}]], params)[0]
    lat = [it["latency_s"] for it in items]
    ttft = [it["ttft_s"] for it in items]
    assert m["latency_p50"] <= m["latency_p95"] and m["ttft_p50"] <= m["ttft_p95"]
    assert m["latency_p50"] == pytest.approx(float(np.percentile(lat, 50)))
    assert m["latency_p95"] == pytest.approx(float(np.percentile(lat, 95)))
    assert m["ttft_p95"] == pytest.approx(float(np.percentile(ttft, 95)))
    tokens = sum(it["completion_tokens"] for it in items)
    assert t["details"]["completion_tokens"] == tokens
    assert m["tokens_per_s"] > 0
    assert m["tokens_per_s"] == pytest.approx(tokens / sum(lat))
    assert m["tokens_per_s"] == pytest.approx(tokens / t["details"]["generation_seconds"])
    assert 0 <= m["rss_growth_bytes"] <= m["peak_rss_bytes"] <= peak_rss_bytes()
    assert "disk_bytes" not in m and "no files" in t["details"]["disk"]["reason"]
    assert t["details"]["reproducible"] is False


class _Streaming(BaseHTTPRequestHandler):
    """Streams `words` one chunk each after `delay` seconds (first) / `gap` seconds (others),
    then a usage chunk when `usage` (completion_tokens = 2 per word), then [DONE]."""

    words = ["Monday", " to", " Friday."]
    delay, gap, usage = 0.05, 0.01, True
    fail = False

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps(
            {"object": "list", "data": [{"id": "bot", "object": "model", "owned_by": "t"}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.path.endswith("/chat/completions") or not req.get("stream"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.fail:
            body = b'{"error": {"message": "backend crashed", "type": "server_error"}}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

        def send(obj: Any) -> None:
            self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
            self.wfile.flush()

        head = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "bot"}
        send({**head, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        for i, w in enumerate(self.words):
            time.sleep(self.delay if i == 0 else self.gap)
            send({**head, "choices": [{"index": 0, "delta": {"content": w}}]})
        if self.usage and (req.get("stream_options") or {}).get("include_usage"):
            n = 2 * len(self.words)
            usage = {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}
            send({**head, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def server() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(**settings: Any) -> str:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Streaming,), settings))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_endpoint_stream_and_efficiency(store: Store, server: Any) -> None:
    url = server()
    target = OpenAITarget(url, "bot", max_retries=0)
    assert "stream" in target.capabilities and "loglikelihood" not in target.capabilities
    stream = target.stream([{"role": "user", "content": "hi"}], GenerationParams())
    assert list(stream) == ["Monday", " to", " Friday."]
    assert stream.completion_tokens == 6 and stream.exact  # the server's usage
    no_usage = OpenAITarget(server(usage=False), "bot", max_retries=0)
    s2 = no_usage.stream("plain prompt", GenerationParams())
    with pytest.raises(TargetError):  # plain prompts use /completions, which this server lacks
        list(s2)
    s3 = no_usage.stream([{"role": "user", "content": "hi"}], GenerationParams())
    assert "".join(s3) == "Monday to Friday." and s3.completion_tokens == 3 and not s3.exact

    save_qa(store, QA[:3])
    suite = parse_suite(
        {"name": "speed", "tasks": [{"task": "efficiency", "dataset": "faq", "warmup": 0}]}
    )
    res = run_eval(store, target, suite)
    (task,) = res.tasks
    assert store.resolve(res.run, "eval_run").meta["measured_tasks"] == ["efficiency"]
    body = json.loads((Path(res.path) / "results.json").read_text(encoding="utf-8"))
    t = body["tasks"]["efficiency"]
    for it in t["items"]:
        # The server waits 50 ms before the first word and 10 ms before each other one, so
        # the whole reply takes at least 70 ms. (Not latency >= ttft + 20 ms: on a busy
        # machine the client can read the first word late and the rest at once.)
        assert it["ttft_s"] >= 0.05 and it["latency_s"] >= max(it["ttft_s"], 0.07)
        assert it["completion_tokens"] == 6 and it["prediction"] == "Monday to Friday."
    assert task.metrics["ttft_p50"] >= 0.05
    assert task.metrics["tokens_per_s"] == pytest.approx(
        18 / sum(it["latency_s"] for it in t["items"])
    )
    assert set(task.metrics) == {
        "ttft_p50",
        "ttft_p95",
        "latency_p50",
        "latency_p95",
        "tokens_per_s",
    }
    rss = t["details"]["rss"]
    assert rss["peak_rss_bytes"] is None and "another process" in rss["reason"]

    broken = server(fail=True)
    res2 = run_eval(store, OpenAITarget(broken, "bot", max_retries=0), suite)
    assert res2.status == "partial" and "backend crashed" in (res2.tasks[0].error or "")


class _NoStream(Unsupported):
    ref, artifact = "classifier", None
    capabilities = frozenset({"classify"})

    def describe(self) -> dict[str, Any]:
        return {"kind": "fake", "ref": self.ref}

    def classify(self, texts: Sequence[str]) -> list[str]:
        return ["x" for _ in texts]


def test_a_target_that_cannot_stream_fails_before_anything_runs(store: Store) -> None:
    save_qa(store, QA[:1])
    suite = parse_suite({"name": "speed", "tasks": [{"task": "efficiency", "dataset": "faq"}]})
    with pytest.raises(BadInputError, match="needs a target that can stream"):
        run_eval(store, _NoStream(), suite)
    with pytest.raises(BadInputError, match="cannot stream replies"):
        _NoStream().stream("x", GenerationParams())
    assert store.list("eval_run") == []


def _folder_bytes(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def test_suite_file_through_the_cli(tmp_path: Path) -> None:
    """efficiency, safety and robustness on a registered model version via `luodi eval run`."""
    home = tmp_path / "home"
    store = Store(Settings(home=home))
    save_qa(store, QA)
    cfg = TrainConfig(
        stage="sft",
        base="tiny:test",
        dataset="faq",
        name="bot",
        method="full",
        val_ratio=0.0,
        batch_size=5,
        max_steps=2,
        cutoff_len=64,
        tiny_vocab_size=300,
        seed=0,
    )
    model = run_train(store, cfg).model
    folder = store.resolve(model, "model").path
    store.close()
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "# luodi eval run bot --suite suite.yaml\n"
        "name: release-checks\n"
        "tasks:\n"
        "  - {task: efficiency, dataset: faq, max_new_tokens: 6, limit: 3}\n"
        "  - {task: safety, dataset: faq, categories: [privacy, uncategorized],\n"
        "     max_new_tokens: 6}\n"
        "  - {task: robustness, dataset: faq, perturbations: [typo, noise],\n"
        "     base: {task: generate, max_new_tokens: 6}}\n",
        encoding="utf-8",
    )
    out = json.loads(
        run_cli("eval", "run", "bot", "--suite", str(suite), "--json", home=home).stdout
    )
    assert out["status"] == "complete" and out["target"] == model
    eff, safety, robust = out["tasks"]
    assert eff["metrics"]["disk_bytes"] == _folder_bytes(folder)
    assert eff["metrics"]["peak_rss_bytes"] > 0 and eff["counts"]["scored"] == 3
    assert eff["metrics"]["ttft_p50"] <= eff["metrics"]["latency_p95"]
    assert safety["counts"]["scored"] == 10 + len(QA)
    assert set(safety["metrics"]) == {
        "refusal_rate",
        "refusal_rate.privacy",
        "refusal_rate.uncategorized",
    }
    assert 0.0 <= robust["metrics"]["consistency"] <= 1.0 and robust["counts"]["scored"] == len(QA)
