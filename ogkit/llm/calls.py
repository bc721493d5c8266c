"""What a chat call commits to (docs/spec.md §12): the canonical request, token-id hashes,
the leaf's input and output hashes, and the sampler a seeded call is re-executed with.

Receipts hash token ids, never decoded text: two tokenizers may decode the same ids
(invalid UTF-8 above all) to different strings, but the ids are what the model produced.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ConfigError
from ogkit.hub.manifest import canonical_json

__all__ = [
    "FINISH_REASONS",
    "ChatCall",
    "ChatRequest",
    "input_hash",
    "output_hash",
    "request_hash",
    "sample_token",
    "token_ids_hash",
]

ROLES = ("system", "user", "assistant", "tool")
FINISH_REASONS = {"stop": 1, "length": 2}
MAX_TOKENS_LIMIT = 1 << 16
MAX_TEMPERATURE = 2.0
MAX_SEED = (1 << 64) - 1
MAX_MESSAGE_CHARS = 1 << 20


@dataclass(frozen=True)
class ChatRequest:
    """One chat request in canonical form: what the requester asked, nothing derived."""

    messages: tuple[tuple[str, str], ...]  # (role, content)
    max_tokens: int = 64
    temperature: float = 0.0
    seed: int | None = None

    @classmethod
    def make(
        cls,
        messages: Sequence[Mapping[str, Any]] | str,
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> ChatRequest:
        """Check and normalise a request; every problem raises one :class:`ConfigError`."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        problems = []
        out = []
        if not isinstance(messages, Sequence) or not messages:
            problems.append("messages must be a non-empty list of {role, content}")
            messages = []
        for i, m in enumerate(messages):
            role = m.get("role") if isinstance(m, Mapping) else None
            content = m.get("content") if isinstance(m, Mapping) else None
            if role not in ROLES:
                problems.append(f"message {i}: role must be one of {', '.join(ROLES)}")
            if not isinstance(content, str) or len(content) > MAX_MESSAGE_CHARS:
                problems.append(f"message {i}: content must be a string of at most 1 MiB")
            else:
                try:
                    content.encode()
                except UnicodeEncodeError:
                    problems.append(f"message {i}: content is not valid Unicode")
            out.append((str(role), str(content)))
        if (
            isinstance(max_tokens, bool)
            or not isinstance(max_tokens, int)
            or not (1 <= max_tokens <= MAX_TOKENS_LIMIT)
        ):
            problems.append(f"max_tokens must be an integer in [1, {MAX_TOKENS_LIMIT}]")
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            temperature = math.nan
        if not 0.0 <= temperature <= MAX_TEMPERATURE:
            problems.append(f"temperature must be within [0, {MAX_TEMPERATURE}]")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED
        ):
            problems.append("seed must be an integer in [0, 2**64)")
        if temperature > 0 and seed is None:
            problems.append(
                "a sampled call (temperature > 0) needs a seed, so that it can be re-executed"
            )
        if problems:
            raise ConfigError("chat request: " + "; ".join(problems))
        return cls(tuple(out), max_tokens, temperature, seed)

    @property
    def sampled(self) -> bool:
        return self.temperature > 0

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "messages": self.message_dicts(),
            "seed": self.seed,
            "temperature": self.temperature,
        }

    @classmethod
    def from_dict(cls, d: Any) -> ChatRequest:
        if not isinstance(d, Mapping) or set(d) != {
            "max_tokens",
            "messages",
            "seed",
            "temperature",
        }:
            raise ConfigError("a chat request has exactly max_tokens, messages, seed, temperature")
        if isinstance(d["temperature"], bool) or not isinstance(d["temperature"], int | float):
            raise ConfigError("chat request: temperature must be a number")
        for m in d["messages"] if isinstance(d["messages"], list) else []:
            if not isinstance(m, Mapping) or set(m) != {"role", "content"}:
                raise ConfigError("chat request: each message has exactly role and content")
        return cls.make(
            d["messages"], max_tokens=d["max_tokens"], temperature=d["temperature"], seed=d["seed"]
        )


def request_hash(request: ChatRequest) -> bytes:
    """``keccak256("ogkit.chat.request.v1" || canonical JSON of the request)``."""
    return keccak256(b"ogkit.chat.request.v1" + canonical_json(request.to_dict()))


def token_ids_hash(tag: bytes, ids: Sequence[int] | np.ndarray) -> bytes:
    """``keccak256(tag || u32be(count) || u32be(id) for each id)``."""
    arr = np.asarray(ids, dtype=np.int64)
    if arr.ndim != 1 or (arr.size and (arr.min() < 0 or arr.max() >= 1 << 32)):
        raise ConfigError("token ids must be a flat list of integers in [0, 2**32)")
    return keccak256(tag + struct.pack(">I", arr.size) + arr.astype(">u4").tobytes())


def input_hash(request: ChatRequest, prompt_ids: Sequence[int]) -> bytes:
    """The leaf's ``inputHash`` of a chat call: the request and the prompt it became."""
    return keccak256(
        b"ogkit.chat.input.v1" + request_hash(request) + token_ids_hash(b"prompt", prompt_ids)
    )


USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


def output_hash(
    completion_ids: Sequence[int], usage: Mapping[str, int], finish_reason: str
) -> bytes:
    """The leaf's ``outputHash``: completion ids, the usage as stated and the finish reason
    (a verifier checks the usage against the ids)."""
    if finish_reason not in FINISH_REASONS:
        raise ConfigError(f"finish_reason must be one of {', '.join(FINISH_REASONS)}")
    counts = [usage.get(k) if isinstance(usage, Mapping) else None for k in USAGE_KEYS]
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 1 << 32 for c in counts):
        raise ConfigError(f"usage must give {', '.join(USAGE_KEYS)} as integers in [0, 2**32)")
    return keccak256(
        b"ogkit.chat.output.v1"
        + token_ids_hash(b"completion", completion_ids)
        + struct.pack(">III", *counts)
        + bytes([FINISH_REASONS[finish_reason]])
    )


def sample_token(logits: np.ndarray, temperature: float, seed: int, step: int) -> int:
    """The sampler of a seeded call (spec §12.4): softmax of ``logits / temperature`` in
    float64, then the first token whose running sum exceeds ``u`` times the total, where
    ``u = (u64be(keccak256("ogkit.sample.v1" || u64be(seed) || u32be(step))[:8]) >> 11)
    / 2**53``."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1) / temperature
    p = np.exp(z - z.max())
    cdf = np.cumsum(p)
    digest = keccak256(b"ogkit.sample.v1" + struct.pack(">QI", seed, step))
    u = (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)
    return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), cdf.size - 1))


@dataclass
class ChatCall:
    """One call as the node ran it: the request, the prompt ids the template and tokenizer
    gave, the completion ids decoded, why decoding stopped."""

    request: ChatRequest
    prompt_ids: list[int]
    completion_ids: list[int]
    finish_reason: str
    usage: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.usage:
            self.usage = {
                "prompt_tokens": len(self.prompt_ids),
                "completion_tokens": len(self.completion_ids),
                "total_tokens": len(self.prompt_ids) + len(self.completion_ids),
            }

    def input_hash(self) -> bytes:
        return input_hash(self.request, self.prompt_ids)

    def output_hash(self) -> bytes:
        return output_hash(self.completion_ids, self.usage, self.finish_reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "completion_ids": list(self.completion_ids),
            "finish_reason": self.finish_reason,
            "prompt_ids": list(self.prompt_ids),
            "request": self.request.to_dict(),
            "usage": dict(self.usage),
        }
