"""Verifiable chat over a local language model (docs/llm.md, docs/spec.md §12).

``load_chat_model`` gets a model bundle from the hub (or a folder) and loads it with
onnxruntime-genai; ``chat`` answers OpenAI-style with a receipt; ``ChatSession`` puts
calls into shared batches; ``verify_chat_batch`` re-decodes a secret sample;
``settle_chat`` commits a batch through the normal settlement path. Names are imported
on first use, so ``import ogkit.llm`` (and ogkit.verify, which knows chat batches) stays
light; onnxruntime-genai is imported only when a model is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "ChatBatch": "batch",
    "attest_calls": "batch",
    "commit_requests": "batch",
    "load_chat_batch": "batch",
    "ChatCall": "calls",
    "ChatRequest": "calls",
    "ChatCompletion": "session",
    "ChatCompletionChunk": "session",
    "ChatSession": "session",
    "chat": "session",
    "settle_chat": "session",
    "ChatModel": "model",
    "load_chat_model": "model",
    "publish_llm": "publish",
    "build_tiny_llm": "tiny",
    "verify_chat_batch": "verify",
    "challenge_call": "challenge",
    "chat_router": "api",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ogkit.llm' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ogkit.llm.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
