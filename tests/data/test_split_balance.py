"""Split (random, stratified, time, kfold; near-duplicates kept together) and class balance."""

from __future__ import annotations

import json
import random
import string
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from luodi.data.balance import BalanceConfig, balance_report, run_balance
from luodi.data.datasets import load_records, resolve, save_dataset
from luodi.data.records import Record, get_kind, make_record, meta_of
from luodi.data.report import DatasetReport
from luodi.data.split import SplitConfig, allocate, run_split
from luodi.errors import BadInputError
from luodi.store import Store


def rand_text(rng: random.Random, words: int = 25) -> str:
    """A text unlike any other: random 4-8 letter words."""
    return " ".join(
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 8))) for _ in range(words)
    )


def labeled(
    sizes: dict[str, int], seed: int = 0, meta: dict[int, dict[str, Any]] | None = None
) -> list[Record]:
    """Labeled records with `sizes[label]` records per label, interleaved by a shuffle."""
    rng = random.Random(seed)
    labels = [lab for lab, n in sizes.items() for _ in range(n)]
    rng.shuffle(labels)
    kind = get_kind("labeled")
    return [
        make_record(
            kind,
            source="/src/data.csv",
            source_sha256="0" * 64,
            location=f"row {i}",
            ordinal=0,
            meta=(meta or {}).get(i),
            text=rand_text(rng),
            label=lab,
        )
        for i, lab in enumerate(labels)
    ]


def texts(n: int, seed: int = 0, meta: list[dict[str, Any]] | None = None) -> list[Record]:
    """Text records with random content and optional meta per record."""
    rng = random.Random(seed)
    kind = get_kind("text")
    return [
        make_record(
            kind,
            source="/src/corpus.txt",
            source_sha256="1" * 64,
            location=f"line {i}",
            ordinal=0,
            meta=meta[i] if meta else None,
            text=rand_text(rng),
        )
        for i in range(n)
    ]


def ingest(store: Store, name: str, kind: str, records: list[Record]) -> str:
    """Save records as a new dataset version; returns its ref."""
    report = DatasetReport(name=name, stage="ingest", record_kind=kind)
    return save_dataset(store, report, [records]).dataset


def splits_of(store: Store, ref: str) -> dict[str, str]:
    """id -> split of a dataset version."""
    return {r["id"]: r["split"] for r in load_records(resolve(store, ref))}


# -- split -----------------------------------------------------------------------------


def test_random_split_ratios_seed_and_lineage(store: Store) -> None:
    parent = ingest(store, "corpus", "text", texts(1000))
    res = run_split(store, SplitConfig(dataset=parent, seed=1))
    # Every record is its own group here, so quotas are met exactly.
    assert res.splits == {"test": 100, "train": 800, "validation": 100}
    assert res.dataset == "corpus:v2"
    again = run_split(store, SplitConfig(dataset=parent, name="corpus2", seed=1))
    other = run_split(store, SplitConfig(dataset=parent, name="corpus3", seed=2))
    first = splits_of(store, res.dataset)
    assert splits_of(store, again.dataset) == first
    changed = sum(first[k] != v for k, v in splits_of(store, other.dataset).items())
    assert changed > 100  # a different seed reshuffles most records
    info = resolve(store, res.dataset)
    assert [p.ref for p in info.parents] == [parent]
    report = json.loads((info.path / "report.json").read_text(encoding="utf-8"))
    assert report["parents"] == [parent] and report["stage"] == "split"
    assert report["notes"]["ratios"] == {"train": 0.8, "validation": 0.1, "test": 0.1}
    assert report["notes"]["groups"] == 1000 and report["notes"]["groups_merged"] == 0


def test_stratified_keeps_label_shares(store: Store) -> None:
    sizes = {"a": 517, "b": 301, "c": 113, "d": 37, "e": 7}
    parent = ingest(store, "tickets", "labeled", labeled(sizes))
    res = run_split(store, SplitConfig(dataset=parent, method="stratified", seed=3))
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for r in load_records(resolve(store, res.dataset)):
        per[r["split"]][r["label"]] += 1
    for label, n in sizes.items():
        for split, ratio in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
            assert abs(per[split][label] - n * ratio) < 1, (label, split, per[split][label])
    total = sum(sizes.values())
    for split, ratio in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        assert abs(res.splits[split] - total * ratio) <= 1
    notes = json.loads((resolve(store, res.dataset).path / "report.json").read_text())["notes"]
    assert notes["by"] == "label"
    assert notes["distribution"]["test"] == dict(sorted(per["test"].items()))


def test_allocate_rounds_within_one_and_keeps_totals() -> None:
    sizes = {f"s{i}": 3 for i in range(10)}  # floors alone would leave test empty
    quotas = allocate(sizes, [0.8, 0.1, 0.1])
    for q in quotas.values():
        assert sum(q) == 3
        assert all(abs(q[s] - 3 * r) < 1 for s, r in enumerate([0.8, 0.1, 0.1]))
    totals = [sum(q[s] for q in quotas.values()) for s in range(3)]
    assert totals == [24, 3, 3]


def test_time_split_oldest_train_newest_test(store: Store) -> None:
    rng = random.Random(5)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    stamps = [base + timedelta(hours=rng.randint(0, 24 * 365)) for _ in range(300)]
    forms = [
        lambda d: d.isoformat(),
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"),
        lambda d: d.replace(tzinfo=None).isoformat(sep=" "),
    ]
    meta = [{"created": forms[i % 3](d)} for i, d in enumerate(stamps)]
    parent = ingest(store, "tickets", "text", texts(300, meta=meta))
    res = run_split(store, SplitConfig(dataset=parent, method="time", by="created"))
    assert res.splits == {"test": 30, "train": 240, "validation": 30}
    when: dict[str, list[datetime]] = defaultdict(list)
    for r in load_records(resolve(store, res.dataset)):
        d = datetime.fromisoformat(meta_of(r)["created"])
        when[r["split"]].append(d if d.tzinfo else d.replace(tzinfo=UTC))
    assert max(when["train"]) <= min(when["validation"])
    assert max(when["validation"]) <= min(when["test"])
    # Numbers (e.g. epoch seconds) work too.
    nums = [{"t": i * 7 % 101} for i in range(101)]
    p2 = ingest(store, "nums", "text", texts(101, seed=9, meta=nums))
    r2 = run_split(store, SplitConfig(dataset=p2, method="time", by="t"))
    by_split: dict[str, list[int]] = defaultdict(list)
    for r in load_records(resolve(store, r2.dataset)):
        by_split[r["split"]].append(meta_of(r)["t"])
    assert max(by_split["train"]) < min(by_split["test"])


def test_kfold_disjoint_and_covering(store: Store) -> None:
    parent = ingest(store, "corpus", "text", texts(503))
    res = run_split(store, SplitConfig(dataset=parent, method="kfold", k=5, seed=4))
    assert set(res.splits) == {f"fold-{i}" for i in range(1, 6)}
    assert sorted(res.splits.values()) == [100, 100, 101, 101, 101]
    ids = splits_of(store, res.dataset)
    source_ids = {r["id"] for r in load_records(resolve(store, parent))}
    assert set(ids) == source_ids and len(ids) == 503  # each record in exactly one fold


def test_kfold_too_small(store: Store) -> None:
    parent = ingest(store, "tiny", "text", texts(3))
    with pytest.raises(BadInputError, match="too few for 5 folds"):
        run_split(store, SplitConfig(dataset=parent, method="kfold", k=5))
    # Ten copies of one text are one near-duplicate group: still too few for 2 folds.
    same = [{**r, "text": "the same sentence every time, word for word"} for r in texts(10)]
    p2 = ingest(store, "same", "text", same)
    with pytest.raises(BadInputError, match="1 distinct"):
        run_split(store, SplitConfig(dataset=p2, method="kfold", k=2))


def _with_near_dups(n: int, pairs: int, seed: int) -> tuple[list[Record], list[tuple[str, str]]]:
    """Labeled records where `pairs` records have a near-copy (one word changed, other label)."""
    rng = random.Random(seed)
    records = labeled({"x": n // 2, "y": n - n // 2}, seed=seed)
    planted = []
    for j, i in enumerate(rng.sample(range(n), pairs)):
        src = records[i]
        words = src["text"].split()
        words[3] = "changed"
        twin = {**src, "id": f"twin-{j}", "text": " ".join(words)}
        twin["label"] = "y" if src["label"] == "x" else "x"
        twin["meta"] = json.dumps({"created": f"2024-0{1 + j % 9}-01"})
        records[i] = {**src, "meta": json.dumps({"created": f"2023-0{1 + j % 9}-01"})}
        records.append(twin)
        planted.append((src["id"], twin["id"]))
    for i, r in enumerate(records):
        if r["meta"] == "{}":
            records[i] = {**r, "meta": json.dumps({"created": f"2023-{1 + i % 12:02d}-15"})}
    rng.shuffle(records)
    return records, planted


@pytest.mark.parametrize(
    "cfg",
    [
        {"method": "random"},
        {"method": "stratified"},
        {"method": "time", "by": "created"},
        {"method": "kfold", "k": 4},
    ],
)
def test_near_duplicates_never_straddle(store: Store, cfg: dict[str, Any]) -> None:
    records, planted = _with_near_dups(400, 25, seed=11)
    parent = ingest(store, "dups", "labeled", records)
    for seed in (0, 1, 2):
        res = run_split(store, SplitConfig(dataset=parent, seed=seed, **cfg))
        split = splits_of(store, res.dataset)
        assert all(split[a] == split[b] for a, b in planted)
        notes = json.loads((resolve(store, res.dataset).path / "report.json").read_text())
        assert notes["notes"]["groups_merged"] == 25
        assert notes["notes"]["groups"] == 400


def test_split_bad_input(store: Store) -> None:
    with pytest.raises(BadInputError, match="unknown split method 'shuffle'"):
        SplitConfig(dataset="x", method="shuffle")
    with pytest.raises(BadInputError, match="sum to 1"):
        SplitConfig(dataset="x", ratios=(0.8, 0.1, 0.2))
    assert SplitConfig(dataset="x", ratios="0.7,0.2,0.1").ratios == (0.7, 0.2, 0.1)
    with pytest.raises(BadInputError, match="needs `by`"):
        SplitConfig(dataset="x", method="time")
    with pytest.raises(BadInputError, match="k must be"):
        SplitConfig(dataset="x", method="kfold", k=1)
    meta = [{"category": "财务", "team": "a"} if i >= 3 else {"team": "b"} for i in range(50)]
    parent = ingest(store, "docs", "text", texts(50, meta=meta))
    with pytest.raises(BadInputError, match=r"3 of 50 records have no 'category'.*meta\.team"):
        run_split(store, SplitConfig(dataset=parent, method="stratified", by="category"))
    with pytest.raises(BadInputError, match="needs `by`"):
        run_split(store, SplitConfig(dataset=parent, method="stratified"))
    bad = ingest(store, "badtime", "text", texts(4, meta=[{"t": "last tuesday"}] * 4))
    with pytest.raises(BadInputError, match="neither an ISO"):
        run_split(store, SplitConfig(dataset=bad, method="time", by="t"))
    assert [a.ref for a in store.list("dataset", "docs")] == ["docs:v1"]  # nothing registered


# -- balance ---------------------------------------------------------------------------


def _split_imbalanced(store: Store) -> tuple[str, str]:
    parent = ingest(store, "tickets", "labeled", labeled({"a": 600, "b": 300, "c": 100}, 7))
    res = run_split(store, SplitConfig(dataset=parent, method="stratified", seed=0))
    return parent, res.dataset


def test_balance_report_counts_per_split(store: Store) -> None:
    _, split_ref = _split_imbalanced(store)
    versions = len(store.list("dataset"))
    rep = balance_report(store, split_ref)
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for r in load_records(resolve(store, split_ref)):
        expected[r["split"]][r["label"]] += 1
    assert rep == {s: dict(c) for s, c in expected.items()}
    assert rep["train"] == {"a": 480, "b": 240, "c": 80}
    assert len(store.list("dataset")) == versions  # report creates nothing


def test_oversample_train_only(store: Store) -> None:
    _, split_ref = _split_imbalanced(store)
    before = load_records(resolve(store, split_ref))
    res = run_balance(store, BalanceConfig(dataset=split_ref, strategy="oversample", seed=3))
    after = load_records(resolve(store, res.dataset))
    train = Counter(r["label"] for r in after if r["split"] == "train")
    assert train == {"a": 480, "b": 480, "c": 480}
    for split in ("validation", "test"):
        assert [r for r in after if r["split"] == split] == [
            r for r in before if r["split"] == split
        ]
    by_id = {r["id"]: r for r in before}
    copies = [r for r in after if r["id"] not in by_id]
    assert len(copies) == 240 + 400
    for c in copies:
        src_id, _, k = c["id"].rpartition("-os")
        src = by_id[src_id]
        assert k.isdigit() and c["split"] == "train" == src["split"]
        assert {**c, "id": src_id} == src
    # c (80 records) needs 400 copies: every c record copied exactly 5 times.
    c_sources = Counter(c["id"].rpartition("-os")[0] for c in copies if c["label"] == "c")
    assert set(c_sources.values()) == {5} and len(c_sources) == 80
    info = resolve(store, res.dataset)
    assert [p.ref for p in info.parents] == [split_ref]
    notes = json.loads((info.path / "report.json").read_text())["notes"]
    assert notes["before"]["train"] == {"a": 480, "b": 240, "c": 80}
    assert notes["after"]["train"] == {"a": 480, "b": 480, "c": 480}
    assert notes["added"] == {"b": 240, "c": 400}
    again = run_balance(
        store, BalanceConfig(dataset=split_ref, name="again", strategy="oversample", seed=3)
    )
    assert load_records(resolve(store, again.dataset)) == after


def test_oversample_int_target_unsplit_and_errors(store: Store) -> None:
    meta = [{"category": "财务" if i < 30 else "法律"} for i in range(100)]
    parent = ingest(store, "docs", "text", texts(100, meta=meta))
    res = run_balance(
        store, BalanceConfig(dataset=parent, by="category", strategy="oversample", target=50)
    )
    cats = Counter(meta_of(r)["category"] for r in load_records(resolve(store, res.dataset)))
    assert cats == {"财务": 50, "法律": 70}  # raised to 50; the larger class is untouched
    with pytest.raises(BadInputError, match="needs `by`"):
        run_balance(store, BalanceConfig(dataset=parent, strategy="oversample"))
    with pytest.raises(BadInputError, match="none of the 100 records"):
        run_balance(store, BalanceConfig(dataset=parent, by="topic", strategy="oversample"))
    with pytest.raises(BadInputError, match="unknown balance strategy"):
        BalanceConfig(dataset=parent, strategy="undersample")
    with pytest.raises(BadInputError, match="positive integer"):
        BalanceConfig(dataset=parent, target=0)
    folds = run_split(store, SplitConfig(dataset=parent, method="kfold", k=3, name="folds"))
    with pytest.raises(BadInputError, match="no train split"):
        run_balance(
            store, BalanceConfig(dataset=folds.dataset, by="category", strategy="oversample")
        )
