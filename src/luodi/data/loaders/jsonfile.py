"""JSON (.json) and JSON Lines (.jsonl) loaders: one row per JSON object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from luodi.data.loaders.base import FileRejected, Loaded, Row, loader
from luodi.data.loaders.encoding import read_text


@loader(".json")
def load_json(path: Path) -> Loaded:
    """Rows from a JSON document of one of three shapes:

    - an array of objects: one row per object, location "item N" (1-based); items that are
      not objects are reported as problems;
    - an object with exactly one value that is a non-empty array of objects (e.g.
      {"data": [...], "total": 3}): that array, as above;
    - any other object: one row, location "whole file".

    Invalid JSON or a scalar at the top level rejects the file.
    """
    try:
        doc = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise FileRejected(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if isinstance(doc, dict):
        lists = [v for v in doc.values() if _is_object_list(v)]
        if len(lists) != 1:
            return Loaded(rows=[Row(doc, "whole file")])
        doc = lists[0]
    if not isinstance(doc, list):
        raise FileRejected(
            f"JSON top level is {_kind(doc)}; expected an array of objects or an object"
        )
    loaded = Loaded()
    for i, item in enumerate(doc, 1):
        if isinstance(item, dict):
            loaded.rows.append(Row(item, f"item {i}"))
        else:
            loaded.problems.append((f"item {i}", f"not a JSON object but {_kind(item)}"))
    return loaded


@loader(".jsonl")
def load_jsonl(path: Path) -> Loaded:
    """One row per line holding a JSON object, location "line N" (1-based physical line).

    Blank lines are ignored; a line that is not valid JSON, or not an object, is reported as
    a problem with its line number and the parser's message, and the other lines are kept.
    """
    loaded = Loaded()
    decode = json.JSONDecoder().decode
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = decode(line)
        except json.JSONDecodeError as exc:
            loaded.problems.append((f"line {n}", f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if isinstance(obj, dict):
            loaded.rows.append(Row(obj, f"line {n}"))
        else:
            loaded.problems.append((f"line {n}", f"not a JSON object but {_kind(obj)}"))
    return loaded


def _is_object_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")
