"""Build examples/ground_truth.json: what was planted in the sample data, for checking cleaning.

Everything is derived from the content lists (not typed twice), so the truth cannot drift from
the files. Positions: `row` is the 1-based data row of a table (the header row not counted),
`line` the 1-based physical line of a .jsonl file; file paths are relative to examples/xinghe/.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import xinghe_company as co
import xinghe_pages as pages
import xinghe_rows as rows

FILES: list[dict[str, str]] = [
    {"path": "handbook/employee_handbook.docx", "format": "docx", "record_kind": "text"},
    {"path": "manuals/xh-cnc-500_manual.pdf", "format": "pdf", "record_kind": "text"},
    {"path": "manuals/xh-s200_quickstart.md", "format": "md", "record_kind": "text"},
    {"path": "manuals/xh-s200_troubleshooting.html", "format": "html", "record_kind": "text"},
    {"path": "faq/faq.xlsx", "format": "xlsx", "record_kind": "qa"},
    {"path": "faq/faq_gbk.csv", "format": "csv", "record_kind": "qa", "encoding": "gbk"},
    {"path": "feedback/feedback_stars.jsonl", "format": "jsonl", "record_kind": "preference"},
    {"path": "feedback/feedback_thumbs.jsonl", "format": "jsonl", "record_kind": "preference"},
    {"path": "tickets/tickets.csv", "format": "csv", "record_kind": "labeled"},
] + [
    {"path": f"corpus/{name}", "format": "txt", "record_kind": "text", "encoding": enc}
    for name, (enc, _) in pages.NOTICES.items()
]

PII = [
    (co.HR_MAIL, "email"),
    (co.HR_MOBILE, "mobile"),
    (co.EMPLOYEE_ID, "resident_id"),
    (co.SALARY_CARD, "bank_card"),
    (co.ENGINEER_MOBILE, "mobile"),
    (co.FAQ_MOBILE, "mobile"),
    (co.FAQ_MAIL, "email"),
    (co.CSV_MOBILE, "mobile"),
    (co.CSV_MAIL, "email"),
    (co.FEEDBACK_MOBILE, "mobile"),
    (co.FEEDBACK_ID, "resident_id"),
    (co.TICKET_MOBILE, "mobile"),
    (co.NOTICE_MOBILE, "mobile"),
    (co.SHUTTLE_MOBILE, "mobile"),
]


def _where(texts: dict[str, str], value: str) -> list[str]:
    """The files whose text contains `value`."""
    return sorted(path for path, text in texts.items() if value in text)


def _question_key(q: str) -> str:
    """A question with spacing removed and full-width punctuation folded (near-dup key)."""
    return re.sub(r"\s+", "", q).replace("？", "?").replace("，", ",")


def _faq_duplicates() -> list[dict]:
    """Exact and near duplicate pairs inside the workbook, the csv, and across the two."""
    out: list[dict] = []
    wb = rows.FAQ_ROWS
    for j in range(len(wb)):
        for i in range(j):
            if wb[i][:2] == wb[j][:2]:
                pair = {"a": {"row": i + 1}, "b": {"row": j + 1}}
                out.append({"type": "exact", "file": "faq/faq.xlsx", **pair, "text": wb[i][0]})
            elif _question_key(wb[i][0]) == _question_key(wb[j][0]) and wb[i][1] == wb[j][1]:
                pair = {"a": {"row": i + 1}, "b": {"row": j + 1}}
                out.append(
                    {
                        "type": "near",
                        "file": "faq/faq.xlsx",
                        **pair,
                        "text": wb[j][0],
                        "why": "same answer; question differs only in spacing and ？ vs ?",
                    }
                )
    cs = rows.CSV_ROWS
    for j in range(len(cs)):
        for i in range(j):
            if cs[i][:2] == cs[j][:2]:
                pair = {"a": {"row": i + 1}, "b": {"row": j + 1}}
                out.append({"type": "exact", "file": "faq/faq_gbk.csv", **pair, "text": cs[i][0]})
        for i, row in enumerate(wb):
            if row[:2] == cs[j][:2]:
                out.append(
                    {
                        "type": "exact",
                        "across": True,
                        "a": {"file": "faq/faq.xlsx", "row": i + 1},
                        "b": {"file": "faq/faq_gbk.csv", "row": j + 1},
                        "text": row[0],
                    }
                )
                break
    return out


def _feedback_truth(stars: list[str], thumbs: list[str]) -> dict:
    """Malformed and unrated lines, and per prompt the best and worst rated response."""
    scales = {
        "feedback/feedback_stars.jsonl": ("1-5 stars", lambda r: (r - 1) / 4),
        "feedback/feedback_thumbs.jsonl": ("👍/👎", lambda r: {"👍": 1.0, "👎": 0.0}[r]),
    }
    out: dict = {"scales": {}, "malformed": [], "missing_rating": [], "preference": []}
    for (path, (scale, norm)), lines in zip(scales.items(), (stars, thumbs), strict=True):
        out["scales"][path] = scale
        by_prompt: dict[str, dict[str, float]] = defaultdict(dict)
        for n, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                out["malformed"].append({"file": path, "line": n, "reason": "truncated JSON"})
                continue
            if rec.get("rating") is None:
                why = "rating is null" if "rating" in rec else "no rating key"
                out["missing_rating"].append({"file": path, "line": n, "reason": why})
                continue
            by_prompt[rec["prompt"]][rec["response"]] = norm(rec["rating"])
        for prompt, rated in by_prompt.items():
            if len(set(rated.values())) > 1:
                best = max(rated, key=rated.__getitem__)
                worst = min(rated, key=rated.__getitem__)
                out["preference"].append(
                    {
                        "file": path,
                        "prompt": prompt,
                        "chosen": best,
                        "rejected": worst,
                        "chosen_rating": rated[best],
                        "rejected_rating": rated[worst],
                    }
                )
    lines_dup = [n + 1 for n, line in enumerate(stars) if line == stars[rows.STARS_DUPLICATE_OF]]
    out["duplicate_lines"] = [{"file": "feedback/feedback_stars.jsonl", "lines": lines_dup}]
    return out


def build_ground_truth(
    texts: dict[str, str],
    tickets: list[tuple[str, str, str]],
    stars: list[str],
    thumbs: list[str],
    password: str,
) -> dict:
    """The ground truth document for the files whose plain texts are `texts`."""
    faq = rows.FAQ_ROWS
    html_row = next(i for i, r in enumerate(faq) if r[1] == rows.FAQ_HTML_ANSWER)
    empty_row = next(i for i, r in enumerate(faq) if r[1] == "")
    seen: dict[str, int] = {}
    ticket_dups = []
    for n, (text, _, _) in enumerate(tickets, 1):
        if text in seen:
            ticket_dups.append(
                {
                    "type": "exact",
                    "file": "tickets/tickets.csv",
                    "a": {"row": seen[text]},
                    "b": {"row": n},
                    "text": text,
                }
            )
        seen.setdefault(text, n)
    # the .txt notices in NOTICES order, then the Word 97 one (texts keeps insertion order)
    notices = [p for p, t in texts.items() if p.startswith("corpus/") and co.BOILERPLATE in t]
    # Word 97 files are written from paragraph lists, not from FILES' notice table
    doc_files = [
        {"path": p, "format": "doc", "record_kind": "text"} for p in texts if p.endswith(".doc")
    ]
    return {
        "about": "What examples/make_examples.py planted in examples/xinghe/ (see README.md).",
        "root": "xinghe",
        "company": {
            "name_zh": co.COMPANY_ZH,
            "name_en": co.COMPANY_EN,
            "address": co.ADDRESS,
            "website": co.WEBSITE,
            "hotline": co.HOTLINE,
            "service_mail": co.SERVICE_MAIL,
        },
        "files": FILES + doc_files,
        "pii": [{"value": v, "type": t, "files": _where(texts, v)} for v, t in PII],
        "allowlist": [
            {"value": co.HOTLINE, "type": "hotline", "files": _where(texts, co.HOTLINE)},
            {"value": co.SERVICE_MAIL, "type": "email", "files": _where(texts, co.SERVICE_MAIL)},
        ],
        "boilerplate": [
            {"line": co.BOILERPLATE, "files": notices},
            {
                "line": co.PDF_HEADER,
                "files": ["manuals/xh-cnc-500_manual.pdf"],
                "where": "running header of every page",
            },
            {
                "regex": r"^星河精密 XH-CNC-500 使用手册 \| 第 \d+ 页$",
                "files": ["manuals/xh-cnc-500_manual.pdf"],
                "where": "footer of every page",
            },
        ],
        "duplicates": [
            {
                "type": "exact",
                "a": {"file": "corpus/notice_spring_festival.txt"},
                "b": {"file": "corpus/notice_spring_festival_copy.txt"},
                "why": "byte-identical copy",
            },
            {
                "type": "near",
                "a": {"file": "corpus/notice_quality_month_bom.txt"},
                "b": {"file": "corpus/notice_quality_month_reissued.txt"},
                "why": "re-issued with one date and one prize changed (and no BOM)",
            },
            *_faq_duplicates(),
            *ticket_dups,
        ],
        "noise_files": [{"file": "corpus/noise_garbled.txt", "why": "mostly symbols and mojibake"}],
        "html": {
            "file": "manuals/xh-s200_troubleshooting.html",
            "must_not_survive": ["dataLayer", "track(", "font-family", "<nav", "<script"],
            "page_chrome": ["产品中心", "关于我们", "隐私政策", "苏ICP备00000000号-1"],
            "entities": {
                "&gt;": ">",
                "&plusmn;": "±",
                "&ge;": "≥",
                "&mdash;": "—",
                "&quot;": '"',
                "&lt;": "<",
                "&Omega;": "Ω",
                "&#8451;": "℃",
            },
        },
        "faq": {
            "file": "faq/faq.xlsx",
            "rows": len(faq),
            "csv_rows": len(rows.CSV_ROWS),
            "empty_answer": {"row": empty_row + 1, "question": faq[empty_row][0]},
            "html_answer": {
                "row": html_row + 1,
                "tags": ["<p>", "<b>", "<br/>", "<a "],
                "text_after_strip": "设置 > 网络",
            },
        },
        "feedback": _feedback_truth(stars, thumbs),
        "labels": {
            "file": "tickets/tickets.csv",
            "rows": len(tickets),
            "counts": dict(Counter(label for _, label, _ in tickets).most_common()),
            "rare": "其他",
            "time_range": [min(t for *_, t in tickets), max(t for *_, t in tickets)],
        },
        "bad_files": [
            {"file": "bad/empty.txt", "reason": "empty", "why": "0 bytes"},
            {
                "file": "bad/corrupt.pdf",
                "reason": "corrupt",
                "why": "first 40% of the manual's bytes: no xref table, no %%EOF",
            },
            {
                "file": "bad/encrypted.pdf",
                "reason": "encrypted",
                "why": f"RC4-128 with user password {password!r}",
            },
            {
                "file": "bad/slides.pptx",
                "reason": "unsupported",
                "why": ".pptx is not a suffix luodi loads (the bytes are not a real deck either)",
            },
            {
                "file": "bad/corrupt.docx",
                "reason": "corrupt",
                "why": "first half of the handbook's bytes: a zip without its central directory",
            },
        ],
    }
