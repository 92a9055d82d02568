"""`luodi ask` through the real command: a grounded answer from the default SmolLM2 with its
sources, and the not-found reply (no model call) for a question the knowledge base lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli

pytestmark = pytest.mark.slow


def test_ask_answers_with_sources_or_says_it_knows_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    doc = tmp_path / "warranty.md"
    doc.write_text(
        "# Warranty\n\nThe XH-S200 sensor carries a warranty of 24 months from delivery.\n\n"
        "# Shipping\n\nOrders leave the Suzhou warehouse within 3 working days.\n",
        encoding="utf-8",
    )
    run_cli("kb", "create", "manuals", "--embedder", "minilm", home=home)
    run_cli("kb", "add", "manuals", str(doc), home=home)
    none = json.loads(
        run_cli(
            "ask", "manuals", "quantum chromodynamics gluon lattice", "--json", home=home
        ).stdout  # fmt: skip
    )
    assert none["citations"] == [] and "nothing on this question" in none["answer"]
    got = json.loads(
        run_cli(
            "ask",
            "manuals",
            "How long is the XH-S200 sensor warranty?",
            "--json",
            "--max-tokens",
            "40",
            home=home,
        ).stdout  # fmt: skip
    )
    assert got["citations"][0]["document"] == "warranty.md"
    assert got["citations"][0]["section"] == "Warranty"
    assert got["answer"].strip()
