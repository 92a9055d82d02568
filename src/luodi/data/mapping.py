"""Turning loaded files into records of a kind: format recognition and column mapping.

Rows are recognised by their fields: OpenAI `messages`, ShareGPT `conversations`, alpaca
`instruction/input/output`, or columns whose names match the defaults below (问题/答案,
question/answer, ...) unless the user maps them explicitly. Unmapped columns go to the
record's `meta`; well-known ones are renamed there (类别 → category, 时间 → time) so split and
balance find them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from luodi.data.loaders.base import FileRejected, Loaded, Row
from luodi.data.records import Record, RecordKind, make_record
from luodi.registry import Registry

# Column roles and the names recognised for them by default (case-insensitive).
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "text": ("text", "content", "正文", "内容", "文本", "body", "passage", "document", "sentence"),
    "question": (
        "question",
        "问题",
        "query",
        "q",
        "问",
        "prompt",
        "instruction",
        "提问",
        "用户问题",
    ),
    "answer": ("answer", "答案", "a", "答", "response", "output", "回答", "回复", "标准答案"),
    "system": ("system", "system_prompt", "系统提示"),
    "label": ("label", "labels", "标签", "类别", "category", "class", "intent", "分类"),
    "prompt": ("prompt", "question", "问题", "instruction", "query", "提问"),
    "chosen": ("chosen", "good", "better", "preferred", "优选"),
    "rejected": ("rejected", "bad", "worse", "dispreferred", "劣选"),
    "response": ("response", "answer", "output", "completion", "回答", "回复", "答案"),
    "rating": ("rating", "score", "stars", "thumbs", "feedback", "评分", "评价", "打分", "分数"),
}
# Extra columns renamed in meta so later stages find them under one name.
META_ALIASES: dict[str, str] = {
    "类别": "category", "分类": "category", "category": "category", "subject": "category",
    "科目": "category", "时间": "time", "日期": "time", "time": "time", "timestamp": "time",
    "date": "time", "created_at": "time", "datetime": "time",
}  # fmt: skip
ROLE_ALIASES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "bot": "assistant", "model": "assistant", "chatgpt": "assistant",
    "system": "system", "tool": "tool", "function": "tool", "observation": "tool",
}  # fmt: skip


@dataclass
class Mapping:
    """How columns map to roles: explicit user choices first, then the defaults."""

    explicit: dict[str, str] = field(default_factory=dict)

    def find(self, role: str, keys: list[str]) -> str | None:
        """The column of `keys` playing `role`, or None."""
        if role in self.explicit:
            return self.explicit[role] if self.explicit[role] in keys else None
        lower = {k.lower().strip(): k for k in keys}
        for cand in DEFAULT_COLUMNS[role]:
            if cand in lower:
                return lower[cand]
        return None


@dataclass
class Converted:
    """Records made from one file, the rows skipped (location, reason), and rated rows."""

    records: list[Record] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    rated: list[dict[str, Any]] = field(default_factory=list)
    """Preference inputs awaiting grouping: {prompt, response, rating, location}."""


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v != v:
        return ""
    return v if isinstance(v, str) else str(v)


def _meta(data: dict[str, Any], used: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if k in used or v is None or v == "":
            continue
        key = META_ALIASES.get(k.lower().strip(), k)
        out[key] = (
            v
            if isinstance(v, str | int | float | bool)
            else json.loads(json.dumps(v, ensure_ascii=False, default=str))
        )
    return out


class Context:
    """What converters need to make records: kind, source file and column mapping."""

    def __init__(self, kind: RecordKind, source: str, sha256: str, mapping: Mapping) -> None:
        self.kind, self.source, self.sha256, self.mapping = kind, source, sha256, mapping
        self._n = 0

    def record(self, location: str, meta: dict[str, Any], **fields: Any) -> Record:
        self._n += 1
        return make_record(
            self.kind,
            source=self.source,
            source_sha256=self.sha256,
            location=location,
            ordinal=self._n,
            meta=meta,
            **fields,
        )


def _need_rows(loaded: Loaded, kind: str) -> None:
    if not loaded.rows:
        raise FileRejected(
            f"{kind} records need structured rows (csv, tsv, xlsx, json, jsonl); this file "
            "is a document"
        )


def _unmapped(kind: str, roles: str, row: Row) -> FileRejected:
    return FileRejected(
        f"no {roles} columns for {kind} records (columns: {', '.join(map(str, row.data))}); "
        "map them with --column ROLE=COLUMN"
    )


def convert_text(ctx: Context, loaded: Loaded, out: Converted) -> None:
    """Documents: one record per segment. Rows: the text column, other columns to meta."""
    for seg in loaded.segments:
        if seg.text.strip():
            out.records.append(ctx.record(seg.location, seg.meta, text=seg.text))
    if not loaded.rows:
        return
    col = ctx.mapping.find("text", list(loaded.rows[0].data))
    if col is None:
        raise _unmapped("text", "text", loaded.rows[0])
    for row in loaded.rows:
        text = _text(row.data.get(col)).strip()
        if not text:
            out.problems.append((row.location, f"empty {col!r}"))
            continue
        out.records.append(ctx.record(row.location, _meta(row.data, {col}), text=text))


def _messages_from(row: dict[str, Any]) -> tuple[list[dict[str, str]] | None, set[str]]:
    """OpenAI messages / ShareGPT conversations / alpaca fields; (None, ·) if none match."""
    if isinstance(row.get("messages"), list):
        raw, used = row["messages"], {"messages"}
        msgs = [
            {"role": m.get("role"), "content": m.get("content")} for m in raw if isinstance(m, dict)
        ]
    elif isinstance(row.get("conversations"), list):
        raw, used = row["conversations"], {"conversations"}
        msgs = [
            {"role": m.get("from", m.get("role")), "content": m.get("value", m.get("content"))}
            for m in raw
            if isinstance(m, dict)
        ]
        if isinstance(row.get("system"), str) and row["system"].strip():
            msgs.insert(0, {"role": "system", "content": row["system"]})
            used.add("system")
    elif "instruction" in row and "output" in row:
        used = {"instruction", "input", "output", "system", "history"}
        msgs = []
        if _text(row.get("system")).strip():
            msgs.append({"role": "system", "content": _text(row["system"])})
        for turn in row.get("history") or []:
            if isinstance(turn, list | tuple) and len(turn) == 2:
                msgs += [{"role": "user", "content": _text(turn[0])},
                         {"role": "assistant", "content": _text(turn[1])}]  # fmt: skip
        prompt = _text(row["instruction"])
        if _text(row.get("input")).strip():
            prompt = f"{prompt}\n\n{_text(row['input'])}"
        msgs += [{"role": "user", "content": prompt},
                 {"role": "assistant", "content": _text(row["output"])}]  # fmt: skip
        return msgs, used
    else:
        return None, set()
    for m in msgs:
        m["role"] = ROLE_ALIASES.get(_text(m["role"]).lower(), _text(m["role"]))
        m["content"] = _text(m["content"])
    return msgs, used


def _check_messages(msgs: list[dict[str, str]]) -> str | None:
    bad = sorted({m["role"] for m in msgs} - {"system", "user", "assistant", "tool"})
    if bad:
        return f"unknown message roles {bad}"
    if not any(m["role"] == "user" for m in msgs):
        return "no user message"
    if not any(m["role"] == "assistant" for m in msgs):
        return "no assistant message"
    return None


def convert_qa(ctx: Context, loaded: Loaded, out: Converted) -> None:
    """Rows as messages, sharegpt, alpaca, or question/answer columns."""
    _need_rows(loaded, "qa")
    keys = list(loaded.rows[0].data)
    q_col, a_col = ctx.mapping.find("question", keys), ctx.mapping.find("answer", keys)
    s_col = ctx.mapping.find("system", keys)
    for row in loaded.rows:
        msgs, used = (None, set()) if ctx.mapping.explicit else _messages_from(row.data)
        if msgs is None:
            if q_col is None or a_col is None:
                raise _unmapped(
                    "qa", "question/answer (or messages/conversations/instruction)", row
                )
            msgs = []
            if s_col and _text(row.data.get(s_col)).strip():
                msgs.append({"role": "system", "content": _text(row.data[s_col])})
            msgs += [{"role": "user", "content": _text(row.data.get(q_col))},
                     {"role": "assistant", "content": _text(row.data.get(a_col))}]  # fmt: skip
            used = {q_col, a_col} | ({s_col} if s_col else set())
        problem = _check_messages(msgs)
        if problem:
            out.problems.append((row.location, problem))
            continue
        out.records.append(ctx.record(row.location, _meta(row.data, used), messages=msgs))


def convert_preference(ctx: Context, loaded: Loaded, out: Converted) -> None:
    """prompt/chosen/rejected rows, or prompt/response/rating rows grouped later."""
    _need_rows(loaded, "preference")
    keys = list(loaded.rows[0].data)
    m = ctx.mapping
    p_col, c_col, r_col = m.find("prompt", keys), m.find("chosen", keys), m.find("rejected", keys)
    resp_col, rate_col = m.find("response", keys), m.find("rating", keys)
    if p_col and c_col and r_col:
        for row in loaded.rows:
            d = row.data
            out.records.append(
                ctx.record(
                    row.location,
                    _meta(d, {p_col, c_col, r_col}),
                    prompt=_text(d.get(p_col)),
                    chosen=_text(d.get(c_col)),
                    rejected=_text(d.get(r_col)),
                )
            )
        return
    if not (p_col and resp_col and rate_col):
        raise _unmapped(
            "preference", "prompt/chosen/rejected or prompt/response/rating", loaded.rows[0]
        )
    for row in loaded.rows:
        d = row.data
        out.rated.append(
            {
                "prompt": _text(d.get(p_col)),
                "response": _text(d.get(resp_col)),
                "rating": d.get(rate_col),
                "location": row.location,
                "meta": _meta(d, {p_col, resp_col, rate_col}),
            }
        )


def convert_labeled(ctx: Context, loaded: Loaded, out: Converted) -> None:
    """Rows with a text column and a label column."""
    _need_rows(loaded, "labeled")
    keys = list(loaded.rows[0].data)
    t_col, l_col = ctx.mapping.find("text", keys), ctx.mapping.find("label", keys)
    if t_col is None or l_col is None:
        raise _unmapped("labeled", "text/label", loaded.rows[0])
    for row in loaded.rows:
        text, label = _text(row.data.get(t_col)).strip(), _text(row.data.get(l_col)).strip()
        if not text or not label:
            out.problems.append((row.location, f"empty {'text' if not text else 'label'}"))
            continue
        out.records.append(
            ctx.record(row.location, _meta(row.data, {t_col, l_col}), text=text, label=label)
        )


Converter = Callable[[Context, Loaded, Converted], None]
CONVERTERS: Registry[Converter] = Registry("record converter")
CONVERTERS.add("text", convert_text)
CONVERTERS.add("qa", convert_qa)
CONVERTERS.add("preference", convert_preference)
CONVERTERS.add("labeled", convert_labeled)
