"""`luodi data ingest`: files and folders to version 1 of a dataset of one record kind.

Every file is loaded by the loader of its suffix and converted to records; a file that cannot
be used (unreadable, corrupt, encrypted, empty, unsupported, wrong shape for the kind) is
reported with its reason and skipped, and so is each malformed row; the good rest becomes the
dataset. Nothing is registered unless the whole run succeeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from luodi.data.datasets import save_dataset
from luodi.data.loaders import SUPPORTED_SUFFIXES, load_file
from luodi.data.loaders.base import FileRejected
from luodi.data.mapping import CONVERTERS, Context, Converted, Mapping
from luodi.data.ratings import RatingScale, normalise
from luodi.data.records import Record, RecordKind, get_kind, make_record
from luodi.data.report import DatasetReport, DatasetResult, Problem, SourceFile
from luodi.errors import BadInputError, LuodiError, NotFoundError
from luodi.progress import Progress, no_progress
from luodi.store import Store
from luodi.store.hashing import sha256_file

BATCH = 2048


class IngestConfig(BaseModel):
    """What to ingest and how to read it."""

    model_config = ConfigDict(extra="forbid")

    paths: list[Path] = Field(description="Files and folders (folders are walked recursively).")
    kind: Literal["text", "qa", "preference", "labeled"] = Field(
        description="Record kind to make: text corpus, qa pairs/dialogues, preference, labeled."
    )
    name: str = Field(description="Dataset name; ingest makes its next version.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Column roles to column names, e.g. {question: Q, answer: A}; roles: text, question, "
            "answer, system, label, prompt, chosen, rejected, response, rating. Unset roles use "
            "the defaults (问题/答案, question/answer, ...)."
        ),
    )
    rating_scale: RatingScale = Field(
        default="auto",
        description="Scale of numeric ratings in preference rows; auto infers it per file.",
    )


def _walk(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if not p.exists():
            raise NotFoundError(f"{p} does not exist")
        if p.is_dir():
            yield from sorted(
                q
                for q in p.rglob("*")
                if q.is_file() and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
        else:
            yield p


def _pairs(
    rated: list[tuple[SourceFile, dict[str, Any]]], kind: RecordKind
) -> tuple[list[Record], list[Problem]]:
    """Group rated responses by prompt into (best, each lower-rated) chosen/rejected pairs."""
    groups: dict[str, list[tuple[SourceFile, dict[str, Any]]]] = {}
    problems: list[Problem] = []
    for src, row in rated:
        if row["norm"] is None:
            problems.append(
                Problem(
                    path=src.path, location=row["location"], reason="missing or unreadable rating"
                )
            )
            continue
        groups.setdefault(row["prompt"].strip(), []).append((src, row))
    records: list[Record] = []
    for prompt, members in groups.items():
        members.sort(key=lambda m: -m[1]["norm"])  # stable: ties keep file order
        best_src, best = members[0]
        lower = [m for m in members[1:] if m[1]["norm"] < best["norm"]]
        if not lower:
            src, row = members[0]
            why = (
                "only response to its prompt"
                if len(members) == 1
                else "all responses rated equally"
            )
            problems.append(
                Problem(path=src.path, location=row["location"], reason=f"{why}; no pair")
            )
            continue
        for i, (src, row) in enumerate(lower):
            where = (
                row["location"] if src.path == best_src.path else f"{src.path} {row['location']}"
            )
            rec = make_record(
                kind,
                source=best_src.path,
                source_sha256=best_src.sha256,
                location=f"{best['location']} vs {where}",
                ordinal=i,
                meta={**best["meta"], "rejected_source": src.path},
                prompt=prompt,
                chosen=best["response"],
                rejected=row["response"],
                chosen_rating=best["norm"],
                rejected_rating=row["norm"],
            )
            records.append(rec)
            best_src.records += 1
    return records, problems


def run_ingest(store: Store, cfg: IngestConfig, progress: Progress = no_progress) -> DatasetResult:
    """Load every file under `cfg.paths` into the next version of dataset `cfg.name`.

    Returns the new version with its sources and everything skipped (file or row, reason).
    Raises BadInputError when no file yields a record (nothing is registered then).
    """
    kind = get_kind(cfg.kind)
    files = list(_walk(cfg.paths))
    if not files:
        raise BadInputError(f"no files found under {', '.join(map(str, cfg.paths))}")
    report = DatasetReport(
        name=cfg.name,
        stage="ingest",
        record_kind=kind.name,
        notes={"columns": cfg.columns, "rating_scale": cfg.rating_scale, "files_seen": len(files)},
    )
    return save_dataset(store, report, _records(cfg, kind, files, report, progress))


def _records(
    cfg: IngestConfig,
    kind: RecordKind,
    files: list[Path],
    report: DatasetReport,
    progress: Progress,
) -> Iterator[list[Record]]:
    """Load and convert file by file, streaming batches; fills report.sources/skipped."""
    convert = CONVERTERS.get(kind.name)
    mapping = Mapping(explicit=dict(cfg.columns))
    skipped = report.skipped
    rated: list[tuple[SourceFile, dict[str, Any]]] = []
    produced = 0
    progress(task="files", total=len(files))
    for path in files:
        progress(task="files", advance=0, message=path.name)
        apath = str(path.resolve())
        try:
            loaded = load_file(path)
            sha = sha256_file(path)
            out = Converted()
            convert(Context(kind, apath, sha, mapping), loaded, out)
        except FileRejected as exc:
            skipped.append(Problem(path=apath, reason=exc.message))
            progress(task="files", advance=1)
            continue
        except LuodiError:
            raise
        except Exception as exc:  # a loader's library failing on a hostile file
            skipped.append(Problem(path=apath, reason=f"unreadable: {type(exc).__name__}: {exc}"))
            progress(task="files", advance=1)
            continue
        src = SourceFile(
            path=apath, sha256=sha, format=path.suffix.lower(), records=len(out.records)
        )
        for loc, why in [*loaded.problems, *out.problems]:
            skipped.append(Problem(path=apath, location=loc, reason=why))
        if out.rated:
            norms = normalise([r["rating"] for r in out.rated], cfg.rating_scale)
            for r, n in zip(out.rated, norms, strict=True):
                rated.append((src, {**r, "norm": n}))
        if out.records or out.rated:
            report.sources.append(src)
            for i in range(0, len(out.records), BATCH):
                produced += len(out.records[i : i + BATCH])
                yield out.records[i : i + BATCH]
        else:
            skipped.append(Problem(path=apath, reason="no usable records"))
        progress(task="files", advance=1)
    if rated:
        pairs, problems = _pairs(rated, kind)
        skipped.extend(problems)
        for i in range(0, len(pairs), BATCH):
            produced += len(pairs[i : i + BATCH])
            yield pairs[i : i + BATCH]
    if not produced:
        reasons = "; ".join(f"{Path(p.path).name}: {p.reason}" for p in skipped[:5])
        raise BadInputError(
            f"no {kind.name} records in {len(files)} file(s) (supported: "
            f"{' '.join(SUPPORTED_SUFFIXES)}); {reasons}"
        )
