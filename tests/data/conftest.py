"""Fixtures for the data-stage tests: real Word 97 (.doc) binary files.

The writer lives in examples/word97.py (it also makes the sample data's .doc notice); it is
loaded from that path so there is one copy of it and the examples folder stays off sys.path.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import pytest

_WORD97_PY = Path(__file__).resolve().parents[2] / "examples" / "word97.py"


def _load_word97() -> ModuleType:
    """Import examples/word97.py by path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("luodi_examples_word97", _WORD97_PY)
    assert spec is not None and spec.loader is not None, f"cannot load {_WORD97_PY}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


write_word97: Callable[[Path, Sequence[str]], Path] = _load_word97().write_word97


@pytest.fixture
def make_doc(tmp_path: Path) -> Callable[[str, Sequence[str]], Path]:
    """Factory: make_doc("name.doc", paragraphs) writes a real Word 97 file in tmp_path."""
    return lambda name, paragraphs: write_word97(tmp_path / name, paragraphs)
