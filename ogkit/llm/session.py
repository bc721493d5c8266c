"""``chat()``: an OpenAI-shaped chat completion over a local model, with a receipt.

Each call is decoded (greedy by default, seeded sampling when ``temperature > 0``),
then attested: alone (one call, one batch: the receipt comes back at once) or with others
in a :class:`ChatSession`, whose calls become leaves of one batch when it is sealed.
Batches settle through :func:`ogkit.settle.settle` like tabular ones
(:func:`settle_chat` signs the requester's order for a local caller that is both).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ogkit.attest import Attester, ClaimDomain
from ogkit.errors import ConfigError
from ogkit.llm.batch import ChatBatch, attest_calls
from ogkit.llm.calls import ChatCall, ChatRequest
from ogkit.store import ContentStore

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatSession",
    "calls_frame",
    "chat",
    "settle_chat",
]

log = logging.getLogger(__name__)


@dataclass
class Message:
    role: str
    content: str


@dataclass
class Choice:
    index: int
    message: Message
    finish_reason: str


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass
class ChatCompletion:
    """OpenAI's ``chat.completion`` object plus what makes it verifiable: ``receipt`` (spec
    §8, once the call is attested), ``tx_hash`` (once its batch is committed on chain),
    the token ids and the batch."""

    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    receipt: dict[str, Any] | None = None
    tx_hash: str | None = None
    batch: ChatBatch | None = field(default=None, repr=False)
    object: str = "chat.completion"

    def to_dict(self) -> dict[str, Any]:
        # Field by field: asdict would deep-copy the batch (its store and manifest).
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "batch"}
        d["choices"] = [asdict(c) for c in self.choices]
        d["usage"] = asdict(self.usage)
        d["prompt_ids"], d["completion_ids"] = list(self.prompt_ids), list(self.completion_ids)
        d["artifact_id"] = self.batch.artifact_id if self.batch is not None else None
        d["batch_id"] = self.batch.batch_id if self.batch is not None else None
        return d


@dataclass
class Delta:
    content: str
    role: str = "assistant"


@dataclass
class ChunkChoice:
    index: int
    delta: Delta
    finish_reason: str | None = None


@dataclass
class ChatCompletionChunk:
    """One streamed piece (OpenAI's ``chat.completion.chunk``): the text of one token; the
    last chunk carries the finish reason and ``completion``, the whole response with its
    receipt."""

    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    token_id: int | None = None
    completion: ChatCompletion | None = None
    object: str = "chat.completion.chunk"


def _response(model: Any, call: ChatCall, text: str, rid: str, created: int) -> ChatCompletion:
    return ChatCompletion(
        id=rid,
        created=created,
        model=model.ref or model.model_id,
        choices=[Choice(0, Message("assistant", text), call.finish_reason)],
        usage=Usage(**call.usage),
        prompt_ids=list(call.prompt_ids),
        completion_ids=list(call.completion_ids),
    )


class ChatSession:
    """Chat calls that share batches: each call is decoded at once; :meth:`seal` (or a full
    batch of ``batch_size`` calls) attests the pending calls as one batch and fills in
    their receipts. Without an attester calls are decoded only (no receipts)."""

    def __init__(
        self,
        model: Any,
        *,
        attester: Attester | None = None,
        requester: str | None = None,
        store: ContentStore | None = None,
        domain: ClaimDomain | None = None,
        job: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        if attester is not None and (requester is None or store is None):
            raise ConfigError("an attesting chat session needs requester= and store=")
        if batch_size is not None and batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        self.model = model
        self.attester = attester
        self.requester = requester
        self.store = store
        self.domain = domain or ClaimDomain()
        self.job = job
        self.batch_size = batch_size
        self.pending: list[tuple[ChatCall, ChatCompletion]] = []
        self.batches: list[ChatBatch] = []

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]] | str,
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int | None = None,
        stream: bool = False,
    ) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        request = ChatRequest.make(
            messages, max_tokens=max_tokens, temperature=temperature, seed=seed
        )
        prompt = self.model.prompt_ids(request)  # errors surface here, before streaming
        if stream:
            return self._stream(request, prompt)
        ids = list(self.model.tokens(request, prompt))
        return self._finish(request, prompt, ids)

    def _finish(self, request: ChatRequest, prompt: list[int], ids: list[int]) -> ChatCompletion:
        call = ChatCall(request, prompt, ids, self.model.finish_reason(ids))
        response = _response(
            self.model,
            call,
            self.model.decode_text(ids),
            f"chatcmpl-{uuid.uuid4().hex[:24]}",
            int(time.time()),
        )
        if self.attester is not None:
            self.pending.append((call, response))
            if self.batch_size is not None and len(self.pending) >= self.batch_size:
                self.seal()
        return response

    def _stream(self, request: ChatRequest, prompt: list[int]) -> Iterator[ChatCompletionChunk]:
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        name = self.model.ref or self.model.model_id
        text = self.model.text_stream()
        ids: list[int] = []
        for token in self.model.tokens(request, prompt):
            ids.append(token)
            piece = "" if token in self.model.stop_ids else text.decode(token)
            yield ChatCompletionChunk(rid, created, name, [ChunkChoice(0, Delta(piece))], token)
        response = self._finish(request, prompt, ids)
        response.id, response.created = rid, created
        if self.attester is not None and self.batch_size is None:
            self.seal()
        yield ChatCompletionChunk(
            rid,
            created,
            name,
            [ChunkChoice(0, Delta(""), response.choices[0].finish_reason)],
            None,
            response,
        )

    def seal(self) -> ChatBatch | None:
        """Attest the pending calls as one batch (stored), fill in their receipts, return
        the batch (``None`` when nothing is pending)."""
        if not self.pending or self.attester is None:
            return None
        calls = [c for c, _ in self.pending]
        # The job is part of the batch id: batches of other calls under one job name differ
        # by their commitment; without a name each batch gets a unique one.
        batch = attest_calls(
            calls,
            model=self.model,
            attester=self.attester,
            requester=self.requester,
            store=self.store,
            job=self.job or f"chat-{time.time_ns()}",
            domain=self.domain,
        )
        for i, (_, response) in enumerate(self.pending):
            response.receipt = batch.receipt(i)
            response.batch = batch
        self.pending = []
        self.batches.append(batch)
        log.info("attested %d chat calls as batch %s", batch.row_count, batch.batch_id)
        return batch


def chat(
    model: Any,
    messages: Sequence[Mapping[str, Any]] | str,
    *,
    max_tokens: int = 64,
    temperature: float = 0.0,
    seed: int | None = None,
    stream: bool = False,
    attester: Attester | None = None,
    requester: str | None = None,
    store: ContentStore | None = None,
    domain: ClaimDomain | None = None,
    job: str | None = None,
) -> ChatCompletion | Iterator[ChatCompletionChunk]:
    """One chat completion from ``model`` (a :class:`~ogkit.llm.model.ChatModel`).

    ``messages`` is OpenAI's list of ``{"role", "content"}`` (or one user string). With an
    ``attester`` (and the ``requester`` address and the ``store`` the batch goes to) the
    call is attested as a batch of one and ``receipt`` is set. ``stream=True`` yields
    :class:`ChatCompletionChunk` objects instead, the last one holding the whole response.
    """
    session = ChatSession(
        model, attester=attester, requester=requester, store=store, domain=domain, job=job
    )
    if stream:
        return session.chat(
            messages, max_tokens=max_tokens, temperature=temperature, seed=seed, stream=True
        )
    response = session.chat(messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
    session.seal()
    return response


def settle_chat(
    batch: ChatBatch,
    chain: Any,
    *,
    node: Any,
    requester: Any,
    model_owner: str,
    max_price_per_row: int,
    responses: Sequence[ChatCompletion] = (),
    **settle_kwargs: Any,
) -> Any:
    """Commit a chat batch on ``chain`` through the normal :func:`ogkit.settle.settle`
    path, with an order ``requester`` (a :class:`~ogkit.keys.Signer`) signs for exactly
    this batch: its model (paying ``model_owner``), its commitment, its job, this
    ``node``. The commit transaction hash is written into ``responses``' ``tx_hash``."""
    from ogkit.order import new_order
    from ogkit.settle import claim_domain, settle

    order = new_order(
        requester=requester.address,
        model_id=batch.model_id,
        model_owner=model_owner,
        commitment=(batch.manifest.dataset_id, batch.row_count),
        job=batch.manifest.job,
        node=node.address,
        max_price_per_row=max_price_per_row,
        chain_id=chain.chain_id,
        verifying_contract=claim_domain(chain).verifying_contract,
        now=chain.block_timestamp(),
    ).sign(requester)
    record = settle(batch, chain, node=node, order=order, **settle_kwargs)
    for response in responses:
        response.tx_hash = record.commit_tx
    return record


def calls_frame(responses: Sequence[ChatCompletion]) -> Any:
    """One row per response, for notebooks and reports: the question, the answer, token
    counts, the finish reason, the call's leaf and its batch."""
    import polars as pl

    rows = []
    for r in responses:
        receipt = r.receipt or {}
        values = receipt.get("leaf_values", {})
        rows.append(
            {
                "call": int(values["rowIndex"]) if values else None,
                "answer": r.choices[0].message.content,
                "prompt_tokens": r.usage.prompt_tokens,
                "completion_tokens": r.usage.completion_tokens,
                "finish_reason": r.choices[0].finish_reason,
                "leaf": receipt.get("leaf"),
                "batch_id": r.batch.batch_id if r.batch is not None else None,
                "tx_hash": r.tx_hash,
            }
        )
    return pl.DataFrame(rows)
