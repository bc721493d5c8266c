"""Paid chat behind x402: OpenAI's ``POST /v1/chat/completions`` on an inference node that
serves a language model (a hub bundle tagged ``llm``, docs/llm.md, docs/spec.md §12).

A chat call is one leaf, so it costs the model's ModelRegistry price for one row; it is
paid, settled and bound exactly as a paid tabular call (:mod:`ogkit.node.paid`, spec
§11): :class:`PaidChat` is :class:`~ogkit.node.paid.PaidInference` with another request
and another run. The order of a call:

1. **Check the request** (OpenAI's fields ``model``, ``messages``, ``max_tokens``,
   ``temperature``, ``seed``, ``stream``, plus ogkit's optional ``salt``): the canonical
   request (spec §12.2), the node's own ``max_tokens`` cap, the prompt rendered and
   tokenized and checked against the model's context. A call that cannot run is refused
   with a 4xx before any payment is asked for.
2. **Quote** one row's price; 402 with the x402 requirements without ``X-PAYMENT``.
3. **Check, claim and settle the payment** (the same code as paid tabular calls: the
   nonce commits to the body's bytes at this node instance, each payment served once).
4. **Decode and attest** the call as a chat batch of one whose job is ``x402:<payment
   transaction>`` and whose requester is the payer, stored like any other batch (a
   verifier re-decodes it with :func:`ogkit.llm.verify_chat_batch`).

The answer is OpenAI's ``chat.completion`` plus ``receipt``, ``payment``, ``binding``,
the canonical ``request``, ``prompt_ids``, ``completion_ids``, ``batch_id`` and
``artifact_id``. With ``stream: true`` the payment is settled first (the 402 and every
refusal come before any token); the 200 then streams ``chat.completion.chunk`` events,
the last of which carries the receipt, the payment and ``message`` (the whole text, as
the unstreamed answer has it), then ``data: [DONE]``. A stream
whose decoding fails after the payment sends an ``error`` event; the payment stays the
payer's (the same request with the same ``X-PAYMENT`` is served again, once).

:func:`verify_paid_chat` checks such an answer with nothing but the answer, the
verifier's allowlist and (optionally) the chain and the model.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request

from ogkit.errors import ConfigError, OgkitError
from ogkit.node.jobs import JobRunner
from ogkit.node.paid import (
    ANSWERS,
    JOB_PREFIX,
    Answer,
    PaidInference,
    RequestRefused,
    strict_json,
)
from ogkit.x402.types import PAYMENT_RESPONSE_HEADER, encode_response_header

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient
    from ogkit.hub import Hub
    from ogkit.keys import Signer
    from ogkit.llm.calls import ChatRequest
    from ogkit.node.service import NodeService
    from ogkit.store import ContentStore
    from ogkit.verify import Allowlist

__all__ = [
    "CHAT_ANSWER_SCHEMA",
    "PaidChat",
    "StreamAnswer",
    "add_chat_routes",
    "is_chat_model",
    "open_chat_node",
    "stream_answer",
    "verify_paid_chat",
]

log = logging.getLogger(__name__)

CHAT_ANSWER_SCHEMA = "ogkit.node.chat.v1"
CHAT_PATH = "/v1/chat/completions"
FIELDS = {"model", "messages", "max_tokens", "temperature", "seed", "stream", "salt"}
MAX_TOKENS = 256
"""The most tokens one paid call may ask for (the price is per call)."""


def is_chat_model(hub: Hub, ref: str) -> bool:
    """True when ``ref`` names a language model bundle in ``hub`` (its manifest is tagged
    ``llm``); False for anything else, including a ref the hub does not know."""
    from ogkit.llm.publish import LLM_TAG

    try:
        return LLM_TAG in hub.manifest(ref).tags
    except OgkitError:
        return False


class ServedChatModel:
    """The chat model as the node's service sees any model: ids, manifest, the decoder."""

    def __init__(self, chat: Any, manifest: Any) -> None:
        self.chat = chat
        self.manifest = manifest
        self.model_id = chat.model_id
        self.runtime_id = chat.runtime_id


@dataclass
class ChatCallRequest:
    """A checked chat request: the canonical request, its prompt ids, streamed or not."""

    request: ChatRequest
    prompt_ids: list[int]
    stream: bool


@dataclass
class StreamAnswer(Answer):
    """A paid call answered as server-sent events (``events`` yields them as bytes)."""

    events: Iterator[bytes] | None = None


def _chunk_doc(chunk: Any) -> dict[str, Any]:
    """OpenAI's ``chat.completion.chunk``; the last one also carries the whole call's
    usage, token ids, receipt, batch and artefact."""
    choice = chunk.choices[0]
    doc: dict[str, Any] = {
        "id": chunk.id,
        "object": chunk.object,
        "created": chunk.created,
        "model": chunk.model,
        "choices": [
            {
                "index": 0,
                "delta": {"role": choice.delta.role, "content": choice.delta.content},
                "finish_reason": choice.finish_reason,
            }
        ],
    }
    if chunk.completion is not None:
        done = chunk.completion.to_dict()
        for key in ("usage", "receipt", "batch_id", "artifact_id", "prompt_ids",
                    "completion_ids"):  # fmt: skip
            doc[key] = done[key]
        # The whole text as the unstreamed answer gives it: the deltas are the tokenizer's
        # stream, which holds back bytes of an unfinished UTF-8 character.
        doc["message"] = done["choices"][0]["message"]
    return doc


def stream_answer(chunks: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The answer a stream of chunk documents adds up to (the shape of a non-streamed
    answer: ``choices[0].message`` is the last chunk's ``message``, the whole text of the
    completion ids), for :func:`verify_paid_chat`. ConfigError if the stream did not end
    with the call's receipt."""
    if not chunks or "receipt" not in chunks[-1] or "message" not in chunks[-1]:
        raise ConfigError("the stream ended without its last chunk (the receipt)")
    last = dict(chunks[-1])
    message = last.pop("message")
    last["object"] = "chat.completion"
    last["choices"] = [
        {
            "index": 0,
            "message": message,
            "finish_reason": chunks[-1]["choices"][0]["finish_reason"],
        }
    ]
    return last


def _sse(doc: Any) -> bytes:
    return b"data: " + json.dumps(doc, allow_nan=False).encode() + b"\n\n"


class PaidChat(PaidInference):
    """The node's paid ``POST /v1/chat/completions`` (module docstring)."""

    def __init__(self, *, chat: Any, max_tokens: int = MAX_TOKENS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chat = chat
        self.max_tokens = max_tokens
        ref = self.model.manifest.ref
        self.names = {chat.model_id.lower(), ref.lower(), ref.split("@", 1)[0].lower()}

    # -- quoting ---------------------------------------------------------------------------
    def requirements(self, rows: int, resource: str) -> Any:
        req = super().requirements(rows, resource)
        return replace(
            req,
            description=f"a chat completion of {self.model.manifest.ref} with its receipt",
            extra={**req.extra, "calls": rows},
        )

    # -- one call ----------------------------------------------------------------------------
    def check_request(self, body: bytes) -> Any:
        """The checked chat request of ``body``; RequestRefused (4xx) names what is wrong."""
        from ogkit.llm.calls import ChatRequest

        doc = strict_json(body)
        if not isinstance(doc, Mapping):
            raise RequestRefused("the body must be a JSON object (OpenAI's chat request)")
        unknown = sorted(set(doc) - FIELDS)
        if unknown:
            raise RequestRefused(
                f"unsupported fields: {', '.join(str(u)[:40] for u in unknown[:5])}; this "
                f"node takes {', '.join(sorted(FIELDS))}"
            )
        model = doc.get("model")
        if not isinstance(model, str) or model.lower() not in self.names:
            raise RequestRefused(
                f"model {str(model)[:80]!r} is not served here; this node serves "
                f"{self.model.manifest.ref} ({self.chat.model_id}): see GET /v1/models",
                status=404,
                reason="unknown-model",
            )
        salt = doc.get("salt")
        if salt is not None and (not isinstance(salt, str) or len(salt) > 130):
            raise RequestRefused("'salt' must be a string of at most 130 characters")
        stream = doc.get("stream", False)
        if not isinstance(stream, bool):
            raise RequestRefused("'stream' must be true or false")
        messages = doc.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestRefused(
                "'messages' must be a non-empty list of {role, content}", status=422,
                reason="bad-request",
            )  # fmt: skip
        for i, m in enumerate(messages):
            if isinstance(m, Mapping) and set(m) - {"role", "content"}:
                raise RequestRefused(
                    f"message {i} has fields other than role and content: "
                    + ", ".join(sorted(str(k)[:40] for k in set(m) - {"role", "content"})),
                    status=422,
                    reason="bad-request",
                )
        max_tokens = doc.get("max_tokens", min(64, self.max_tokens))
        if (
            isinstance(max_tokens, int)
            and not isinstance(max_tokens, bool)
            and max_tokens > self.max_tokens
        ):
            raise RequestRefused(
                f"max_tokens {max_tokens} is more than the {self.max_tokens} one paid call "
                "takes on this node",
                status=422,
                reason="too-many-tokens",
            )
        temperature = doc.get("temperature", 0.0)
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise RequestRefused("'temperature' must be a number", status=422, reason="bad-value")
        try:
            request = ChatRequest.make(
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                seed=doc.get("seed"),
            )
            prompt = self.chat.prompt_ids(request)
        except ConfigError as exc:
            raise RequestRefused(str(exc), status=422, reason="bad-request") from None
        except Exception as exc:  # the template or the tokenizer on these messages
            raise RequestRefused(
                f"the messages do not render with the model's chat template: "
                f"{type(exc).__name__}: {str(exc)[:200]}",
                status=422,
                reason="bad-request",
            ) from None
        if len(prompt) + request.max_tokens > self.chat.context_length:
            raise RequestRefused(
                f"the prompt has {len(prompt)} tokens and max_tokens is {request.max_tokens}: "
                f"more than the model's context of {self.chat.context_length}",
                status=422,
                reason="too-many-tokens",
            )
        return ChatCallRequest(request, prompt, stream), 1

    def preflight(self, data: Any) -> None:
        """Nothing to run before the payment: :meth:`check_request` rendered and tokenized
        the prompt and checked it against the context, and a completion is token ids,
        which JSON always carries."""

    def handle(self, body: bytes, payment_header: Any, resource: str) -> Answer:
        if not resource.rstrip("/").endswith(CHAT_PATH):
            return Answer(
                404,
                {
                    "error": f"this node serves the chat model {self.model.manifest.ref}: "
                    f"POST {CHAT_PATH} (OpenAI's chat request)",
                    "reason": "chat-node",
                },
            )
        return super().handle(body, payment_header, resource)

    def _session(self, payment: Any, settled: Any) -> Any:
        from ogkit.llm.session import ChatSession

        return ChatSession(
            self.chat,
            attester=self.attester,
            requester=payment.payer,
            store=self.store,
            domain=self.domain,
            job=JOB_PREFIX + settled.transaction,
        )

    def _run(self, data: Any, payment: Any, req: Any, settled: Any) -> dict:
        r = data.request
        session = self._session(payment, settled)
        waited = time.perf_counter()
        with self._run_lock:
            self.seconds["run_lock_wait"] += time.perf_counter() - waited
            response = session.chat(
                r.message_dicts(), max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed
            )
            session.seal()
        return self._answer(response, data, payment, req, settled)

    def _answer(self, response: Any, data: Any, payment: Any, req: Any, settled: Any) -> dict:
        from ogkit.attest import execution_hash

        batch = response.batch
        doc = response.to_dict()
        doc.pop("tx_hash", None)
        auth = payment.authorization
        doc.update(
            {
                "schema": CHAT_ANSWER_SCHEMA,
                "model_id": batch.model_id,
                "request": data.request.to_dict(),
                "binding": {
                    "job": batch.manifest.job,
                    "dataset_id": batch.manifest.dataset_id,
                    "execution_hash": execution_hash(batch.manifest.execution()),
                },
                "payment": {
                    **settled.to_dict(),
                    "asset": req.asset,
                    "payTo": auth.to,
                    "value": str(auth.value),
                    "pricePerRow": req.extra["pricePerRow"],
                    "nonce": auth.nonce,
                },
            }
        )
        return doc

    def _serve(
        self, data: Any, rows: int, payment: Any, req: Any, settled: Any, started: float
    ) -> Answer:
        if not data.stream:
            return super()._serve(data, rows, payment, req, settled, started)
        events: queue.Queue[bytes | None] = queue.Queue()
        thread = threading.Thread(
            target=self._produce,
            args=(data, payment, req, settled, started, events),
            name="paid-chat-stream",
            daemon=True,
        )
        thread.start()

        def drain() -> Iterator[bytes]:
            while True:
                item = events.get()
                if item is None:
                    return
                yield item

        return StreamAnswer(
            200, {}, {PAYMENT_RESPONSE_HEADER: encode_response_header(settled)}, events=drain()
        )

    def _produce(
        self,
        data: Any,
        payment: Any,
        req: Any,
        settled: Any,
        started: float,
        events: queue.Queue[bytes | None],
    ) -> None:
        """Decode a paid streamed call into ``events`` (to the end even if the client left:
        the call is paid, decoded and attested once); the ledger says ``served`` after the
        last chunk, ``unserved`` if decoding failed."""
        auth = payment.authorization
        r = data.request
        sent: list[bytes] = []
        try:
            session = self._session(payment, settled)
            with self._run_lock:
                for chunk in session.chat(
                    r.message_dicts(),
                    max_tokens=r.max_tokens,
                    temperature=r.temperature,
                    seed=r.seed,
                    stream=True,
                ):
                    doc = _chunk_doc(chunk)
                    if chunk.completion is not None:
                        full = self._answer(chunk.completion, data, payment, req, settled)
                        for key in ("schema", "model_id", "request", "binding", "payment"):
                            doc[key] = full[key]
                    sent.append(_sse(doc))
                    events.put(sent[-1])
            sent.append(b"data: [DONE]\n\n")
            # Kept before the ledger says "served": the same payment sent again gets
            # the same events (PaidInference._redeliver).
            answer_id = self.store.put(ANSWERS, b"".join(sent))
            self.ledger.served(payment.payer, auth.nonce, f"sse:{answer_id}")
            self.latencies.append(time.perf_counter() - started)
            del self.latencies[:-10_000]
        except Exception as exc:  # a node fault after payment: the payment stays the payer's
            self.ledger.record(payment.payer, auth.nonce, "unserved")
            self.counters["paid_failed"] += 1
            log.exception("paid chat stream %s failed after payment", settled.transaction)
            events.put(
                _sse(
                    {
                        "error": {
                            "message": f"the node failed after the payment was settled "
                            f"({exc}); the payment transaction is {settled.transaction}; send "
                            "the same request with the same X-PAYMENT again",
                            "type": "server_error",
                            "reason": "node-fault",
                        },
                        "payment": settled.to_dict(),
                    }
                )
            )
        else:
            events.put(sent[-1])
        finally:
            events.put(None)

    def _stored_answer(self, kind: str, raw: bytes, headers: dict[str, str]) -> Answer:
        if kind != "sse":
            return super()._stored_answer(kind, raw, headers)
        return StreamAnswer(200, {}, headers, events=iter([raw]))


# -- HTTP ------------------------------------------------------------------------------------
def add_chat_routes(app: Any, service: NodeService, *, read_body: Any) -> None:
    """``GET /v1/models`` and the paid ``POST /v1/chat/completions`` on ``app``
    (``await read_body(request)`` gives the bounded body as bytes, or the response that
    refuses it)."""
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    from ogkit.x402.types import PAYMENT_HEADER

    paid = service.paid
    model = service.model

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": model.manifest.ref,
                    "object": "model",
                    "owned_by": model.manifest.owner,
                    "model_id": model.model_id,
                    "runtime_id": model.runtime_id,
                }
            ],
        }

    @app.post(CHAT_PATH, name="chat_completions")
    async def chat_completions(request: Request) -> Any:
        body = await read_body(request)
        if not isinstance(body, bytes):
            return body  # the refusal of a body too large or too slow
        headers = request.headers.getlist(PAYMENT_HEADER)
        resource = str(request.url_for("chat_completions"))
        answer = await run_in_threadpool(paid.handle, body, headers or None, resource)
        service.counters[f"http_{answer.status}"] += 1
        if isinstance(answer, StreamAnswer) and answer.events is not None:
            return StreamingResponse(
                answer.events, media_type="text/event-stream", headers=answer.headers
            )
        if answer.raw is not None:
            return Response(
                answer.raw, status_code=answer.status, headers=answer.headers,
                media_type="application/json",
            )  # fmt: skip
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


# -- the service -----------------------------------------------------------------------------
def open_chat_node(
    *,
    home: Path,
    hub: Hub,
    store: ContentStore,
    model_ref: str,
    node: Signer,
    attester_signer: Signer,
    chain: ChainClient,
    dask: Any = None,
    facilitator_url: str | None = None,
    data_roots: list[Path] | None = None,
    poll: float = 2.0,
    start: bool = True,
    state: Path,
    lock: Any,
    instance: str,
    max_tokens: int = MAX_TOKENS,
) -> NodeService:
    """A node serving the chat model ``model_ref``: :func:`ogkit.node.service.open_node`
    calls this for a bundle tagged ``llm``, with the node's ``state`` folder, the ``lock``
    it holds on it (released here if the node cannot start) and its ``instance`` id. Its
    batch-job endpoint refuses jobs (chat batches settle with ``ogkit chat`` and ``ogkit
    settle``); everything else is as for a tabular model."""
    from ogkit.attest import make_attester
    from ogkit.llm.model import load_chat_model
    from ogkit.node.jobs import JobBook
    from ogkit.node.ledger import PaymentLedger
    from ogkit.node.pricing import RegistryPrice, registry_price
    from ogkit.node.service import NodeService
    from ogkit.x402.facilitator import Facilitator, FacilitatorClient

    try:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigError(f"--max-tokens must be an integer >= 1, got {max_tokens!r}")
        manifest = hub.manifest(model_ref)
        chat = load_chat_model(manifest.ref, hub=hub)
        registry_price(chain, manifest)  # refuse to start for an unregistered model
        served = ServedChatModel(chat, manifest)
        attester = make_attester("software", signer=attester_signer)
        facilitator = (
            FacilitatorClient(facilitator_url)
            if facilitator_url
            else Facilitator(chain, node, in_process=True)
        )
        paid = PaidChat(
            chat=chat,
            max_tokens=max_tokens,
            model=served,
            hub=hub,
            store=store,
            attester=attester,
            chain=chain,
            facilitator=facilitator,
            price=RegistryPrice(chain, manifest),
            pay_to=node.address,
            ledger=PaymentLedger(state / "payments.sqlite"),
            instance=instance,
            max_rows=1,
        )
        runner = _ChatJobs(
            book=JobBook(state / "jobs"),
            model=served,
            hub=hub,
            store=store,
            attester=attester,
            node=node,
            chain=chain,
            home=Path(home),
            dask=dask,
            data_roots=data_roots,
            poll=poll,
        )
    except BaseException:
        lock.close()
        raise
    if start:
        runner.start()
    log.info(
        "node %s serves the chat model %s (%s) on chain %d",
        node.address,
        manifest.ref,
        chat.model_id,
        chain.chain_id,
    )
    service = NodeService(served, node, attester, chain, paid, runner, facilitator_url)  # type: ignore[arg-type]
    service.lock = lock
    return service


class _ChatJobs(JobRunner):
    """The job runner of a chat node: it finalises nothing new and takes no jobs."""

    def submit(self, doc: Any) -> Any:
        raise ConfigError(
            f"this node serves the chat model {self.model.manifest.ref}: it takes paid chat "
            f"calls (POST {CHAT_PATH}), not batch jobs; chat batches settle with `ogkit chat` "
            "and `ogkit settle`"
        )


# -- checking an answer ----------------------------------------------------------------------
@dataclass(frozen=True)
class PaidChatCheck:
    ok: bool
    problems: tuple[str, ...]
    payer: str | None = None
    transaction: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "payer": self.payer,
            "transaction": self.transaction,
        }


def verify_paid_chat(
    answer: Any,
    allowlist: Allowlist | None = None,
    *,
    chain: ChainClient | None = None,
    price: int | None = None,
    model: Any = None,
    request: Any = None,
) -> PaidChatCheck:
    """Check a paid ``POST /v1/chat/completions`` answer (or a stream's last chunk):

    1. the receipt verifies (:func:`ogkit.verify.verify_receipt`) and is call 0 of a
       claim of one call;
    2. the canonical ``request`` and ``prompt_ids`` hash to the leaf's ``inputHash``, and
       ``completion_ids``, ``usage`` (checked against the ids) and the finish reason to its
       ``outputHash`` (spec §12.3); the binding's dataset id is the input root of that
       one call;
    3. the claim's requester is the payer, the job is ``x402:<payment transaction>`` and
       the batch id derives from them and the binding (spec §11.2);
    4. with ``price``: the payment's value is that price (one call, one row);
    5. with ``chain``: the transaction moved the value from the payer to the payee and
       consumed the payment's nonce; the claim is of this chain's settlement contract and
       its attester is bound to the payee node;
    6. with ``model`` (a :class:`~ogkit.llm.model.ChatModel`): the model id is the
       model's, the prompt ids are the request rendered and tokenized again, and the
       message content is the completion ids' text. (Re-decoding the call is
       :func:`ogkit.llm.verify_chat_batch` on ``artifact_id``.)
    7. with ``request`` (what the caller sent: a :class:`~ogkit.llm.calls.ChatRequest`,
       or the request body as bytes or a mapping): the answer's canonical request is that
       one. Without it the receipts only prove the node answered *some* request: a node
       that adds a system message or cuts ``max_tokens`` passes checks 1-6.

    Never raises on a hostile answer: problems are listed."""
    from ogkit.attest import BatchClaim
    from ogkit.llm.batch import input_root
    from ogkit.llm.calls import ChatRequest, input_hash, output_hash
    from ogkit.node.receipts import check_payment_binding, check_payment_transaction
    from ogkit.verify import verify_receipt

    problems: list[str] = []
    payer = tx = None
    try:
        if not isinstance(answer, Mapping):
            raise ValueError("the answer is not a JSON object")
        payment = answer["payment"]
        binding = answer["binding"]
        receipt = answer["receipt"]
        payer = str(payment["payer"])
        tx = str(payment["transaction"])
        check = verify_receipt(receipt, allowlist)
        problems += [f"receipt: {p}" for p in check.problems]
        claim = BatchClaim.from_dict(receipt["claim"])
        values = receipt["leaf_values"]
        if claim.row_count != 1 or int(values["rowIndex"]) != 0:
            problems.append(f"the claim holds {claim.row_count} calls; a paid call is one")
        answered = ChatRequest.from_dict(answer["request"])
        if request is not None:
            sent = _sent_request(request, answered.max_tokens)
            if sent != answered:
                problems.append(
                    "the answer is to another request than the one sent: "
                    + "; ".join(_request_differences(sent, answered))
                )
        prompt_ids = [int(i) for i in answer["prompt_ids"]]
        completion_ids = [int(i) for i in answer["completion_ids"]]
        usage = answer["usage"]
        finish = answer["choices"][0]["finish_reason"]
        ins = input_hash(answered, prompt_ids)
        if "0x" + ins.hex() != str(values["inputHash"]).lower():
            problems.append("the request and prompt ids do not hash to the receipt's inputHash")
        counts = {
            "prompt_tokens": len(prompt_ids),
            "completion_tokens": len(completion_ids),
            "total_tokens": len(prompt_ids) + len(completion_ids),
        }
        if {k: usage.get(k) for k in counts} != counts:
            problems.append(f"the usage {dict(usage)} is not what the token ids give {counts}")
        if (
            "0x" + output_hash(completion_ids, usage, finish).hex()
            != str(values["outputHash"]).lower()
        ):
            problems.append(
                "the completion ids, usage and finish reason do not hash to the receipt's "
                "outputHash"
            )
        if str(binding["dataset_id"]).lower() != input_root([ins]).lower():
            problems.append("the binding's dataset id is not the input root of this one call")
        if str(answer.get("model_id", claim.model_id)).lower() != claim.model_id.lower():
            problems.append(f"the answer names model {answer.get('model_id')}, the claim another")
        domain = receipt["domain"]
        problems += check_payment_binding(claim, binding, domain, payer, tx)
        value = int(payment["value"])
        if price is not None and value != int(price):
            problems.append(f"the payment {value} is not one call's price {price}")
        if chain is not None:
            problems += check_payment_transaction(
                chain, payment, payer, tx, value, int(domain["chain_id"])
            )
            problems += _attester_problems(chain, claim.attester, payment, domain)
        if model is not None:
            if model.model_id.lower() != claim.model_id.lower():
                problems.append(f"the claim is of model {claim.model_id}, not {model.model_id}")
            if model.prompt_ids(answered) != prompt_ids:
                problems.append("the prompt ids are not the request rendered and tokenized")
            content = answer["choices"][0]["message"]["content"]
            if model.decode_text(completion_ids) != content:
                problems.append("the message content is not the text of the completion ids")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OgkitError) as exc:
        problems.append(f"the answer is malformed: {type(exc).__name__}: {exc}")
    return PaidChatCheck(not problems, tuple(problems), payer, tx)


def _sent_request(request: Any, answered_max_tokens: int | None = None) -> Any:
    """The canonical form of what the caller sent (a ChatRequest, or its body; a body
    without ``max_tokens`` takes the node's default, at most 64)."""
    from ogkit.llm.calls import ChatRequest

    if isinstance(request, ChatRequest):
        return request
    doc = strict_json(request) if isinstance(request, bytes | bytearray) else request
    if not isinstance(doc, Mapping):
        raise ValueError("request= must be a ChatRequest or the request body")
    max_tokens = doc.get("max_tokens")
    if max_tokens is None:  # the node's default: 64, or its own cap if lower
        answered = answered_max_tokens if answered_max_tokens is not None else 64
        max_tokens = answered if 1 <= answered <= 64 else 64
    return ChatRequest.make(
        doc.get("messages"),
        max_tokens=max_tokens,
        temperature=doc.get("temperature", 0.0),
        seed=doc.get("seed"),
    )


def _request_differences(sent: Any, answered: Any) -> list[str]:
    out = []
    if sent.messages != answered.messages:
        out.append(
            f"messages: sent {len(sent.messages)}, answered {len(answered.messages)}"
            + ("" if len(sent.messages) != len(answered.messages) else " (other contents)")
        )
    for name in ("max_tokens", "temperature", "seed"):
        a, b = getattr(sent, name), getattr(answered, name)
        if a != b:
            out.append(f"{name}: sent {a!r}, answered {b!r}")
    return out


def _attester_problems(
    chain: ChainClient, attester: str, payment: Mapping[str, Any], domain: Mapping[str, Any]
) -> list[str]:
    """The claim is of this chain's settlement contract, and its attester is the one the
    NodeRegistry binds to the payee node (an approved attester of another node cannot
    sign for this one)."""
    from eth_utils import to_checksum_address

    from ogkit.settle import claim_domain

    problems = []
    expected = claim_domain(chain).verifying_contract
    if str(domain["verifying_contract"]).lower() != expected.lower():
        problems.append(
            f"the claim is for contract {domain['verifying_contract']}, not this chain's "
            f"settlement {expected}"
        )
    registry = chain.contract("NodeRegistry")
    node = str(chain.call(registry.functions.nodeOfAttester(to_checksum_address(attester))))
    if node.lower() != str(payment["payTo"]).lower():
        problems.append(
            f"attester {attester} is bound on chain to node {node}, not to the payee "
            f"{payment['payTo']}: it cannot sign for this node"
        )
    return problems
