"""`luodi chat`: a model SFT-trained to memorise a few answers gives them back, streamed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from luodi.chat import ChatSession, load_chat_model
from luodi.config import Settings
from luodi.errors import BadInputError, NotFoundError
from luodi.store import Store
from luodi.train import TrainConfig, run_train
from tests.helpers import luodi_bin, run_cli, save_qa

QA = [
    ("What are the office hours?", "Monday to Friday, 9am to 6pm."),
    ("年假有多少天？", "入职满一年后每年十五天年假。"),
    ("Who approves travel expenses?", "Your department manager approves them."),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A luodi home holding model `helpdesk:v1`, trained to memorise QA."""
    home = tmp_path_factory.mktemp("chat") / "home"
    store = Store(Settings(home=home))
    ds = save_qa(store, QA)
    cfg = TrainConfig(
        stage="sft",
        base="tiny:test",
        dataset=ds,
        name="helpdesk",
        method="full",
        val_ratio=0.0,
        batch_size=4,
        max_steps=40,
        learning_rate=3e-3,
        scheduler="constant",
        cutoff_len=96,
        tiny_vocab_size=400,
        seed=0,
    )
    assert run_train(store, cfg).model == "helpdesk:v1"
    store.close()
    yield home


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    s = Store(Settings(home=home))
    yield s
    s.close()


def chat_stdin(home: Path, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`luodi chat` with `stdin` piped in (not a terminal: no prompts are printed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUODI_")}
    env["LUODI_HOME"] = str(home)
    return subprocess.run(
        [luodi_bin(), "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_once_answers_with_the_memorised_answer(home: Path) -> None:
    for (q, a), ref in [(QA[0], "helpdesk@candidate"), (QA[1], "helpdesk:v1")]:
        p = run_cli("chat", ref, "--once", q, "--temperature", "0", home=home)
        assert p.stdout == a + "\n"
        assert "loading" in p.stderr  # status goes to stderr, stdout holds only the reply


def test_interactive_session_through_stdin(home: Path) -> None:
    (q1, a1), (q2, a2), (q3, a3) = QA
    p = chat_stdin(home, f"{q1}\n/reset\n\n{q2}\n/exit\n{q3}\n", "helpdesk", "--temperature", "0")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [a1, a2]  # nothing after /exit is answered
    assert "history cleared" in p.stderr and "chatting with helpdesk:v1" in p.stderr
    # End of input (Ctrl-D) ends the chat cleanly.
    p = chat_stdin(home, f"{q3}\n", "helpdesk", "--temperature", "0")
    assert (p.returncode, p.stdout) == (0, a3 + "\n")


def test_unknown_model_is_a_one_line_error(home: Path) -> None:
    p = run_cli("chat", "nope", "--once", "hi", home=home, check=False)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert "Traceback" not in p.stderr
    assert "nope" in lines[-1] and "helpdesk" in lines[-1]  # names the known models
    assert len([ln for ln in lines if ln.startswith("error")]) == 1


def test_session_streams_keeps_history_and_resets(store: Store) -> None:
    model, tok, ref = load_chat_model(store, "helpdesk:v1")
    assert ref == "helpdesk:v1"
    session = ChatSession(model, tok, temperature=0, ref=ref)
    (q1, a1), (q2, _), _ = QA
    pieces = list(session.send(q1))
    assert len(pieces) > 1 and "".join(pieces).strip() == a1  # streamed, not one block
    assert session.history == [
        {"role": "user", "content": q1},
        {"role": "assistant", "content": a1},
    ]
    # The next prompt carries the history: it is the first exchange's prompt plus more.
    first = session._encode([{"role": "user", "content": q1}])
    with_history = session.prompt_ids(q2)
    fresh = ChatSession(model, tok, temperature=0).prompt_ids(q2)
    assert with_history[: len(first)] == first and len(with_history) > len(fresh)
    session.reset()
    assert session.history == [] and session.prompt_ids(q2) == fresh
    # A system prompt comes first; an abandoned reply is not kept.
    sys_session = ChatSession(model, tok, temperature=0, system="Be brief.")
    assert tok.decode(sys_session.prompt_ids(q1)).startswith("<|im_start|>system\nBe brief.")
    stream = sys_session.send(q1)
    next(stream)
    stream.close()
    assert sys_session.history == []
    # Sampling with a seed repeats itself.
    hot = [ChatSession(model, tok, temperature=1.5, seed=7).ask(q2) for _ in range(2)]
    assert hot[0] == hot[1]


def test_old_turns_are_dropped_to_fit_the_context(store: Store) -> None:
    model, tok, _ = load_chat_model(store, "helpdesk")
    (q1, a1), (q2, a2), (q3, _) = QA
    one = ChatSession(model, tok, temperature=0)
    alone = len(one.prompt_ids(q3))
    assert alone >= 16  # so a quarter of the context below is at least the 4 reply tokens
    session = ChatSession(model, tok, temperature=0, max_new_tokens=4, max_context=alone + 4)
    session.history = [
        {"role": "user", "content": q1},
        {"role": "assistant", "content": a1},
        {"role": "user", "content": q2},
        {"role": "assistant", "content": a2},
    ]
    assert session.prompt_ids(q3) == one.prompt_ids(q3)  # both old exchanges dropped
    with pytest.raises(BadInputError, match="too long"):
        ChatSession(model, tok, max_new_tokens=4, max_context=alone + 3).prompt_ids(q3)


def test_refs_that_are_not_chattable(store: Store) -> None:
    with pytest.raises(NotFoundError, match="model 'nope' is neither a model version nor a base"):
        load_chat_model(store, "nope")
    with pytest.raises(NotFoundError, match="production"):
        load_chat_model(store, "helpdesk@production")
    with pytest.raises(BadInputError, match="untrained tiny model"):
        load_chat_model(store, "tiny:test")
