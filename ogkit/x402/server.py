"""The facilitator over HTTP (FastAPI): ``POST /verify``, ``POST /settle``,
``GET /supported``, ``GET /health``, ``GET /metrics`` (see :mod:`ogkit.x402.facilitator`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from ogkit.errors import PaymentError
from ogkit.x402.facilitator import Facilitator, parse_request

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
            payment, requirements = parse_request(await request.body())
        except PaymentError as exc:
            return _bad(exc)
        result = await run_in_threadpool(facilitator.verify, payment, requirements)
        return result.to_dict()

    @app.post("/settle")
    async def settle(request: Request) -> Any:
        try:
            payment, requirements = parse_request(await request.body())
        except PaymentError as exc:
            return _bad(exc)
        result = await run_in_threadpool(facilitator.settle, payment, requirements)
        return result.to_dict()

    return app
