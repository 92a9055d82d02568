"""The eval runner: stored artifacts, reproducibility, an OpenAI-compatible HTTP endpoint
started by the test (stdlib http.server), partial runs, and finding production's run."""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from luodi.config import Settings
from luodi.data.datasets import save_dataset
from luodi.data.records import get_kind, make_record
from luodi.data.report import DatasetReport
from luodi.errors import BadInputError, NotFoundError
from luodi.eval import load_suite, parse_suite, production_run, run_eval, show_run
from luodi.registry.stages import set_stage
from luodi.store import Store
from luodi.train import TrainConfig, run_train

QA = [
    ("What are the office hours?", "Monday to Friday, 9am to 6pm."),
    ("年假有多少天？", "入职满一年后每年十五天年假。"),
    ("Where is the VPN guide?", "On the intranet under IT."),
    ("报销需要什么材料？", "发票原件和审批单。"),
    ("Who approves travel?", "Your manager."),
    ("食堂几点开门？", "早上七点半开门。"),
]
CHOICE = [
    ("Which planet is red?", ["Venus", "Mars", "Jupiter", "Saturn"], "B"),
    ("中国的首都是哪里？", ["上海", "北京", "广州", "深圳"], "B"),
    ("Which ocean is largest?", ["Atlantic", "Indian", "Arctic", "Pacific"], "D"),
    ("What do bees make?", ["honey", "silk", "wool", "milk"], "A"),
]
TEXTS = ["the office opens at nine", "年假 十五 天", "press reset twice to clear alarms"]


def _save(store: Store, name: str, kind: str, rows: list[dict[str, Any]]) -> str:
    k = get_kind(kind)
    recs = [
        make_record(
            k,
            source=f"/{name}",
            source_sha256="0" * 64,
            location=f"line {i + 1}",
            ordinal=0,
            **r,
        )
        for i, r in enumerate(rows)
    ]
    report = DatasetReport(name=name, stage="ingest", record_kind=kind)
    return save_dataset(store, report, [recs]).dataset


def _datasets(store: Store) -> None:
    _save(
        store,
        "faq",
        "qa",
        [
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in QA
        ],
    )
    _save(
        store,
        "mc",
        "labeled",
        [{"text": q, "label": a, "meta": dict(zip("ABCD", o, strict=True))} for q, o, a in CHOICE],
    )
    _save(store, "corpus", "text", [{"text": t} for t in TEXTS])
    _save(
        store,
        "tickets",
        "labeled",
        [{"text": q, "label": "faq" if i % 2 else "other"} for i, (q, _) in enumerate(QA)],
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, str, str]]:
    """A store with the datasets and two barely trained versions of model `bot`."""
    store = Store(Settings(home=tmp_path_factory.mktemp("runner-home")))
    _datasets(store)
    cfg = TrainConfig(
        stage="sft",
        base="tiny:test",
        dataset="faq",
        name="bot",
        method="full",
        val_ratio=0.0,
        batch_size=6,
        max_steps=2,
        cutoff_len=64,
        tiny_vocab_size=300,
        seed=0,
    )
    v1 = run_train(store, cfg).model
    v2 = run_train(store, cfg.model_copy(update={"max_steps": 4})).model
    yield store, v1, v2
    store.close()


FULL_SUITE = {
    "name": "all",
    "tasks": [
        {"task": "choice", "dataset": "mc", "batch_size": 3},
        {"task": "generate", "dataset": "faq", "max_new_tokens": 8, "batch_size": 4},
        {
            "task": "generate",
            "dataset": "faq",
            "name": "sampled",
            "max_new_tokens": 8,
            "temperature": 0.9,
        },
        {"task": "classify", "dataset": "tickets"},
        {"task": "perplexity", "dataset": "corpus"},
    ],
}


def _body(path: str, name: str = "results.json") -> dict[str, Any]:
    return json.loads((Path(path) / name).read_text(encoding="utf-8"))


def test_run_is_stored_with_lineage_and_reproducible(
    env: tuple[Store, str, str], tmp_path: Path
) -> None:
    store, v1, _ = env
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(parse_suite(FULL_SUITE).to_yaml(), encoding="utf-8")
    suite = load_suite(suite_file)
    a = run_eval(store, v1, suite, seed=7)
    b = run_eval(store, v1, suite, seed=7)
    assert (a.run, b.run) == ("all:v1", "all:v2") and a.status == "complete"
    ra, rb = _body(a.path), _body(b.path)
    assert ra["tasks"] == rb["tasks"]  # every metric and every item, identical
    assert set(ra["tasks"]) == {"choice", "generate", "sampled", "classify", "perplexity"}
    for label, task in ra["tasks"].items():
        assert task["status"] == "complete" and task["items"], label
        assert all(isinstance(it["id"], str) and it["scores"] for it in task["items"])
        assert a.tasks[[t.name for t in a.tasks].index(label)].metrics == task["metrics"]

    info = store.resolve(a.run, "eval_run")
    assert {(p.kind, p.ref, p.role) for p in info.parents} == {
        ("model", v1, "target"),
        ("dataset", "mc:v1", "data"),
        ("dataset", "faq:v1", "data"),
        ("dataset", "tickets:v1", "data"),
        ("dataset", "corpus:v1", "data"),
    }
    assert info.meta["metrics"] == {k: t["metrics"] for k, t in ra["tasks"].items()}
    assert info.meta["target"]["ref"] == v1 and info.meta["status"] == "complete"
    assert info.meta["target"]["content_hash"] == store.resolve(v1, "model").content_hash
    run = _body(a.path, "run.json")
    assert run["seed"] == 7 and run["libraries"]["torch"] and run["libraries"]["transformers"]
    assert run["datasets"]["choice"] == {
        "dataset": "mc:v1",
        "content_hash": store.resolve("mc", "dataset").content_hash,
        "split": None,
        "support": [],
    }
    assert run["prompts"]["sampled"]["generation"] == {
        "max_new_tokens": 8,
        "temperature": 0.9,
        "top_p": 1.0,
        "seed": 7,
    }
    # The stored suite reruns as it is.
    stored = (Path(a.path) / "suite.yaml").read_text(encoding="utf-8")
    assert (
        stored.startswith("# luodi eval run") and load_suite(Path(a.path) / "suite.yaml") == suite
    )
    assert show_run(store, a.run).tasks == a.tasks


class _Table(BaseHTTPRequestHandler):
    """An OpenAI-compatible server answering from fixed tables (see `serve`)."""

    answers: dict[str, str] = {}
    keys: dict[str, str] = {}
    logprobs = True
    fail_after: int | None = None
    chat_calls = 0
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.endswith("/models"):
            self._send(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": "table-bot", "object": "model", "created": 0, "owned_by": "test"}
                    ],
                },
            )
        else:
            self._send(404, {"error": {"message": "no route"}})

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/chat/completions"):
            cls = type(self)
            with cls.lock:
                cls.chat_calls += 1
                broken = cls.fail_after is not None and cls.chat_calls > cls.fail_after
            if broken:
                self._send(500, {"error": {"message": "backend crashed", "type": "server_error"}})
                return
            question = req["messages"][-1]["content"]
            answer = self.answers.get(question, "I do not know.")
            self._send(
                200,
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 0,
                    "model": req["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                        }
                    ],
                },
            )
        elif self.path.endswith("/completions") and self.logprobs:
            self._send(200, self._completion(req))
        else:
            self._send(404, {"error": {"message": "no route"}})

    def _completion(self, req: dict[str, Any]) -> dict[str, Any]:
        """Echoed prompt split into `\\s*\\S+` tokens: logprob -1 each (none for the first);
        the last token of a choice prompt scores -0.1 when it is the right letter, else -3."""
        prompt = req["prompt"]
        spans = [(m.start(), m.group()) for m in re.finditer(r"\s*\S+", prompt)]
        lps: list[float | None] = [None] + [-1.0] * (len(spans) - 1)
        for question, key in self.keys.items():
            if prompt.startswith(question) and spans:
                lps[-1] = -0.1 if spans[-1][1].strip() == key else -3.0
        tokens = [t for _, t in spans] + [" x"]
        offsets = [o for o, _ in spans] + [len(prompt)]
        return {
            "id": "t",
            "object": "text_completion",
            "created": 0,
            "model": req["model"],
            "choices": [
                {
                    "index": 0,
                    "text": prompt + " x",
                    "finish_reason": "length",
                    "logprobs": {
                        "tokens": tokens,
                        "token_logprobs": [*lps, -0.5],
                        "top_logprobs": None,
                        "text_offset": offsets,
                    },
                }
            ],
        }


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start a table-backed server on 127.0.0.1; returns a factory giving its /v1 URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(**settings: Any) -> str:
        handler = type(
            "Handler", (_Table,), {"chat_calls": 0, "lock": threading.Lock(), **settings}
        )
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _choice_prompt(q: str, opts: list[str]) -> str:
    return (
        q
        + "\n"
        + "\n".join(f"{letter}. {o}" for letter, o in zip("ABCD", opts, strict=True))
        + "\nAnswer:"
    )


def test_suite_against_an_openai_compatible_endpoint(
    env: tuple[Store, str, str], serve: Any
) -> None:
    store, _, _ = env
    answers = {q: a for q, a in QA[:4]}  # the last two questions get a wrong answer
    keys = {_choice_prompt(q, o): k for q, o, k in CHOICE[:3]}  # the 4th: every option -1
    url = serve(answers=answers, keys=keys)
    suite = parse_suite(
        {
            "name": "remote",
            "tasks": [
                {"task": "generate", "dataset": "faq", "batch_size": 4},
                {"task": "choice", "dataset": "mc", "prompt_style": "plain"},
                {"task": "perplexity", "dataset": "corpus"},
            ],
        }
    )
    res = run_eval(store, f"openai:{url}#table-bot", suite)
    gen, choice, ppl = res.tasks
    assert res.status == "complete" and res.target == f"openai:{url}#table-bot"
    assert gen.metrics["exact_match"] == pytest.approx(4 / 6)
    items = _body(res.path)["tasks"]["generate"]["items"]
    assert [it["prediction"] for it in items] == [a for _, a in QA[:4]] + ["I do not know."] * 2
    # Three keyed items right; the fourth is a four-way tie, which goes to A (its key).
    assert choice.metrics["accuracy"] == 1.0
    citems = _body(res.path)["tasks"]["choice"]["items"]
    assert citems[0]["logprobs"] == {"A": -3.0, "B": -0.1, "C": -3.0, "D": -3.0}
    # Every scored token has logprob -1: nll 1, perplexity e.
    assert ppl.metrics["nll"] == pytest.approx(1.0) and ppl.metrics["perplexity"] == pytest.approx(
        math.e
    )
    assert [it["tokens"] for it in _body(res.path)["tasks"]["perplexity"]["items"]] == [
        len(t.split()) - 1 for t in TEXTS
    ]
    info = store.resolve(res.run, "eval_run")
    assert info.meta["target"] == {
        "ref": f"openai:{url}#table-bot",
        "kind": "openai",
        "content_hash": None,
    }
    assert {p.role for p in info.parents} == {"data"}

    # What the endpoint cannot do fails before anything is scored or stored.
    before = len(store.list("eval_run"))
    chat_choice = parse_suite({"name": "remote", "tasks": [{"task": "choice", "dataset": "mc"}]})
    with pytest.raises(BadInputError, match="chat loglikelihood.*prompt_style: plain"):
        run_eval(store, f"openai:{url}#table-bot", chat_choice)
    no_lp = serve(answers=answers, logprobs=False)
    ppl_suite = parse_suite(
        {"name": "remote", "tasks": [{"task": "perplexity", "dataset": "corpus"}]}
    )
    with pytest.raises(BadInputError, match="rolling loglikelihood"):
        run_eval(store, f"openai:{no_lp}#table-bot", ppl_suite)
    with pytest.raises(NotFoundError, match="serves: table-bot"):
        run_eval(store, f"openai:{url}#other-model", ppl_suite)
    assert len(store.list("eval_run")) == before


def test_target_failing_mid_run_is_stored_partial(env: tuple[Store, str, str], serve: Any) -> None:
    store, _, _ = env
    url = serve(answers=dict(QA), fail_after=4)
    suite = parse_suite(
        {"name": "flaky", "tasks": [{"task": "generate", "dataset": "faq", "batch_size": 2}]}
    )
    res = run_eval(store, f"openai:{url}#table-bot", suite)
    (task,) = res.tasks
    assert res.status == "partial" and task.status == "partial"
    assert "backend crashed" in (task.error or "")
    assert (task.counts.records, task.counts.scored) == (6, 4)  # two batches made it
    assert task.metrics["exact_match"] == 1.0  # over the 4 scored items only
    info = store.resolve(res.run, "eval_run")
    assert info.meta["status"] == "partial" and info.meta["task_status"] == {"generate": "partial"}
    assert _body(res.path)["status"] == "partial"


def test_production_run_is_the_production_versions_run_on_the_same_suite(
    env: tuple[Store, str, str],
) -> None:
    store, v1, v2 = env
    suite = parse_suite({"name": "prod", "tasks": [{"task": "choice", "dataset": "mc"}]})
    with pytest.raises(BadInputError, match="production"):
        production_run(store, run_eval(store, v2, suite).run)
    set_stage(store, v1, "production")
    with pytest.raises(NotFoundError, match=f"{v1} \\(production\\) has no eval run on suite prod"):
        production_run(store, run_eval(store, v2, suite).run)
    base = run_eval(store, v1, suite).run
    cand = run_eval(store, v2, suite).run
    assert production_run(store, cand).ref == base
    # A new version of the dataset: the old production run scored other items.
    _save(
        store,
        "mc",
        "labeled",
        [
            {"text": q, "label": a, "meta": dict(zip("ABCD", o, strict=True))}
            for q, o, a in CHOICE[:2]
        ],
    )
    newer = run_eval(store, v2, suite).run
    with pytest.raises(BadInputError, match="other tasks or dataset versions"):
        production_run(store, newer)


def test_local_model_folder_target_scores_like_its_version(env: tuple[Store, str, str]) -> None:
    store, _, v2 = env
    folder = store.resolve(v2, "model").path / "model"  # a full version's complete HF folder
    suite = parse_suite(
        {
            "name": "path",
            "tasks": [
                {"task": "choice", "dataset": "mc:v1"},
                {"task": "perplexity", "dataset": "corpus"},
            ],
        }
    )
    by_version = run_eval(store, v2, suite)
    by_path = run_eval(store, str(folder), suite)
    assert [t.metrics for t in by_path.tasks] == [t.metrics for t in by_version.tasks]
    info = store.resolve(by_path.run, "eval_run")
    assert info.meta["target"]["kind"] == "base_model"
    assert [(p.kind, p.role) for p in info.parents if p.role == "target"] == [
        ("base_model", "target")
    ]
    with pytest.raises(NotFoundError, match="known models: bot"):
        run_eval(store, "/no/such/model", suite)


def test_a_suite_of_model_tasks_needs_a_target(store: Store) -> None:
    """Without a target, a suite fails before anything runs, naming every task that calls a
    model; nothing is stored."""
    _datasets(store)
    with pytest.raises(BadInputError) as exc:
        run_eval(store, None, parse_suite(FULL_SUITE))
    msg = exc.value.message
    assert "task(s) choice, generate, sampled, classify, perplexity call a model" in msg
    assert "openai:http://HOST:PORT/v1#MODEL" in msg
    assert store.list("eval_run") == []
