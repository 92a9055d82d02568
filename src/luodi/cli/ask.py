"""`luodi ask KB "question"`: a grounded answer in the terminal, with its sources."""

from __future__ import annotations

import asyncio
import json

import typer

from luodi.cli.render import out, table
from luodi.cli.state import STATE


def ask(
    kb: str = typer.Argument(..., help="Knowledge base, NAME or NAME:vN."),
    question: str = typer.Argument(..., help="The question."),
    model: str = typer.Option(
        "default", "--model", "-m", help="Model version or base that answers (default SmolLM2)."
    ),
    top_k: int = typer.Option(4, "--top-k", "-k", help="Sources put into the prompt."),
    mode: str = typer.Option("hybrid", "--mode", help="dense, lexical or hybrid retrieval."),
    min_score: float | None = typer.Option(
        None, "--min-score", help="Relevance threshold (dense cosine); default: the embedder's."
    ),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Longest answer in tokens."),
    as_json: bool = typer.Option(False, "--json", help="Print answer and citations as JSON."),
) -> None:
    """Answer QUESTION from knowledge base KB and show the sources it cites. When nothing
    relevant is found it says so instead of asking the model."""
    from luodi.rag.answer import RagSettings, citations, ground, min_score_for
    from luodi.rag.kb import open_kb
    from luodi.rag.retrieve import RetrieveConfig
    from luodi.serve.backends import BackendSpec, GenRequest, StreamDelta, open_backend

    store = STATE.store()
    settings = RagSettings(top_k=top_k, mode=mode)  # type: ignore[arg-type]
    base = open_kb(store, kb)
    threshold = min_score_for(base.config.embedder, min_score)
    hits = base.search(
        question, RetrieveConfig(mode=settings.mode, top_k=top_k, min_score=threshold)
    )
    cites = citations(hits, {h.chunk.id: base.info.ref for h in hits})
    if not hits:
        answer = settings.not_found
        if as_json:
            out.print(json.dumps({"answer": answer, "citations": []}, ensure_ascii=False))
        else:
            out.print(answer, highlight=False)
        return
    messages = ground([{"role": "user", "content": question}], hits, settings)
    backend = open_backend(store, BackendSpec(model=model))
    req = GenRequest(messages=messages, prompt=None, max_tokens=max_tokens, temperature=0.0)

    async def run() -> str:
        pieces: list[str] = []
        try:
            async for ev in backend.stream(req):
                if isinstance(ev, StreamDelta):
                    pieces.append(ev.text)
                    if not as_json:
                        out.print(ev.text, end="", highlight=False, markup=False)
        finally:
            await backend.aclose()
        return "".join(pieces)

    answer = asyncio.run(run()).strip()
    if as_json:
        out.print(json.dumps({"answer": answer, "citations": cites}, ensure_ascii=False))
        return
    out.print()
    rows = [
        [f"[{c['index']}]", c["document"], c["section"] or "-", c["page"] or "-",
         f"{c['score']:.3f}"]
        for c in cites
    ]  # fmt: skip
    out.print(table("sources", ["#", "document", "section", "page", "score"], rows))
