"""Per-request inference behind x402: a few rows in, outputs and one receipt per row out.

The order of a paid call, and why:

1. **Parse and check the request** (JSON shape, row count, every value, the model's input
   signature through :func:`~ogkit.dataset.plan_inputs`). A request that cannot run is
   refused with a 4xx *before* any payment is asked for or taken.
2. **Quote**: rows × the model's ModelRegistry price (:mod:`ogkit.node.pricing`). Without
   an ``X-PAYMENT`` header the answer is 402 with the x402 payment requirements.
3. **Check the payment** offline (:func:`~ogkit.x402.exact.check_exact_payment`: scheme,
   network, payee, exact amount, validity window, the payer's EIP-712 signature), then
   claim the (payer, nonce) in the node's :class:`~ogkit.node.ledger.PaymentLedger` (a
   payment is served at most once, a concurrent duplicate loses here) and ask the
   facilitator to settle it (it checks all of that again, the nonce unused and the
   funds, before it sends ``transferWithAuthorization``). A payment somebody else
   submitted first that paid exactly this call to this node is served once too. Every refusal
   is a 402 with the x402 ``error`` and a stable ``reason``; nothing is charged.
4. **Run and attest** the rows with the verified pipeline
   (:func:`~ogkit.infer.run_verified_inference`) as a batch of their own whose job is
   ``x402:<payment transaction hash>`` and whose requester is the payer. The job is
   hashed into the batch id, the batch id into every leaf and into the claim the
   attester signs: each receipt is bound to the payment transaction that paid for it
   (docs/spec.md, "Per-request receipts"). The batch is stored like any other, so
   verifiers can re-execute paid calls too.

The payment is settled before the rows run, so the transaction hash exists to bind; a
request that passed step 1 does not fail afterwards except on a node fault, which is
logged with the transaction and counted (``paid_failed``).

5. **Keep the answer**: its bytes go into the node's store (``answers``) before the ledger
   says ``served``. The same payment and the same request sent again (a connection that
   dropped, a node killed before the answer left it) get those bytes again with the
   settlement header, and nothing is run or charged (``paid_redelivered``). A payment is
   a bearer instrument and its nonce binds the request body: only a party holding both
   the payer's signed authorization and the exact request can ask for the answer again.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ogkit.errors import NodeUnavailable, OgkitError, PaymentError
from ogkit.x402.exact import CLOCK_SKEW, REQUEST_BINDING, check_exact_payment, request_nonce
from ogkit.x402.types import (
    PAYMENT_RESPONSE_HEADER,
    X402_VERSION,
    PaymentRequirements,
    SettleResponse,
    decode_payment_header,
    encode_response_header,
    loads_bounded,
    network_id,
)

if TYPE_CHECKING:
    from ogkit.attest import Attester
    from ogkit.chain.client import ChainClient
    from ogkit.hub import Hub
    from ogkit.load import LoadedModel
    from ogkit.node.ledger import PaymentLedger
    from ogkit.node.pricing import RegistryPrice
    from ogkit.store import ContentStore

__all__ = ["INFER_SCHEMA", "Answer", "PaidInference", "RequestRefused", "parse_rows"]

log = logging.getLogger(__name__)

INFER_SCHEMA = "ogkit.node.infer.v1"
JOB_PREFIX = "x402:"
ANSWERS = "answers"  # the store kind of paid answers, kept for a payer who asks again


class RequestRefused(OgkitError):
    """A request the node refuses before any payment: ``status`` and ``reason`` go out."""

    def __init__(self, message: str, *, status: int = 400, reason: str = "bad-request") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # ``body`` already encoded (paid answers)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _finite_number(value: Any) -> bool:
    """A JSON number every model input dtype takes: finite, and within float32's range
    (1e39 is finite in JSON and infinite in a float32 tensor; 10**30 has no integer
    dtype). Integers beyond 2**53 are not exact as floats: refused too."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) <= value <= 2**53
    return isinstance(value, float) and math.isfinite(value) and abs(value) <= _FLOAT32_MAX


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise RequestRefused(
            f"the body repeats the key {next(k for k in keys if keys.count(k) > 1)[:40]!r}: "
            "a JSON object names each key once",
            reason="bad-json",
        )
    return dict(pairs)


def strict_json(body: bytes) -> Any:
    """``body`` as JSON, refusing what parsers disagree on: repeated keys, NaN and
    Infinity literals, nesting deeper than Python's stack; RequestRefused otherwise."""

    def constant(name: str) -> Any:
        raise RequestRefused(f"{name} is not JSON", status=422, reason="bad-value")

    try:
        return loads_bounded(body, object_pairs_hook=_no_duplicates, parse_constant=constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestRefused(
            "the body is not JSON" + (f" ({exc})" if "brackets" in str(exc) else ""),
            reason="bad-json",
        ) from None


def parse_rows(doc: Any, model: LoadedModel, max_rows: int) -> Any:
    """The request's rows as what :func:`~ogkit.dataset.open_source` takes: a polars frame
    for ``{"rows": [{column: number, ...}, ...]}``, a dict of arrays for ``{"inputs":
    {input: nested lists}}``. RequestRefused (400/413/422) names what is wrong."""
    import polars as pl

    if not isinstance(doc, Mapping):
        raise RequestRefused("the body must be a JSON object with 'rows' or 'inputs'")
    unknown = sorted(set(doc) - {"rows", "inputs", "salt"})
    if unknown or ("rows" in doc) == ("inputs" in doc):
        raise RequestRefused(
            "the body must have exactly one of 'rows' (a list of objects, one per row) or "
            f"'inputs' (tensors keyed by model input){'; unknown keys ' if unknown else ''}"
            + ", ".join(unknown[:5])
        )
    salt = doc.get("salt")
    if salt is not None and (not isinstance(salt, str) or len(salt) > 130):
        raise RequestRefused("'salt' must be a string of at most 130 characters")
    if "rows" in doc:
        rows = doc["rows"]
        if not isinstance(rows, list) or not rows:
            raise RequestRefused("'rows' must be a non-empty list of objects")
        if len(rows) > max_rows:
            raise RequestRefused(
                f"{len(rows)} rows is more than the {max_rows} one call takes; split the "
                "request, or submit a batch job (POST /v1/jobs)",
                status=413,
                reason="too-many-rows",
            )
        first = rows[0]
        if not isinstance(first, Mapping) or not first:
            raise RequestRefused("each row must be a non-empty object of column: number")
        columns = list(first)
        if len(columns) > 4096:
            raise RequestRefused("a row has more than 4096 columns")
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping) or list(row) != columns:
                raise RequestRefused(f"row {i} does not have the columns of row 0, in order")
            bad = [k for k, v in row.items() if not _finite_number(v)]
            if bad:
                raise RequestRefused(
                    f"row {i}: {', '.join(map(str, bad[:5]))} must be finite numbers",
                    status=422,
                    reason="bad-value",
                )
        data = {c: [row[c] for row in rows] for c in columns}
        return pl.DataFrame(data, strict=False)
    inputs = doc["inputs"]
    if not isinstance(inputs, Mapping) or not inputs:
        raise RequestRefused("'inputs' must be an object of input name: nested list")
    specs = {spec.name: spec for spec in model.inputs}
    strange = sorted(set(inputs) - set(specs))
    if strange:
        raise RequestRefused(
            f"the model has no input {', '.join(map(repr, strange[:5]))}; its inputs are "
            + ", ".join(specs),
            status=422,
            reason="schema",
        )
    arrays = {}
    for name, value in inputs.items():
        try:
            array = np.asarray(value, dtype=np.dtype(specs[name].dtype))
        except (ValueError, TypeError, OverflowError):
            raise RequestRefused(
                f"input {name!r} is not a rectangular array of {specs[name].dtype}",
                status=422,
                reason="schema",
            ) from None
        if array.ndim == 0 or array.shape[0] == 0:
            raise RequestRefused(f"input {name!r} has no rows", status=422, reason="schema")
        if array.shape[0] > max_rows:
            raise RequestRefused(
                f"{array.shape[0]} rows is more than the {max_rows} one call takes",
                status=413,
                reason="too-many-rows",
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise RequestRefused(
                f"input {name!r} holds NaN, infinity or a number beyond {array.dtype}'s range",
                status=422,
                reason="bad-value",
            )
        if (
            array.dtype.kind in "iu"
            and array.size
            and (np.abs(array.astype(np.float64)).max() > 2**53)
        ):
            raise RequestRefused(
                f"input {name!r} holds NaN or infinity", status=422, reason="bad-value"
            )
        arrays[name] = array
    return arrays


class PaidInference:
    """The node's ``POST /v1/infer``: see the module docstring."""

    def __init__(
        self,
        *,
        model: LoadedModel,
        hub: Hub,
        store: ContentStore,
        attester: Attester,
        chain: ChainClient,
        facilitator: Any,
        price: RegistryPrice,
        pay_to: str,
        ledger: PaymentLedger,
        instance: str = "0x" + "00" * 32,
        max_rows: int = 256,
        max_timeout_seconds: int = 120,
    ) -> None:
        from ogkit.settle import claim_domain

        self.model = model
        self.hub = hub
        self.store = store
        self.attester = attester
        self.chain = chain
        self.facilitator = facilitator
        self.price = price
        self.pay_to = pay_to
        self.ledger = ledger
        self.instance = instance
        self.max_rows = max_rows
        self.max_timeout_seconds = max_timeout_seconds
        self.network = network_id(chain.chain_id)
        self.domain = claim_domain(chain)
        token = chain.contract("OPGToken")
        self.asset = token.address
        eip712 = chain.call(token.functions.eip712Domain())
        self.token_name, self.token_version = str(eip712[1]), str(eip712[2])
        from ogkit.x402.facilitator import ChainClock

        self.clock = ChainClock(chain)
        self.counters: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.seconds: Counter[str] = Counter()  # time spent per phase of paid calls
        self._run_lock = threading.Lock()  # onnxruntime is pinned to one thread: one at a time

    # -- quoting ---------------------------------------------------------------------------
    def requirements(self, rows: int, resource: str) -> PaymentRequirements:
        per_row = self.price.per_row()
        return PaymentRequirements(
            network=self.network,
            max_amount_required=rows * per_row,
            resource=resource,
            pay_to=self.pay_to,
            asset=self.asset,
            description=f"{rows} inference(s) of {self.model.manifest.ref} with receipts",
            mime_type="application/json",
            max_timeout_seconds=self.max_timeout_seconds,
            extra={
                "name": self.token_name,
                "version": self.token_version,
                "modelId": self.model.model_id,
                "rows": rows,
                "pricePerRow": str(per_row),
                "binding": REQUEST_BINDING,
                "instance": self.instance,
            },
        )

    def _required(
        self, req: PaymentRequirements, error: str, reason: str = "payment-required"
    ) -> Answer:
        self.counters[f"refused_{reason}"] += 1
        return Answer(
            402,
            {
                "x402Version": X402_VERSION,
                "error": error,
                "reason": reason,
                "accepts": [req.to_dict()],
            },
        )

    # -- one call ----------------------------------------------------------------------------
    def check_request(self, body: bytes) -> Any:
        """The rows of ``body``, checked against the model; RequestRefused otherwise."""
        from ogkit.dataset import bind_features, open_source, plan_inputs

        doc = strict_json(body)
        data = parse_rows(doc, self.model, self.max_rows)
        try:
            source = open_source(data)
            plan_inputs(source, self.model.inputs, bind_features(self.model, None))
        except OgkitError as exc:  # SchemaMismatchError lists every problem at once
            raise RequestRefused(str(exc), status=422, reason="schema") from None
        except Exception as exc:  # polars/numpy on values the model cannot take
            raise RequestRefused(
                f"the rows do not convert to the model's inputs: {type(exc).__name__}: "
                f"{str(exc)[:200]}",
                status=422,
                reason="schema",
            ) from None
        return data, source.n_rows

    def _check_payment(self, payment: Any, req: PaymentRequirements) -> None:
        """:func:`check_exact_payment` now; for a payment this node settled (``unserved``
        in the ledger, or ``served`` and asked for its answer again), at a moment inside
        its validity window instead: it was valid when it paid, and expiring while the
        node was down or failing does not take the call from the payer (the signature,
        payee, amount and binding are still checked; nothing is settled again)."""
        auth = payment.authorization
        now = self.clock.now()
        state = self.ledger.state(payment.payer, auth.nonce)
        if (
            state is not None
            and state[0] in ("unserved", "served")
            and state[1] is not None
            and auth.valid_after + 1 < auth.valid_before - CLOCK_SKEW - 1
        ):
            now = min(max(now, auth.valid_after + 1), auth.valid_before - CLOCK_SKEW - 1)
        check_exact_payment(
            payment, req, now=now, token_name=self.token_name, token_version=self.token_version
        )

    def preflight(self, data: Any) -> None:
        """Run the model on the rows before the payment is settled, and refuse (422
        ``non-finite-output``) rows whose outputs JSON cannot carry: ``3e38`` is a finite
        float32, but the sample model turns it into NaN probabilities, and an answer that
        cannot be written after the payment settled would be paid for and never served.
        (The verified run afterwards is the same runtime on the same feeds.) Only the
        requests :meth:`check_request` makes (a frame or a dict of arrays) are run."""
        import polars as pl

        from ogkit.dataset import bind_features, open_source, plan_inputs

        if not isinstance(data, pl.DataFrame | dict):
            return
        source = open_source(data)
        plan = plan_inputs(source, self.model.inputs, bind_features(self.model, None))
        feeds = plan.feeds(source, 0, source.n_rows)
        with self._run_lock:
            outputs = self.model.run(feeds)
        for name, values in outputs.items():
            array = np.asarray(values)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise RequestRefused(
                    f"the model's output {name!r} is NaN or infinite for these rows, which a "
                    "JSON answer cannot carry; nothing was charged: send other values",
                    status=422,
                    reason="non-finite-output",
                )

    def handle(self, body: bytes, payment_header: str | list[str] | None, resource: str) -> Answer:
        """One ``POST /v1/infer``: ``payment_header`` is the ``X-PAYMENT`` value (a list
        of the values when the request carried several: refused, as a proxy may pick
        another one than the node)."""
        started = time.perf_counter()
        try:
            data, rows = self.check_request(body)
        except RequestRefused as exc:
            self.counters[f"refused_{exc.reason}"] += 1
            return Answer(exc.status, {"error": str(exc), "reason": exc.reason})
        req = self.requirements(rows, resource)
        if isinstance(payment_header, list):
            if len(payment_header) != 1:
                return self._required(
                    req,
                    f"the request carries {len(payment_header)} X-PAYMENT headers; send one",
                    "malformed" if payment_header else "payment-required",
                )
            payment_header = payment_header[0]
        if payment_header is None:
            return self._required(req, "X-PAYMENT header is required", "payment-required")
        try:
            payment = decode_payment_header(payment_header)
            self._check_payment(payment, req)
            if payment.authorization.nonce != request_nonce(req, body):
                raise PaymentError(
                    "the payment's nonce does not commit to this request at this node "
                    f"({REQUEST_BINDING}: the body, the model and the node instance); it "
                    "was signed for another request, model or node: sign this one",
                    reason="unbound",
                )
        except PaymentError as exc:
            return self._required(req, str(exc), exc.reason)
        try:
            self.preflight(data)
        except RequestRefused as exc:
            self.counters[f"refused_{exc.reason}"] += 1
            return Answer(exc.status, {"error": str(exc), "reason": exc.reason})
        auth = payment.authorization
        if not self.ledger.claim(payment.payer, auth.nonce, auth.value):
            resumed = self.ledger.resume(payment.payer, auth.nonce, auth.value)
            if resumed is not None:
                # Paid earlier, never answered (a node fault or a crash after the
                # settlement): serve it now, once, bound to the transaction that paid.
                self.counters["paid_resumed"] += 1
                settled = SettleResponse(
                    True, self.network, transaction=resumed, payer=payment.payer,
                    message="paid earlier; served now",
                )  # fmt: skip
                return self._serve(data, rows, payment, req, settled, started)
            again = self.ledger.answer_of(payment.payer, auth.nonce)
            if again is not None:
                # Served earlier: the same payment and the same request (its nonce binds
                # the body) get the stored answer again; nothing is run or charged.
                return self._redeliver(payment, *again)
            state = self.ledger.state(payment.payer, auth.nonce)
            busy = state is None or state[0] in ("claimed", "settled")
            return self._required(
                req,
                f"payment {auth.nonce} of {payment.payer} "
                + ("is being settled and served now: send it again in a moment" if busy else
                   "was already used for a call: sign a new payment"),
                "in-flight" if busy else "replayed",
            )  # fmt: skip
        # The facilitator's /settle checks everything /verify does (and more) before it
        # sends: with the settlement ahead of the work, a separate /verify adds nothing.
        settle_started = time.perf_counter()
        try:
            settled = self.facilitator.settle(payment, req)
        except NodeUnavailable as exc:
            # Whether it settled is for the chain to say: the same payment sent again is
            # then found used by a transaction that paid this node, and served once.
            self.ledger.release(payment.payer, auth.nonce)
            self.counters["refused_facilitator-unavailable"] += 1
            return Answer(
                503,
                {
                    "error": f"{exc}; send the same payment again in a moment",
                    "reason": "facilitator-unavailable",
                },
            )
        self.seconds["settle"] += time.perf_counter() - settle_started
        if (
            not settled.success
            and settled.error_reason == "replayed"
            and settled.transaction
            and self._paid_by(settled.transaction, payment, req)
        ):
            # Somebody submitted this authorization before us, and it paid exactly this
            # call to this node; the ledger says the call was never served: serve it once.
            # (Its nonce commits to this body at this node instance: no other request,
            # and no other node sharing the payee, can have been served with it.)
            self.counters["paid_front_run"] += 1
            settled = type(settled)(
                True,
                settled.network,
                transaction=settled.transaction,
                payer=settled.payer,
                message="settled by another submitter first",
            )
        if not settled.success or not settled.transaction:
            self.ledger.release(payment.payer, auth.nonce)
            return self._required(
                req, settled.message or "the payment could not be settled",
                settled.error_reason or "settle-failed",
            )  # fmt: skip
        if not self._paid_by(settled.transaction, payment, req):
            # A facilitator that says "settled" for a transaction that did not pay this
            # node this price: nothing is served for it.
            self.ledger.release(payment.payer, auth.nonce)
            self.counters["refused_facilitator-lied"] += 1
            return Answer(
                502,
                {
                    "error": f"the facilitator reported {settled.transaction} as the "
                    "settlement, but that transaction did not pay this call to this node",
                    "reason": "settle-unconfirmed",
                },
            )
        self.ledger.record(payment.payer, auth.nonce, "settled", settled.transaction)
        self.counters["paid"] += 1
        self.counters["paid_rows"] += rows
        self.counters["paid_base_units"] += payment.authorization.value
        return self._serve(data, rows, payment, req, settled, started)

    def _serve(
        self,
        data: Any,
        rows: int,
        payment: Any,
        req: PaymentRequirements,
        settled: SettleResponse,
        started: float,
    ) -> Answer:
        """Run a paid call and answer it; the ledger says ``settled`` while it runs."""
        auth = payment.authorization
        try:
            run_started = time.perf_counter()
            doc = self._run(data, payment, req, settled)
            self.seconds["run"] += time.perf_counter() - run_started
            body = json.dumps(doc, allow_nan=False).encode()  # an answer must be JSON
            # Kept before the ledger says "served": a payer whose answer got lost on the
            # way sends the same payment again and gets these bytes (see _redeliver).
            answer_id = self.store.put(ANSWERS, body)
            self.ledger.served(payment.payer, auth.nonce, f"json:{answer_id}")
        except Exception as exc:  # a node fault after payment: say so, with the transaction
            # The payment stays the payer's: the same X-PAYMENT sent again is served
            # (once) with this transaction, without paying again.
            self.ledger.record(payment.payer, auth.nonce, "unserved")
            self.counters["paid_failed"] += 1
            log.exception("paid call %s failed after payment", settled.transaction)
            return Answer(
                500,
                {
                    "error": f"the node failed after the payment was settled ({exc}); the "
                    f"payment transaction is {settled.transaction}; the call is still "
                    "paid: send the same request with the same X-PAYMENT again",
                    "reason": "node-fault",
                    "payment": settled.to_dict(),
                },
                {PAYMENT_RESPONSE_HEADER: encode_response_header(settled)},
            )
        elapsed = time.perf_counter() - started
        self.latencies.append(elapsed)
        del self.latencies[:-10_000]
        return Answer(
            200, doc, {PAYMENT_RESPONSE_HEADER: encode_response_header(settled)}, raw=body
        )

    def _redeliver(self, payment: Any, tx: str, answer: str) -> Answer:
        """The answer a served payment got, again, byte for byte, with its settlement."""
        settled = SettleResponse(
            True, self.network, transaction=tx, payer=payment.payer,
            message="served earlier; the same answer again",
        )  # fmt: skip
        headers = {PAYMENT_RESPONSE_HEADER: encode_response_header(settled)}
        kind, _, answer_id = answer.partition(":")
        try:
            raw = self.store.get(ANSWERS, answer_id)
        except OgkitError as exc:
            log.error("stored answer %s of payment %s: %s", answer_id, tx, exc)
            return Answer(
                500,
                {
                    "error": f"the answer this payment was served with ({answer_id}) cannot "
                    f"be read from the node's store ({exc}); the payment transaction is {tx}",
                    "reason": "answer-lost",
                    "payment": settled.to_dict(),
                },
                headers,
            )
        self.counters["paid_redelivered"] += 1
        return self._stored_answer(kind, raw, headers)

    def _stored_answer(self, kind: str, raw: bytes, headers: dict[str, str]) -> Answer:
        return Answer(200, {}, headers, raw=raw)

    def _paid_by(self, tx: str, payment: Any, req: PaymentRequirements) -> bool:
        """The node's own look at a transaction the facilitator says consumed ``payment``:
        it succeeded and moved exactly the price from the payer to this node."""
        from ogkit.node.receipts import check_payment_transaction

        auth = payment.authorization
        problems = check_payment_transaction(
            self.chain,
            {"asset": req.asset, "payTo": req.pay_to, "nonce": auth.nonce},
            payment.payer,
            tx,
            req.max_amount_required,
            self.chain.chain_id,
        )
        if problems:
            log.warning("not serving replayed payment %s: %s", auth.nonce, "; ".join(problems))
        return not problems and auth.value == req.max_amount_required

    def _run(self, data: Any, payment: Any, req: PaymentRequirements, settled: Any) -> dict:
        from ogkit.attest import execution_hash
        from ogkit.infer import run_verified_inference

        job = JOB_PREFIX + settled.transaction
        waited = time.perf_counter()
        with self._run_lock:
            self.seconds["run_lock_wait"] += time.perf_counter() - waited
            batch = run_verified_inference(
                self.model,
                data,
                attester=self.attester,
                requester=payment.payer,
                hub=self.hub,
                store=self.store,
                job=job,
                domain=self.domain,
                progress=False,
            )
        frame = batch.outputs_frame().drop("output_hash")
        outputs = frame.drop("row_index").to_dicts()
        receipts = batch.receipts(list(range(batch.row_count)))
        auth = payment.authorization
        return {
            "schema": INFER_SCHEMA,
            "model_id": batch.model_id,
            "model": self.model.manifest.ref,
            "rows": batch.row_count,
            "outputs": outputs,
            "output_dtypes": {t.name: t.dtype for t in batch.manifest.outputs},
            "receipts": receipts,
            "artifact_id": batch.artifact_id,
            "batch_id": batch.batch_id,
            "binding": {
                "job": job,
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
