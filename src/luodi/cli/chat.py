"""`luodi chat MODEL`: a streaming terminal chat (thin: the session lives in luodi.chat)."""

from __future__ import annotations

import os
import sys

import typer

from luodi.cli.render import err
from luodi.cli.state import STATE
from luodi.errors import BadInputError

COMMANDS = "/reset clears the history, /exit or Ctrl-D quits"


def _note(text: str) -> None:
    err.print(text, markup=False, highlight=False)


def _stream(session, text: str) -> None:  # noqa: ANN001 - a luodi.chat.ChatSession
    """Print the reply to `text` as it arrives; Ctrl-C stops this reply, not the chat."""
    try:
        for piece in session.send(text):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        session.cancel()
        sys.stdout.write("\n")
        _note("(stopped; this reply is not kept in the history)")
        return
    sys.stdout.write("\n")
    sys.stdout.flush()


def _read(prompt: str) -> str | None:
    """One line from stdin (None at end of input or Ctrl-C at the prompt)."""
    try:
        return input(prompt)
    except (EOFError, KeyboardInterrupt):
        return None


def chat(
    model: str = typer.Argument(
        ..., help="Model version (NAME, NAME:vN, NAME@production) or base model (default, path)."
    ),
    system: str | None = typer.Option(None, "--system", help="System prompt."),
    max_new_tokens: int = typer.Option(
        256, "--max-new-tokens", min=1, help="Most tokens per reply."
    ),
    temperature: float = typer.Option(
        0.7, "--temperature", min=0.0, help="Sampling temperature; 0 = greedy (deterministic)."
    ),
    top_p: float = typer.Option(0.9, "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for reproducible sampling."),
    once: str | None = typer.Option(
        None, "--once", help="Answer this one message and exit (for scripts)."
    ),
) -> None:
    """Chat with a model in the terminal, replies streamed as they are generated.

    Type a message and Enter; /reset clears the history, /exit or Ctrl-D quits, Ctrl-C stops
    a reply. Replies go to stdout, everything else to stderr.
    """
    # tqdm reads its settings when first imported: this silences loaders' bars (GGUF
    # de-quantizing) that transformers' own progress-bar switch does not cover.
    os.environ.setdefault("TQDM_DISABLE", "1")
    from luodi.chat import open_chat

    _note(f"loading {model} …")
    session = open_chat(
        STATE.store(),
        model,
        system=system,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    if once is not None:
        _stream(session, once)
        return
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401 - line editing and history for input()
    _note(f"chatting with {session.ref} ({COMMANDS})")
    prompt = "you> " if interactive else ""
    while True:
        line = _read(prompt)
        if line is None:
            if interactive:
                sys.stdout.write("\n")
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        if text == "/reset":
            session.reset()
            _note("(history cleared)")
            continue
        if text.startswith("/") and " " not in text:
            _note(f"unknown command {text}; {COMMANDS}")
            continue
        try:
            _stream(session, text)
        except BadInputError as exc:  # e.g. a message too long: say so, keep chatting
            _note(f"error: {exc.message}")
