"""OpenAI's ``/v1/chat/completions`` over a :class:`~ogkit.llm.session.ChatSession`, as a
FastAPI router an HTTP service mounts (the inference node puts its payment gate in front).

``POST /v1/chat/completions`` takes OpenAI's request (``model``, ``messages``,
``max_tokens``, ``temperature``, ``seed``, ``stream``) and answers OpenAI's
``chat.completion`` with ``receipt`` (and ``batch_id``, ``artifact_id``) added; with
``stream`` it sends ``chat.completion.chunk`` server-sent events, the last one carrying
the receipt, then ``data: [DONE]`` (sent once the call is decoded and attested: the
session decodes one call at a time, in a worker thread). ``GET /v1/models`` lists the
model. Bad requests get OpenAI's error object with status 400 (404 for another model).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ogkit.errors import ConfigError, InferenceError
from ogkit.llm.session import ChatCompletionChunk, ChatSession

__all__ = ["chat_router"]

MAX_BODY = 1 << 20


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Any:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def _chunk_dict(chunk: ChatCompletionChunk) -> dict[str, Any]:
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
        doc["usage"] = done["usage"]
        for key in ("receipt", "batch_id", "artifact_id", "completion_ids", "prompt_ids"):
            doc[key] = done[key]
    return doc


def chat_router(session: ChatSession) -> Any:
    """The router serving ``session`` (seal it per call: no ``batch_size``, or receipts
    would come later than the answers)."""
    router = APIRouter()
    lock = threading.Lock()
    model = session.model
    names = {n for n in (model.ref, model.model_id) if n}

    @router.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model.ref or model.model_id, "object": "model", "owned_by": "ogkit",
                      "model_id": model.model_id, "runtime_id": model.runtime_id}],
        }  # fmt: skip

    @router.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, f"the request is larger than {MAX_BODY} bytes")
        try:
            doc = json.loads(body)
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(doc, dict):
            return _error(400, "the body must be a JSON object")
        if doc.get("model") not in names:
            return _error(404, f"model {doc.get('model')!r:.80} is not served here", "not_found")
        unknown = set(doc) - {"model", "messages", "max_tokens", "temperature", "seed", "stream"}
        if unknown:
            return _error(400, f"unsupported fields: {', '.join(sorted(unknown))}")
        options = {
            "max_tokens": doc.get("max_tokens", 64),
            "temperature": doc.get("temperature", 0.0),
            "seed": doc.get("seed"),
        }
        stream = doc.get("stream", False) is True

        def run() -> Any:  # in a worker thread, so decoding never blocks the event loop
            with lock:
                if stream:
                    return list(session.chat(doc.get("messages"), stream=True, **options))
                response = session.chat(doc.get("messages"), **options)
                session.seal()
                return response.to_dict()

        try:
            result = await run_in_threadpool(run)
        except ConfigError as exc:
            return _error(400, str(exc))
        except InferenceError as exc:
            return _error(500, str(exc), "server_error")
        if not stream:
            return result

        def events() -> Iterator[bytes]:
            for chunk in result:
                yield b"data: " + json.dumps(_chunk_dict(chunk)).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return router
