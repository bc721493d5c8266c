"""A language model loaded for verifiable chat: the bundle materialised, onnxruntime-genai
on it with pinned options, its chat template, tokenizer and stop tokens, and the one
decoding loop that nodes and verifiers share.

Decoding (docs/spec.md §12.4): greedy is the arg-max of each step's logits (the runtime's
top-1 search with every logits processor off: no repetition penalty, no n-gram ban, no
minimum length); a sampled call (temperature > 0) draws each token with
:func:`~ogkit.llm.calls.sample_token` from its seed and step. A completion ends with the
first stop token (kept, ``finish_reason`` ``"stop"``) or after ``max_tokens`` tokens
(``"length"``).
"""

from __future__ import annotations

import json
import logging
import platform
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ConfigError, HubError, InferenceError, InvalidModelError
from ogkit.hub.manifest import canonical_json
from ogkit.llm.bundle import materialize, unpack
from ogkit.llm.calls import ChatCall, ChatRequest, sample_token
from ogkit.llm.template import ChatTemplate
from ogkit.store import content_id
from ogkit.version import __version__

__all__ = ["DECODER", "ChatModel", "LLMFingerprint", "load_chat_model"]

log = logging.getLogger(__name__)

DECODER = "ogkit.decode.v1"
REQUIRED_FILES = ("genai_config.json", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class LLMFingerprint:
    """What decoded a chat call; its keccak256 is the runtime id (the software enclave's
    measurement), as for tabular models."""

    ogkit_version: str
    onnxruntime_version: str
    onnxruntime_genai_version: str
    execution_provider: str
    intra_op_num_threads: int
    inter_op_num_threads: int
    decoder: str
    machine: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def runtime_id(self) -> str:
        return "0x" + keccak256(canonical_json(self.to_dict())).hex()


def _og() -> Any:
    try:
        import onnxruntime_genai as og
    except ImportError as exc:  # pragma: no cover - a dependency of ogkit
        raise ConfigError(f"onnxruntime-genai is not installed ({exc}); run `make setup`") from None
    return og


def check_bundle(files: dict[str, bytes]) -> dict[str, Any]:
    """The genai config of a model bundle; :class:`InvalidModelError` naming what is missing."""
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        raise InvalidModelError(
            f"the model folder lacks {', '.join(missing)}: give an onnxruntime-genai folder "
            "(scripts/build_tiny_llm.py writes one)"
        )
    try:
        config = json.loads(files["genai_config.json"])
        decoder = config["model"]["decoder"]
        onnx_file = decoder["filename"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidModelError(
            f"genai_config.json is not an onnxruntime-genai config: {exc}"
        ) from None
    if onnx_file not in files:
        raise InvalidModelError(f"genai_config.json names {onnx_file}, which the folder lacks")
    return config


class ChatModel:
    """One language model, ready to decode. Build it with :func:`load_chat_model`."""

    def __init__(
        self,
        bundle: bytes,
        *,
        cache: str | Path,
        ref: str | None = None,
        threads: int = 1,
        model_id: str | None = None,
    ) -> None:
        og = _og()
        actual = content_id(bundle)  # hashed once: a real model's bundle is hundreds of MB
        if model_id is not None and actual != model_id:
            raise InvalidModelError(f"the model bundle does not hash to {model_id}")
        self.model_id = actual
        files = unpack(bundle)
        self.bundle = bundle
        self.genai_config = check_bundle(files)
        self.ref = ref
        self.folder = materialize(bundle, cache, model_id=self.model_id)
        tok_config = json.loads(files["tokenizer_config.json"])
        self.template = ChatTemplate.from_tokenizer_config(tok_config)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError("threads must be an integer >= 1")
        config = og.Config(str(self.folder))
        config.overlay(
            json.dumps(
                {
                    "model": {
                        "decoder": {
                            "session_options": {
                                "intra_op_num_threads": threads,
                                "inter_op_num_threads": 1,
                            }
                        }
                    }
                }
            )
        )
        config.clear_providers()
        try:
            self._model = og.Model(config)
            self._tokenizer = og.Tokenizer(self._model)
        except Exception as exc:
            raise InvalidModelError(
                f"onnxruntime-genai cannot load {self.model_id}: {exc}"
            ) from None
        eos = self.genai_config["model"].get("eos_token_id")
        self.stop_ids = frozenset(int(e) for e in (eos if isinstance(eos, list) else [eos]))
        self.context_length = int(self.genai_config["model"].get("context_length", 2048))
        import onnxruntime

        self.fingerprint = LLMFingerprint(
            ogkit_version=__version__,
            onnxruntime_version=onnxruntime.__version__,
            onnxruntime_genai_version=og.__version__,
            execution_provider="CPUExecutionProvider",
            intra_op_num_threads=threads,
            inter_op_num_threads=1,
            decoder=DECODER,
            machine=platform.machine(),
        )

    def __repr__(self) -> str:
        return f"ChatModel({self.ref or self.model_id[:18] + '…'})"

    @property
    def runtime_id(self) -> str:
        return self.fingerprint.runtime_id

    # -- text <-> ids -----------------------------------------------------------------------
    def render(self, request: ChatRequest) -> str:
        return self.template.render(request.message_dicts())

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in self._tokenizer.encode(text)]

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        """The request rendered with the model's template, then tokenized."""
        return self.encode(self.render(request))

    def decode_text(self, ids: list[int]) -> str:
        """The text of ``ids`` without special tokens (stop tokens included)."""
        kept = [i for i in ids if i not in self.stop_ids]
        return self._tokenizer.decode(np.asarray(kept, dtype=np.int32)) if kept else ""

    def text_stream(self) -> Any:
        return self._tokenizer.create_stream()

    # -- decoding ---------------------------------------------------------------------------
    def tokens(self, request: ChatRequest, prompt_ids: list[int]) -> Iterator[int]:
        """Yield the completion's token ids one by one (the shared decoding loop)."""
        og = _og()
        if len(prompt_ids) + request.max_tokens > self.context_length:
            raise ConfigError(
                f"the prompt has {len(prompt_ids)} tokens and max_tokens is "
                f"{request.max_tokens}: more than the model's context of {self.context_length}"
            )
        params = og.GeneratorParams(self._model)
        params.set_search_options(
            max_length=len(prompt_ids) + request.max_tokens,
            do_sample=False,
            num_beams=1,
            top_k=1,
            temperature=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            min_length=0,
        )
        try:
            gen = og.Generator(self._model, params)
            gen.append_tokens(np.asarray(prompt_ids, dtype=np.int32))
            for step in range(request.max_tokens):
                if request.sampled:
                    logits = gen.get_logits()
                    token = sample_token(logits, request.temperature, int(request.seed), step)
                else:
                    gen.generate_next_token()
                    token = int(gen.get_next_tokens()[0])
                yield token
                if token in self.stop_ids or step + 1 == request.max_tokens:
                    return
                if request.sampled:
                    gen.append_tokens(np.asarray([token], dtype=np.int32))
        except (RuntimeError, ValueError) as exc:
            raise InferenceError(f"decoding with {self!r} failed: {exc}") from None

    def run(self, request: ChatRequest) -> ChatCall:
        """Decode one request to the end."""
        prompt = self.prompt_ids(request)
        ids = list(self.tokens(request, prompt))
        return ChatCall(request, prompt, ids, self.finish_reason(ids))

    def finish_reason(self, ids: list[int]) -> str:
        return "stop" if ids and ids[-1] in self.stop_ids else "length"


def load_chat_model(
    ref: str | Path,
    *,
    hub: Any = None,
    cache: str | Path | None = None,
    threads: int = 1,
) -> ChatModel:
    """A :class:`ChatModel` from a hub reference (``name``, ``name@version``, ``0x…`` id;
    bytes checked against the id) or from a local onnxruntime-genai folder or bundle file.

    ``cache`` is where bundles are unpacked (default ``<hub home>/llm``, else the system's
    temporary folder)."""
    from ogkit.llm.bundle import pack_folder

    path = Path(str(ref))
    if path.is_dir():
        bundle = pack_folder(path)
        name = None
    elif path.is_file():
        bundle = path.read_bytes()
        name = None
    else:
        if hub is None:
            raise ConfigError(
                f"{ref} is not a folder or file, and no hub was given to look it up "
                "(`ogkit chat build-tiny` publishes the tiny model)"
            )
        manifest, bundle = hub.model_bytes(str(ref))
        if "llm" not in manifest.tags:
            raise HubError(
                f"{manifest.ref} is not a language model (its manifest has no 'llm' tag)"
            )
        name = manifest.ref
    if cache is None:
        cache = (
            Path(hub.home) / "llm" if hub is not None else Path(tempfile.gettempdir()) / "ogkit-llm"
        )
    return ChatModel(bundle, cache=cache, ref=name, threads=threads)
