"""The facilitator over HTTP (FastAPI): ``POST /verify``, ``POST /settle``,
``GET /supported``, ``GET /health``, ``GET /metrics`` (see :mod:`ogkit.x402.facilitator`)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from ogkit.errors import PaymentError
from ogkit.x402.facilitator import MAX_BODY, Facilitator, parse_request

READ_TIMEOUT = 10.0
"""Seconds a request body may take to arrive."""


async def _body(request: Request, limit: int = MAX_BODY, timeout: float = READ_TIMEOUT) -> bytes:
    """The request body, refused (PaymentError ``malformed``) past ``limit`` bytes, read
    chunk by chunk (never whole), or after ``timeout`` seconds."""

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PaymentError(f"request body over {limit} bytes", reason="malformed")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise PaymentError(
            f"the request body did not arrive within {timeout:g} s", reason="malformed"
        ) from None


__all__ = ["create_app"]


def create_app(facilitator: Facilitator) -> FastAPI:
    """The facilitator's FastAPI application."""
    app = FastAPI(
        title="ogkit x402 facilitator",
        description="Verifies and settles x402 'exact' payments (EIP-3009) in OPG.",
    )

    def _bad(exc: PaymentError) -> JSONResponse:
        facilitator.counters["bad_request"] += 1
        return JSONResponse({"error": str(exc), "reason": exc.reason}, status_code=400)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "network": facilitator.network,
            "chain_id": facilitator.chain.chain_id,
            "asset": facilitator.token.address,
            "address": facilitator.signer.address,
        }

    @app.get("/supported")
    def supported() -> dict[str, Any]:
        return facilitator.supported()

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        lines = [
            f'ogkit_facilitator_events_total{{event="{k}"}} {v}'
            for k, v in sorted(facilitator.counters.items())
        ]
        return PlainTextResponse("\n".join(lines) + "\n")

    @app.post("/verify")
    async def verify(request: Request) -> Any:
        try:
            payment, requirements = parse_request(await _body(request))
        except PaymentError as exc:
            return _bad(exc)
        result = await run_in_threadpool(facilitator.verify, payment, requirements)
        return result.to_dict()

    @app.post("/settle")
    async def settle(request: Request) -> Any:
        try:
            payment, requirements = parse_request(await _body(request))
        except PaymentError as exc:
            return _bad(exc)
        result = await run_in_threadpool(facilitator.settle, payment, requirements)
        return result.to_dict()

    return app
