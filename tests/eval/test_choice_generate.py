"""Choice scoring by generation (chat endpoints without prompt log-probabilities): letter
parsing, prompts, unparsable replies, a fake endpoint, and a tiny local model trained to answer
with the letter."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from luodi.config import Settings
from luodi.errors import BadInputError
from luodi.eval import GenerationParams, open_target, parse_suite, run_eval
from luodi.eval.targets import Prompt, Unsupported
from luodi.eval.tasks.choice import DEFAULT_INSTRUCTION, parse_letter
from luodi.store import Store
from luodi.train import TrainConfig, run_train
from tests.eval.test_tasks import choice_prompt, choice_rows, labeled, qa_dataset

ITEMS = [
    ("Which planet is red?", ["Venus", "Mars", "Jupiter", "Saturn"], "B"),
    ("中国的首都是哪里？", ["上海", "北京", "广州", "深圳"], "B"),
    ("Which ocean is largest?", ["Atlantic", "Indian", "Arctic", "Pacific"], "D"),
    ("What do bees make?", ["honey", "silk", "wool", "milk"], "A"),
    ("What is 7 times 6?", ["36", "42", "48", "54"], "B"),
    ("一年有几个月？", ["十", "十二", "十一", "九"], "C"),
]
INSTRUCTION = "Answer with only the letter (A, B, C or D) of the correct option."


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("B", "B"),
        (" b ", "B"),
        ("(c)", "C"),
        ("D.", "D"),
        ("b) 42", "B"),
        ("a. honey", "A"),
        ("a good question: C", "C"),  # a leading article is not an answer
        ("Ｂ", "B"),  # full-width
        ("B. Mars", "B"),
        ("The answer is C", "C"),
        ("答案是D。", "D"),
        ("答案：Ａ", "A"),
        ("I think it's Bob's turn, so D", "D"),  # the B of "Bob" is part of a word
        ("Because", None),
        ("I don't know", None),
        ("E", None),
        ("", None),
    ],
)
def test_parse_letter(reply: str, letter: str | None) -> None:
    assert parse_letter(reply, ["A", "B", "C", "D"]) == letter


class ChatOnly(Unsupported):
    """An endpoint that only generates (no logprobs); replies from a table by question."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.ref, self.replies, self.artifact = "fake:chat", replies, None
        self.capabilities = frozenset({"generate"})
        self.prompts: list[Prompt] = []
        self.params: list[GenerationParams] = []

    def describe(self) -> dict[str, Any]:
        return {"kind": "fake", "ref": self.ref, "content_hash": None}

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        self.prompts += prompts
        self.params.append(params)
        out = []
        for p in prompts:
            text = p if isinstance(p, str) else p[-1]["content"]
            out.append(next(r for q, r in self.replies.items() if q in text))
        return out


def _results(path: str) -> dict[str, Any]:
    return json.loads((Path(path) / "results.json").read_text(encoding="utf-8"))


def test_fake_endpoint_generate_scoring(store: Store) -> None:
    ds = labeled(store, "mc", choice_rows(ITEMS))
    replies = {
        ITEMS[0][0]: "B",  # right
        ITEMS[1][0]: "答案是Ｂ。",  # right
        ITEMS[2][0]: "The answer is A",  # wrong
        ITEMS[3][0]: "I am not sure.",  # unparsable: wrong
        ITEMS[4][0]: "b) 42",  # right
        ITEMS[5][0]: "Sorry",  # unparsable: wrong
    }
    target = ChatOnly(replies)
    task = {"task": "choice", "dataset": ds, "scoring": "generate", "batch_size": 4}
    res = run_eval(store, target, parse_suite({"name": "gen-mc", "tasks": [task]}), seed=3)
    body = _results(res.path)["tasks"]["choice"]
    assert [it["prediction"] for it in body["items"]] == ["B", "B", "A", None, "B", None]
    assert [it["reply"] for it in body["items"]] == [replies[q] for q, *_ in ITEMS]
    assert [it["scores"]["accuracy"] for it in body["items"]] == [1, 1, 0, 0, 1, 0]
    assert res.tasks[0].metrics == {"accuracy": 0.5}
    assert body["details"]["unparsable"] == 2
    # The prompt: the instruction, a blank line, then the usual question with its options.
    assert DEFAULT_INSTRUCTION.format(letters="A, B, C or D") == INSTRUCTION
    assert target.prompts[0] == [
        {"role": "user", "content": INSTRUCTION + "\n\n" + choice_prompt(*ITEMS[0][:2])}
    ]
    assert [(p.temperature, p.max_new_tokens, p.seed) for p in target.params] == [(0.0, 16, 3)] * 2
    run = json.loads((Path(res.path) / "run.json").read_text(encoding="utf-8"))
    assert run["prompts"]["choice"]["scoring"] == "generate"


def test_generate_scoring_few_shot_and_capability_check(store: Store) -> None:
    rows = choice_rows(ITEMS[:2], split="test") + choice_rows(ITEMS[2:4], split="dev")
    ds = labeled(store, "mc-fs", rows)
    target = ChatOnly({q: "A" for q, *_ in ITEMS})
    task = {
        "task": "choice",
        "dataset": ds,
        "scoring": "generate",
        "few_shot": 2,
        "instruction": "",
        "prompt_style": "plain",
    }
    run_eval(store, target, parse_suite({"name": "fs", "tasks": [task]}))
    # Plain text: solved examples end with " LETTER", no instruction, then the question.
    assert target.prompts[0] == "\n\n".join(
        [
            choice_prompt(*ITEMS[2][:2]) + " D",
            choice_prompt(*ITEMS[3][:2]) + " A",
            choice_prompt(*ITEMS[0][:2]),
        ]
    )
    # Log-likelihood scoring needs log-probabilities this endpoint does not give.
    with pytest.raises(BadInputError, match="scoring: generate"):
        run_eval(
            store, target, parse_suite({"name": "ll", "tasks": [{"task": "choice", "dataset": ds}]})
        )
    with pytest.raises(BadInputError, match="letters"):
        parse_suite(
            {"name": "x", "tasks": [{"task": "choice", "dataset": ds, "instruction": "{oops}"}]}
        )


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, str]]:
    """A tiny model trained (SFT) to answer the generate-scoring prompts with the letter."""
    store = Store(Settings(home=tmp_path_factory.mktemp("choice-gen-home")))
    pairs = [(INSTRUCTION + "\n\n" + choice_prompt(q, o), a) for q, o, a in ITEMS]
    qa_dataset(store, "letters", pairs)
    cfg = TrainConfig(
        stage="sft",
        base="tiny:test",
        dataset="letters",
        method="full",
        val_ratio=0.0,
        batch_size=6,
        max_steps=40,
        learning_rate=4e-3,
        scheduler="constant",
        cutoff_len=96,
        tiny_vocab_size=400,
        seed=0,
    )
    model = run_train(store, cfg).model
    labeled(store, "mc", choice_rows(ITEMS))
    yield store, model
    store.close()


def test_tiny_local_model_answers_by_generation(taught: tuple[Store, str]) -> None:
    store, model = taught
    task = {"task": "choice", "dataset": "mc", "scoring": "generate", "batch_size": 4}
    res = run_eval(store, model, parse_suite({"name": "local-gen", "tasks": [task]}))
    items = _results(res.path)["tasks"]["choice"]["items"]
    # Each stored reply is what the model generates for that prompt alone (batching changes
    # nothing), and the prediction is the letter parsed from it.
    target = open_target(store, model)
    params = GenerationParams(max_new_tokens=16, temperature=0.0, seed=0)
    for (q, o, _), it in zip(ITEMS, items, strict=True):
        prompt = [{"role": "user", "content": INSTRUCTION + "\n\n" + choice_prompt(q, o)}]
        (reply,) = target.generate([prompt], params)
        assert it["reply"] == reply
        assert it["prediction"] == parse_letter(reply, ["A", "B", "C", "D"])
    assert res.tasks[0].metrics["accuracy"] >= 5 / 6  # it learned to answer with the letter
