"""The inference node's HTTP API (FastAPI): health, metrics, x402-paid inference, jobs.

==========================  ===============================================================
``GET /health``             node address, model id and ref, chain id, payee, price per row
``GET /metrics``            Prometheus text: requests by outcome, paid rows and OPG, jobs
                            by state, paid-call latency quantiles
``GET /docs``               the OpenAPI page (``/openapi.json`` the document)
``GET /v1/price?rows=N``    the quote and the x402 payment requirements for N rows
``POST /v1/infer``          x402-paid inference (:mod:`ogkit.node.paid`): 402 with payment
                            requirements when unpaid, 200 with outputs, one receipt per row
                            and the payment when paid
``POST /v1/jobs``           a batch job: ``{"order": <signed order>, "dataset": <path in the
                            node's store>}`` → ``{"job_id", "state"}`` (202, or 200 when the
                            order was submitted before)
``GET /v1/jobs/{id}``       the job: state, batch id, artefact, transactions, error
``GET /v1/models``          a node serving a language model: OpenAI's model list
``POST /v1/chat/completions``  x402-paid chat (:mod:`ogkit.node.chat`): OpenAI's answer plus
                            its receipt and the payment, or server-sent events
==========================  ===============================================================

Every refusal is JSON ``{"error": ..., "reason": ...}`` with a 4xx status; a request body
over ``max_body`` bytes is refused (413) before it is read whole, and one that does not
arrive whole within ``read_timeout`` seconds (a slow-loris client holding a connection)
is refused with 408. Nothing a client sends
stops the node: an unexpected fault answers 500 and is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from ogkit.errors import ConfigError, OgkitError, OrderError, SignatureError
from ogkit.node.paid import RequestRefused, strict_json
from ogkit.x402.types import PAYMENT_HEADER

if TYPE_CHECKING:
    from ogkit.node.service import NodeService

__all__ = ["MAX_BODY", "create_app"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
"""The largest request body the node reads (1 MiB)."""


READ_TIMEOUT = 10.0
"""Seconds a request body may take to arrive."""


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


async def _read_body(request: Any, limit: int, timeout: float = READ_TIMEOUT) -> bytes:
    try:
        return await asyncio.wait_for(_read_all(request, limit), timeout)
    except TimeoutError:
        raise _TooSlow from None


async def _read_all(request: Any, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _TooLarge
        except ValueError:
            raise _TooLarge from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def create_app(
    service: NodeService, *, max_body: int = MAX_BODY, read_timeout: float = READ_TIMEOUT
) -> FastAPI:
    app = FastAPI(
        title="ogkit inference node",
        description=(
            "Verifiable inference: every answer carries one receipt per row, signed by the "
            "node's attester and bound to the x402 payment that paid for it; batch jobs run "
            "the verified pipeline and settle on chain."
        ),
        version="1",
    )
    paid = service.paid
    started = time.time()

    def refuse(status: int, error: str, reason: str) -> JSONResponse:
        service.counters[f"http_{status}"] += 1
        return JSONResponse({"error": error, "reason": reason}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return refuse(422, f"the request is not valid: {problems}", "bad-request")

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return refuse(500, f"the node failed on this request: {type(exc).__name__}", "node-fault")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return service.health()

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        lines = ["# TYPE ogkit_node_events_total counter"]
        counters = {**service.counters, **paid.counters}
        for key, value in sorted(counters.items()):
            lines.append(f'ogkit_node_events_total{{event="{key}"}} {value}')
        lines.append("# TYPE ogkit_node_jobs gauge")
        states = {s: 0 for s in ("queued", "running", "committed", "finalized", "failed")}
        for record in service.runner.book.all():
            states[record.state] = states.get(record.state, 0) + 1
        for state, n in states.items():
            lines.append(f'ogkit_node_jobs{{state="{state}"}} {n}')
        lines.append("# TYPE ogkit_node_paid_seconds summary")
        latencies = list(paid.latencies)
        for q in (0.5, 0.9, 0.99):
            lines.append(f'ogkit_node_paid_seconds{{quantile="{q}"}} {_quantile(latencies, q):.6f}')
        lines.append(f"ogkit_node_paid_seconds_count {len(latencies)}")
        lines.append("# TYPE ogkit_node_phase_seconds_total counter")
        for phase, seconds in sorted(paid.seconds.items()):
            lines.append(f'ogkit_node_phase_seconds_total{{phase="{phase}"}} {seconds:.3f}')
        lines.append(f"ogkit_node_uptime_seconds {time.time() - started:.1f}")
        return "\n".join(lines) + "\n"

    @app.get("/v1/price")
    def price(request: Request, rows: int = 1) -> Any:
        if not 1 <= rows <= paid.max_rows:
            return refuse(
                400, f"rows must be 1..{paid.max_rows} (one call's limit)", "too-many-rows"
            )
        req = paid.requirements(rows, str(request.url_for("infer")))
        return {
            "model_id": service.model.model_id,
            "rows": rows,
            "price_per_row": req.extra["pricePerRow"],
            "amount": str(req.max_amount_required),
            "accepts": [req.to_dict()],
        }

    @app.post("/v1/infer", name="infer")
    async def infer(request: Request) -> Any:
        try:
            body = await _read_body(request, max_body, read_timeout)
        except _TooLarge:
            return refuse(413, f"the body is larger than {max_body} bytes", "too-large")
        except _TooSlow:
            return refuse(408, f"the body did not arrive within {read_timeout:g} s", "too-slow")
        headers = request.headers.getlist(PAYMENT_HEADER)
        resource = str(request.url_for("infer"))
        answer = await run_in_threadpool(paid.handle, body, headers or None, resource)
        service.counters[f"http_{answer.status}"] += 1
        if answer.raw is not None:
            return Response(
                answer.raw, status_code=answer.status, headers=answer.headers,
                media_type="application/json",
            )  # fmt: skip
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)

    @app.post("/v1/jobs")
    async def submit_job(request: Request) -> Any:
        try:
            body = await _read_body(request, max_body, read_timeout)
        except _TooLarge:
            return refuse(413, f"the body is larger than {max_body} bytes", "too-large")
        except _TooSlow:
            return refuse(408, f"the body did not arrive within {read_timeout:g} s", "too-slow")
        try:
            doc = strict_json(body)
        except RequestRefused as exc:
            return refuse(exc.status, str(exc), exc.reason)
        try:
            record, new = await run_in_threadpool(service.runner.submit, doc)
        except (OrderError, SignatureError) as exc:
            return refuse(422, str(exc), "bad-order")
        except ConfigError as exc:
            return refuse(400, str(exc), "bad-request")
        except OgkitError as exc:
            return refuse(422, str(exc), "refused")
        service.counters["jobs_submitted" if new else "jobs_resubmitted"] += 1
        return JSONResponse(
            {"job_id": record.job_id, "state": record.state, "new": new},
            status_code=202 if new else 200,
        )

    @app.get("/v1/jobs/{job_id}")
    def job(job_id: str) -> Any:
        record = service.runner.book.get(job_id.lower())
        if record is None:
            return refuse(404, f"no job {job_id[:80]!r} on this node", "unknown-job")
        return record.to_dict()

    if getattr(paid, "chat", None) is not None:  # a language model: paid chat (node.chat)
        from ogkit.node.chat import add_chat_routes

        async def read_chat_body(request: Request) -> Any:
            try:
                return await _read_body(request, max_body, read_timeout)
            except _TooLarge:
                return refuse(413, f"the body is larger than {max_body} bytes", "too-large")
            except _TooSlow:
                return refuse(408, f"the body did not arrive within {read_timeout:g} s", "too-slow")

        add_chat_routes(app, service, read_body=read_chat_body)

    return app
