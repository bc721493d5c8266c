"""``/v1/chat/completions`` on a real HTTP server (uvicorn on 127.0.0.1, a free port):
OpenAI's request and response shapes, the receipt, streaming as server-sent events, and
clear 4xx errors for bad requests."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from ogkit.llm.api import chat_router
from ogkit.llm.session import ChatSession
from ogkit.verify import verify_receipt


@pytest.fixture
def server(model, llm_hub, node_attester, requester_address):
    app = FastAPI()
    session = ChatSession(
        model, attester=node_attester, requester=requester_address, store=llm_hub.store
    )
    app.include_router(chat_router(session))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", session
    srv.should_exit = True
    thread.join(timeout=10)


def test_openai_chat_completions(server, policy):
    url, session = server
    with httpx.Client(base_url=url, timeout=30) as http:
        models = http.get("/v1/models").json()
        assert models["data"][0]["id"] == "tiny-chat@1.0.0"
        body = {"model": "tiny-chat@1.0.0", "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 6, "temperature": 0.7, "seed": 1}  # fmt: skip
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["object"] == "chat.completion" and doc["usage"]["completion_tokens"] == 6
        assert isinstance(doc["choices"][0]["message"]["content"], str)
        assert verify_receipt(doc["receipt"], policy.allowlist).ok
        assert doc["batch_id"] == session.batches[-1].batch_id

        with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            events = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        last = chunks[-1]
        assert last["completion_ids"] == doc["completion_ids"]
        assert (
            last["receipt"]["leaf_values"]["outputHash"]
            == doc["receipt"]["leaf_values"]["outputHash"]
        )

        for bad, status, text in (
            ({**body, "model": "gpt-4"}, 404, "not served here"),
            ({**body, "temperature": 0.5, "seed": None}, 400, "needs a seed"),
            ({**body, "messages": "x" * 10}, 200, ""),  # one user string is a message
            ({**body, "messages": [{"role": "wizard", "content": "x"}]}, 400, "role must be"),
            ({**body, "tools": []}, 400, "unsupported fields: tools"),
            ({**body, "max_tokens": 10**9}, 400, "max_tokens"),
        ):
            r = http.post("/v1/chat/completions", json=bad)
            assert r.status_code == status, (bad, r.text)
            if status != 200:
                assert text in r.json()["error"]["message"]
        r = http.post("/v1/chat/completions", content=b"{not json")
        assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]
        assert http.get("/v1/models").status_code == 200  # still serving
