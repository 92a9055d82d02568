"""Record kinds: the shapes a dataset's rows take, with their Parquet schemas.

Every record is a plain dict with the common fields (`id`, `source`, `source_sha256`,
`location`, `split`, `meta`) plus the fields of its kind. `split` is empty until `split` runs
(then train/validation/test or fold-K), so a dataset version is one table whose splits are
values of that column.

- `text`: `text` (a corpus passage)
- `qa`: `messages` (list of {role, content}; system/user/assistant, single or multi-turn)
- `preference`: `prompt`, `chosen`, `rejected`, `chosen_rating`, `rejected_rating` (0–1)
- `labeled`: `text`, `label`

`meta` is a JSON object (stored as a JSON string) holding any extra columns of the source,
e.g. a category or a timestamp used by split and balance.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from luodi.errors import BadInputError
from luodi.registry import Registry

Record = dict[str, Any]

COMMON_FIELDS: list[pa.Field] = [
    pa.field("id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("source_sha256", pa.string()),
    pa.field("location", pa.string()),
    pa.field("split", pa.string()),
    pa.field("meta", pa.string()),
]

MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])


@dataclass(frozen=True)
class RecordKind:
    """A record kind: its own fields and how generic operators see its text."""

    name: str
    fields: tuple[pa.Field, ...]
    text_fields: tuple[str, ...]
    """Plain string fields holding text that cleaning operators act on."""
    has_messages: bool = False

    @property
    def schema(self) -> pa.Schema:
        """Parquet schema: the common provenance fields then the kind's own."""
        return pa.schema(COMMON_FIELDS + list(self.fields))

    def texts(self, rec: Record) -> list[str]:
        """Every text of the record, in a fixed order (message contents included)."""
        out = [rec.get(f) or "" for f in self.text_fields]
        if self.has_messages:
            out.extend(m.get("content") or "" for m in rec.get("messages") or [])
        return out

    def content(self, rec: Record) -> str:
        """The record's texts joined by newlines: what length/quality filters judge."""
        return "\n".join(t for t in self.texts(rec) if t)

    def map_texts(self, rec: Record, fn: Callable[[str], str]) -> Record:
        """Apply `fn` to every text; returns `rec` itself when nothing changed, else a copy."""
        changed: dict[str, Any] = {}
        for f in self.text_fields:
            old = rec.get(f)
            if old:
                new = fn(old)
                if new != old:
                    changed[f] = new
        if self.has_messages:
            msgs = rec.get("messages") or []
            new_msgs = []
            any_msg = False
            for m in msgs:
                c = m.get("content") or ""
                nc = fn(c) if c else c
                if nc != c:
                    any_msg = True
                    m = {**m, "content": nc}
                new_msgs.append(m)
            if any_msg:
                changed["messages"] = new_msgs
        if not changed:
            return rec
        return {**rec, **changed}


KINDS: Registry[RecordKind] = Registry("record kind")
KINDS.add("text", RecordKind("text", (pa.field("text", pa.string()),), ("text",)))
KINDS.add(
    "qa",
    RecordKind("qa", (pa.field("messages", pa.list_(MESSAGE)),), (), has_messages=True),
)
KINDS.add(
    "preference",
    RecordKind(
        "preference",
        (
            pa.field("prompt", pa.string()),
            pa.field("chosen", pa.string()),
            pa.field("rejected", pa.string()),
            pa.field("chosen_rating", pa.float64()),
            pa.field("rejected_rating", pa.float64()),
        ),
        ("prompt", "chosen", "rejected"),
    ),
)
KINDS.add(
    "labeled",
    RecordKind(
        "labeled",
        (pa.field("text", pa.string()), pa.field("label", pa.string())),
        ("text",),
    ),
)


def get_kind(name: str) -> RecordKind:
    """The record kind called `name` (text, qa, preference, labeled)."""
    return KINDS.get(name)


def record_id(source: str, location: str, ordinal: int) -> str:
    """A stable id for the `ordinal`-th record taken from `location` of `source`."""
    return hashlib.blake2b(f"{source}\0{location}\0{ordinal}".encode(), digest_size=8).hexdigest()


def make_record(
    kind: RecordKind,
    *,
    source: str,
    source_sha256: str,
    location: str,
    ordinal: int,
    meta: dict[str, Any] | None = None,
    **fields: Any,
) -> Record:
    """A record of `kind` with its provenance; unknown fields are a programming error."""
    own = {f.name for f in kind.fields}
    extra = set(fields) - own
    if extra:
        raise BadInputError(f"fields {sorted(extra)} are not part of {kind.name} records")
    rec: Record = {
        "id": record_id(source, location, ordinal),
        "source": source,
        "source_sha256": source_sha256,
        "location": location,
        "split": None,
        "meta": json.dumps(meta or {}, ensure_ascii=False, sort_keys=True),
    }
    for f in kind.fields:
        rec[f.name] = fields.get(f.name)
    return rec


def meta_of(rec: Record) -> dict[str, Any]:
    """The record's `meta` as a dict."""
    raw = rec.get("meta")
    if not raw:
        return {}
    return json.loads(raw) if isinstance(raw, str) else dict(raw)
