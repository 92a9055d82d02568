"""Mix dataset versions into one: the training data plus what feedback taught, for example.

`luodi data mix --from xinghe-faq:v3#train --from fb-sft:v1 --into train --name faq-v2` makes a
new version holding the chosen records of every source, each source optionally restricted to
one split (`#split`), repeated (`*N`, to weigh a small source up) and put into a split of the
result (`--into`, default: keep each record's split). Records of one kind only; exact
duplicates (same text) are kept once, the first source winning, so training data and feedback
that repeat each other do not count twice. The version's parents are all sources (lineage).
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from luodi.data.datasets import load_records, record_kind, resolve, save_dataset
from luodi.data.records import Record
from luodi.data.report import DatasetReport, DatasetResult
from luodi.errors import BadInputError
from luodi.progress import Progress, no_progress
from luodi.store import ArtifactInfo, Store

_SOURCE = re.compile(r"^(?P<ref>[^#*]+?)(?:#(?P<split>[\w.-]+))?(?:\*(?P<repeat>\d+))?$")


class MixSource(BaseModel):
    """One input of a mix."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="Dataset version, NAME or NAME:vN.")
    split: str | None = Field(default=None, description="Take only this split ('unsplit' too).")
    repeat: int = Field(default=1, ge=1, le=100, description="Copies of each record (weight).")
    into: str | None = Field(
        default=None, description="Put these records into this split (default: their own)."
    )

    @classmethod
    def parse(cls, text: str, into: str | None = None) -> MixSource:
        """`NAME[:vN][#split][*repeat]` as a source."""
        m = _SOURCE.match(text.strip())
        if not m:
            raise BadInputError(f"bad mix source {text!r}: expected NAME[:vN][#split][*N]")
        try:
            return cls(
                dataset=m.group("ref"),
                split=m.group("split"),
                repeat=int(m.group("repeat") or 1),
                into=into,
            )
        except ValidationError as exc:
            raise BadInputError(f"bad mix source {text!r}: {exc.errors()[0]['msg']}") from None


class MixConfig(BaseModel):
    """What `luodi data mix` combines and how."""

    model_config = ConfigDict(extra="forbid")

    sources: list[MixSource] = Field(min_length=1, description="The datasets to combine.")
    name: str = Field(description="Name of the mixed dataset (a new version of it).")
    dedup: Literal["exact", "none"] = Field(
        default="exact", description="exact: keep one copy of records with the same text."
    )


def run_mix(store: Store, cfg: MixConfig, progress: Progress = no_progress) -> DatasetResult:
    """Write the records of every source (filtered, repeated, re-split) as one new version.

    BadInputError when sources hold different record kinds, a split does not exist, or the
    mix would be empty; nothing is registered then.
    """
    infos: list[ArtifactInfo] = [resolve(store, s.dataset) for s in cfg.sources]
    kinds = {record_kind(i).name for i in infos}
    if len(kinds) > 1:
        have = ", ".join(f"{i.ref} ({record_kind(i).name})" for i in infos)
        raise BadInputError(f"cannot mix record kinds: {have}")
    kind = record_kind(infos[0])
    progress(task="mix", total=len(infos), message="reading")
    seen: set[bytes] = set()
    out: list[Record] = []
    counts: dict[str, dict[str, int]] = {}
    for src, info in zip(cfg.sources, infos, strict=True):
        records = load_records(info, src.split)
        kept = dropped = 0
        for rec in records:
            key = hashlib.blake2b(kind.content(rec).encode(), digest_size=16).digest()
            if cfg.dedup == "exact" and key in seen:
                dropped += 1
                continue
            seen.add(key)
            split = src.into if src.into is not None else rec.get("split") or ""
            out.extend({**rec, "split": split} for _ in range(src.repeat))
            kept += 1
        counts[f"{info.ref}{'#' + src.split if src.split else ''}"] = {
            "read": len(records),
            "kept": kept,
            "duplicates_dropped": dropped,
            "repeat": src.repeat,
        }
        progress(task="mix", advance=1, message=f"{info.ref}: {kept} records")
    if not out:
        raise BadInputError("the mix is empty: the sources (and splits) hold no records")
    report = DatasetReport(
        name=cfg.name,
        stage="mix",
        record_kind=kind.name,
        notes={"sources": counts, "dedup": cfg.dedup},
    )
    parents = list({i.ref: i for i in infos}.values())  # one edge per version
    return save_dataset(store, report, [out], parents=parents)
