"""Base models: local HF folders, GGUF files or tiny presets; loading; chat templates."""

from luodi.models.base import add_base, default_base, resolve_base
from luodi.models.chat import CHATML_TEMPLATE, ensure_chat_template, fit_embeddings
from luodi.models.loading import load_base
from luodi.models.tiny import PRESETS, TinyPreset, build_tiny, train_tokenizer

__all__ = [
    "CHATML_TEMPLATE",
    "PRESETS",
    "TinyPreset",
    "add_base",
    "build_tiny",
    "default_base",
    "ensure_chat_template",
    "fit_embeddings",
    "load_base",
    "resolve_base",
    "train_tokenizer",
]
