"""`luodi feedback export`: the request log joined with feedback → a new dataset version.

`--to sft` turns every correction into a qa conversation (the client's conversation, then the
corrected answer); `--to dpo` turns ratings and corrections of answers to the same
conversation into preference pairs (see pairs.py). The records go through the data stage's
cleaning recipe for their kind (PII masking, normalisation, dedup — the same operators as
`luodi data clean`) and, with `dedup_against`, lose every record whose prompt the training
data already holds. The survivors are registered as a normal dataset version (splittable,
trainable with `luodi train sft|dpo`) whose parents are the model versions that produced the
answers (role `produced_by`) and the dataset deduplicated against (role `dedup_against`), and
whose meta lists the request ids and feedback ids used. Nothing usable → a result with no
dataset and a message giving the counts of what was skipped and why (the CLI prints it and
exits 2); nothing is registered then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from luodi.data.datasets import iter_batches, record_kind, save_dataset
from luodi.data.datasets import resolve as resolve_dataset
from luodi.data.ops import Drop, Operator, default_recipe, load_recipe
from luodi.data.pipeline import run_ops
from luodi.data.records import Record, get_kind, meta_of
from luodi.data.report import DatasetReport
from luodi.errors import BadInputError, NotFoundError
from luodi.feedback.pairs import Skips, dpo_records, sft_records
from luodi.feedback.source import (
    DeploymentTexts,
    Selection,
    load_rated,
    parse_since,
    prompt_key,
    record_prompt,
)
from luodi.progress import Progress, no_progress
from luodi.store import ArtifactInfo, Store

KIND_OF = {"sft": "qa", "dpo": "preference"}


class FeedbackExportConfig(BaseModel):
    """What `luodi feedback export` turns into which dataset."""

    model_config = ConfigDict(extra="forbid")

    to: Literal["sft", "dpo"] = Field(
        description="sft: corrections → qa conversations; dpo: ratings and corrections of "
        "answers to the same conversation → preference pairs."
    )
    name: str = Field(description="Dataset to register the records as (its next version).")
    since: str | None = Field(
        default=None,
        description="Feedback given since: 7d, 24h, 2w or an ISO date/time (UTC). Default: all.",
    )
    until: str | None = Field(
        default=None, description="Feedback given before this ISO date/time. Default: now."
    )
    deployment: str | None = Field(default=None, description="Only requests to this deployment.")
    model_version: str | None = Field(
        default=None, description="Only requests served by this version (as logged, NAME:vN)."
    )
    team: str | None = Field(default=None, description="Only this team's feedback.")
    dedup_against: str | None = Field(
        default=None,
        description="Dataset (NAME or NAME:vN) whose prompts are dropped from the export, so "
        "feedback repeats no question the training data already answers.",
    )
    keep_system_prompt: bool = Field(
        default=False,
        description="Keep the deployment's system prompt as the records' system turn "
        "(grounding sources are always removed).",
    )
    min_rating: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="sft only: also export uncorrected answers rated at least this (0–1).",
    )
    recipe: Path | None = Field(
        default=None,
        description="Cleaning recipe YAML. Default: the data stage's recipe for the kind.",
    )


class FeedbackExportResult(BaseModel):
    """The registered dataset version and what went into it (or did not, and why)."""

    dataset: str | None = Field(description="The new version, NAME:vN; None: nothing usable.")
    message: str | None = Field(
        default=None, description="Why nothing was registered (with dataset None)."
    )
    record_kind: str = Field(description="qa (sft) or preference (dpo).")
    records: int = Field(description="Records in the version.")
    requests_used: int = Field(description="Requests whose answers or corrections it holds.")
    feedback_used: int = Field(description="Feedback rows behind those records.")
    requests_with_feedback: int = Field(description="Requests with feedback in the selection.")
    produced_by: list[str] = Field(description="Model versions that gave the answers (parents).")
    dedup_against: str | None = Field(description="Dataset version deduplicated against.")
    skipped: dict[str, int] = Field(description="Requests that gave no record, by reason.")
    skipped_examples: dict[str, list[str]] = Field(description="Up to 5 request ids per reason.")
    cleaning: dict[str, dict[str, int]] = Field(
        description="Records dropped by each cleaning operator, by reason."
    )
    path: str | None = Field(description="The version's folder.")
    report_html: str | None = Field(description="Its report.")


class DedupAgainst(Operator):
    """Drop records whose prompt (normalised) is a prompt of another dataset version.

    Built by the export with the prompts already loaded, so it is not a recipe operator.
    """

    name: ClassVar[str] = "dedup_against"
    dataset: str = Field(description="The dataset version whose prompts are dropped.")
    _keys: set[str] = PrivateAttr(default_factory=set)

    @classmethod
    def of(cls, info: ArtifactInfo) -> DedupAgainst:
        """The operator with every prompt of dataset version `info`."""
        op = cls(dataset=info.ref)
        kind = record_kind(info).name
        for batch in iter_batches(info):
            for rec in batch:
                if p := record_prompt(rec, kind):
                    op._keys.add(prompt_key(p))
        op._keys.discard("")
        return op

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record, or Drop in_training_data naming the dataset."""
        out: list[Record | Drop] = []
        for rec in batch:
            p = record_prompt(rec, self.kind.name)
            if p and prompt_key(p) in self._keys:
                out.append(Drop("in_training_data", f"prompt already in {self.dataset}"))
            else:
                out.append(rec)
        return out


class _Edge(NamedTuple):
    """A parent with its lineage role. `Store.create` takes (artifact, role) pairs; the
    `ref` property lets the data stage's writer list it among the report's parents too."""

    info: ArtifactInfo
    role: str

    @property
    def ref(self) -> str:
        return self.info.ref


def _model_versions(store: Store, names: set[str]) -> list[ArtifactInfo]:
    """The registered artifacts among logged version strings (a model version or a base
    model); upstream endpoints and embedders are no artifacts and are left out."""
    found: dict[str, ArtifactInfo] = {}
    for name in sorted(names):
        for kind in ("model", "base_model"):
            try:
                info = store.resolve(name, kind)
            except (NotFoundError, BadInputError):
                continue
            found[f"{kind}/{info.ref}"] = info
            break
    return list(found.values())


def _nothing(
    cfg: FeedbackExportConfig,
    n_requests: int,
    skips: Skips,
    why: str,
    cleaning: dict[str, dict[str, int]] | None = None,
) -> FeedbackExportResult:
    reasons = ", ".join(f"{k} {v}" for k, v in skips.counts.most_common()) or "none"
    where = f" since {cfg.since}" if cfg.since else ""
    return FeedbackExportResult(
        dataset=None,
        message=f"nothing to export to {cfg.to}{where}: {why} ({n_requests} requests with "
        f"feedback; skipped: {reasons}); no dataset version was registered",
        record_kind=KIND_OF[cfg.to],
        records=0,
        requests_used=0,
        feedback_used=0,
        requests_with_feedback=n_requests,
        produced_by=[],
        dedup_against=cfg.dedup_against,
        skipped=dict(skips.counts),
        skipped_examples=skips.examples,
        cleaning=cleaning or {},
        path=None,
        report_html=None,
    )


def run_feedback_export(
    store: Store, cfg: FeedbackExportConfig, progress: Progress = no_progress
) -> FeedbackExportResult:
    """Build, clean and register the dataset (see the module docstring); with nothing
    usable, the result has no dataset and says why. BadInputError for a bad selection
    (unreadable --since, unknown dedup dataset or recipe)."""
    sel = Selection(
        since=parse_since(cfg.since),
        until=parse_since(cfg.until),
        deployment=cfg.deployment,
        model_version=cfg.model_version,
        team=cfg.team,
    )
    if cfg.min_rating is not None and cfg.to != "sft":
        raise BadInputError("min_rating applies to --to sft only")
    against = resolve_dataset(store, cfg.dedup_against) if cfg.dedup_against else None
    kind = get_kind(KIND_OF[cfg.to])
    recipe = load_recipe(cfg.recipe) if cfg.recipe else default_recipe(kind.name)
    ops = recipe.build(kind)
    progress(task="feedback", total=None, message="reading feedback")
    rated = load_rated(store, sel)
    texts = DeploymentTexts(store)
    if cfg.to == "sft":
        records, skips = sft_records(rated, texts, cfg.keep_system_prompt, cfg.min_rating)
    else:
        records, skips = dpo_records(rated, texts, cfg.keep_system_prompt)
    if not records:
        what = "no correction" if cfg.to == "sft" else "no pair of differently rated answers"
        return _nothing(cfg, len(rated), skips, what)
    if against is not None:
        ops.append(DedupAgainst.of(against).bind(kind))
    kept: list[Record] = []
    chain = run_ops(ops, [records], kept.extend, progress=progress)
    cleaning = {s.op: dict(s.drop_reasons) for s in chain.operators if s.drop_reasons}
    if not kept:
        dropped = ", ".join(f"{op}: {r}" for op, r in cleaning.items())
        why = f"cleaning dropped all {len(records)} ({dropped})"
        return _nothing(cfg, len(rated), skips, why, cleaning)
    metas = [meta_of(r) for r in kept]
    request_ids = sorted({i for m in metas for i in m["request_ids"]})
    feedback_ids = sorted({i for m in metas for i in m["feedback_ids"]})
    producers = _model_versions(store, {v for m in metas for v in m["model_versions"]})
    parents: list[Any] = [_Edge(p, "produced_by") for p in producers]
    if against is not None:
        parents.append(_Edge(against, "dedup_against"))
    report = DatasetReport(
        name=cfg.name,
        stage="feedback",
        record_kind=kind.name,
        operators=chain.operators,
        notes={
            "feedback_export": cfg.model_dump(mode="json"),
            "requests_with_feedback": len(rated),
            "records_built": len(records),
            "skipped": dict(skips.counts),
            "skipped_examples": skips.examples,
        },
    )
    meta = {"feedback": {"request_ids": request_ids, "feedback_ids": feedback_ids}}
    result = save_dataset(store, report, [kept], parents=parents, meta=meta)
    return FeedbackExportResult(
        dataset=result.dataset,
        record_kind=kind.name,
        records=result.rows,
        requests_used=len(request_ids),
        feedback_used=len(feedback_ids),
        requests_with_feedback=len(rated),
        produced_by=[p.ref for p in producers],
        dedup_against=against.ref if against is not None else None,
        skipped=dict(skips.counts),
        skipped_examples=skips.examples,
        cleaning=cleaning,
        path=result.path,
        report_html=result.report_html,
    )
