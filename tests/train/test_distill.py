"""distill: the loss against a reference, the student's KL to the teacher falls, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from luodi.errors import BadInputError
from luodi.models.tiny import build_tiny, train_tokenizer
from luodi.store import Store
from luodi.store.runs import Runs
from luodi.train import TrainConfig, load_model_version, run_train
from luodi.train.distill import distill_loss
from tests.train.test_dpo import preference_dataset
from tests.train.test_pretrain import corpus, sentences


def test_distill_loss_matches_a_reference() -> None:
    g = torch.Generator().manual_seed(0)
    student = torch.randn(2, 5, 11, generator=g)
    teacher = torch.randn(2, 5, 13, generator=g)  # a padded vocabulary: only 11 compared
    labels = torch.tensor([[1, 2, 3, 4, 5], [-100, -100, 7, 8, -100]])
    loss, kl, ce = distill_loss(student, teacher, labels, temperature=2.0, alpha=0.3)
    # Reference: torch's kl_div over the positions whose next token is a target.
    s, t, y = student[:, :-1], teacher[:, :-1, :11], labels[:, 1:]
    keep = y != -100
    per = F.kl_div(
        F.log_softmax(s / 2, -1), F.log_softmax(t / 2, -1), log_target=True, reduction="none"
    ).sum(-1)
    ref_kl = per[keep].mean()
    ref_ce = F.cross_entropy(s[keep], y[keep])
    assert kl.item() == pytest.approx(ref_kl.item(), rel=1e-5)
    assert ce.item() == pytest.approx(ref_ce.item(), rel=1e-5)
    assert loss.item() == pytest.approx(0.3 * 4 * ref_kl.item() + 0.7 * ref_ce.item(), rel=1e-5)
    # Identical logits: no divergence.
    _, kl0, _ = distill_loss(teacher, teacher, labels, temperature=1.0, alpha=1.0)
    assert kl0.item() == pytest.approx(0.0, abs=1e-6)


def heldout_kl(student: Any, teacher: Any, tok: Any, texts: list[str]) -> float:
    """Mean per-token KL(teacher || student) at temperature 1 on texts neither trained on."""
    total, n = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tok(text)["input_ids"]])
            log_t = F.log_softmax(teacher(input_ids=ids).logits.float(), -1)
            log_s = F.log_softmax(student(input_ids=ids).logits.float(), -1)
            total += float((log_t.exp() * (log_t - log_s)).sum(-1).sum())
            n += ids.shape[1]
    return total / n


def distill_config(dataset: str, teacher: str | None, **kw: Any) -> TrainConfig:
    base = dict(
        stage="distill",
        base="tiny:test",
        dataset=dataset,
        teacher=teacher,
        method="full",
        val_ratio=0.0,
        batch_size=8,
        scheduler="constant",
        learning_rate=3e-3,
        cutoff_len=64,
        tiny_vocab_size=400,
        seed=1,
        max_steps=30,
        distill_temperature=2.0,
        distill_alpha=0.8,
    )
    return TrainConfig(**{**base, **kw})


def test_student_kl_to_teacher_falls(store: Store) -> None:
    ds = corpus(store, "corpus")
    teacher_cfg = TrainConfig(
        stage="pretrain",
        base="tiny:test",
        dataset=ds,
        method="full",
        val_ratio=0.0,
        batch_size=8,
        scheduler="constant",
        learning_rate=3e-3,
        cutoff_len=64,
        tiny_vocab_size=400,
        seed=0,
        max_steps=30,
        name="teacher",
    )
    teacher_ref = run_train(store, teacher_cfg).model
    res = run_train(store, distill_config(ds, teacher_ref, name="student"))
    teacher, tok = load_model_version(store, teacher_ref)
    student, student_tok = load_model_version(store, res.model)
    assert student_tok.get_vocab() == tok.get_vocab()  # the tiny student uses the teacher's
    fresh = build_tiny("test", tok, seed=1)  # the student as the run started it
    texts = [" ".join(sentences(4, seed=1000 + i)) for i in range(6)]
    before, after = heldout_kl(fresh, teacher, tok, texts), heldout_kl(student, teacher, tok, texts)
    assert after < before / 3, (before, after)

    info = store.resolve(res.model, "model")
    assert ("teacher", teacher_ref) in {(p.role, p.ref) for p in info.parents}
    assert info.meta["teacher"]["ref"] == teacher_ref and info.meta["stage"] == "distill"
    assert info.meta["teacher"]["temperature"] == 2.0 and info.meta["teacher"]["alpha"] == 0.8
    losses = [v for _, v in Runs(store).metrics(res.run_id)["loss"]]
    assert losses[-1] < losses[0] / 2


def test_distill_bad_input_before_training(store: Store, tmp_path: Path) -> None:
    ds = corpus(store, "corpus")
    prefs = preference_dataset(store)
    other_tok = train_tokenizer(["completely different words here"] * 3, vocab_size=280)
    hf_dir = tmp_path / "other-base"
    build_tiny("test", other_tok).save_pretrained(hf_dir)
    other_tok.save_pretrained(hf_dir)
    cases = [
        (distill_config(ds, None), "needs a teacher"),
        (distill_config(ds, "no-such-model"), "neither a registered model version"),
        (distill_config(prefs, "tiny:test"), "holds preference records but stage 'distill'"),
        (distill_config(ds, "tiny:test", base=str(hf_dir)), "different vocabulary"),
    ]
    for cfg, message in cases:
        with pytest.raises(BadInputError, match=message):
            run_train(store, cfg)
    assert store.list("model") == [] and Runs(store).list() == []
