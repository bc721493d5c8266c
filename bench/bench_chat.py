"""Chat tokens/s with and without receipts, against bare onnxruntime-genai, in one run.

  (a) bare onnxruntime-genai: its own greedy loop (``generate_next_token``), no ogkit
  (b) ogkit decoding, no receipts (template rendering, tokenizing, the shared loop)
  (c) ogkit with receipts, calls batched: every call hashed into a leaf, one signed claim
      and one stored artefact per batch of ``--batch`` calls
  (d) ogkit with receipts, one batch per call (``chat(..., attester=)``)
  (e) verification: re-decoding every call of (c)'s batches
  (f) the receipt work of (c) alone, on the same calls: leaves, tree, claim, artefact,
      receipts, as a share of (b)'s decoding time

Figures are tokens/s (completion tokens) and ratios against (a) and (b) from this run;
best of ``--repeats``. Default model: the tiny random-weight one (built here, about 0.2 s);
``--model REF`` takes a language model from the hub of $OGKIT_HOME instead.

  .venv/bin/python bench/bench_chat.py [--calls 32] [--max-tokens 64] [--model REF]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from ogkit.attest import make_attester
from ogkit.hub import Hub
from ogkit.keys import KeyStore
from ogkit.llm.batch import attest_calls
from ogkit.llm.calls import ChatRequest
from ogkit.llm.model import load_chat_model
from ogkit.llm.session import ChatSession, chat
from ogkit.llm.tiny import build_tiny_llm
from ogkit.llm.verify import verify_chat_batch
from ogkit.store import ContentStore
from ogkit.verify import Allowlist, VerifyPolicy


def bare(model, prompts: list[list[int]], max_tokens: int) -> tuple[float, int]:
    import onnxruntime_genai as og

    started, tokens = time.perf_counter(), 0
    for ids in prompts:
        params = og.GeneratorParams(model._model)
        params.set_search_options(max_length=len(ids) + max_tokens, do_sample=False)
        gen = og.Generator(model._model, params)
        gen.append_tokens(np.asarray(ids, dtype=np.int32))
        for _ in range(max_tokens):
            gen.generate_next_token()
            tokens += 1
            if gen.is_done():
                break
    return time.perf_counter() - started, tokens


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=32, help="calls per batch in (c)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", default=None, help="hub ref of a language model")
    p.add_argument("--folder", default=None, help="an onnxruntime-genai folder instead")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ogkit-bench-chat-"))
    if args.folder:
        model = load_chat_model(Path(args.folder), cache=tmp / "cache", threads=args.threads)
    elif args.model:
        from ogkit.settings import Settings

        settings = Settings.from_env()
        hub = Hub(settings.store, home=settings.home)
        model = load_chat_model(args.model, hub=hub, threads=args.threads)
    else:
        model = load_chat_model(build_tiny_llm(tmp / "tiny"), cache=tmp / "cache")
    store = ContentStore(tmp / "store")
    signer = KeyStore(tmp / "keys").ensure_dev_key("enclave")
    attester = make_attester("software", signer=signer)
    requester = KeyStore(tmp / "keys").ensure_dev_key("requester").address
    requests = [
        ChatRequest.make(f"Question {i}: what is {i} times {i + 1}?", max_tokens=args.max_tokens)
        for i in range(args.calls)
    ]
    prompts = [model.prompt_ids(r) for r in requests]
    kw = {"max_tokens": args.max_tokens}

    def ogkit_plain() -> int:
        session = ChatSession(model)
        return sum(session.chat(r.message_dicts(), **kw).usage.completion_tokens for r in requests)

    batches = []

    def ogkit_batched() -> int:
        session = ChatSession(
            model, attester=attester, requester=requester, store=store, batch_size=args.batch
        )
        n = sum(session.chat(r.message_dicts(), **kw).usage.completion_tokens for r in requests)
        session.seal()
        batches[:] = session.batches
        return n

    def ogkit_per_call() -> int:
        return sum(
            chat(model, r.message_dicts(), attester=attester, requester=requester, store=store,
                 **kw).usage.completion_tokens
            for r in requests
        )  # fmt: skip

    def timed(fn) -> tuple[float, int]:
        started = time.perf_counter()
        n = fn()
        return time.perf_counter() - started, n

    # Warm-up: the runtime, the hashing kernels (compiled on first use) and the store.
    bare(model, prompts[:2], 4)
    ogkit_plain()
    ogkit_batched()
    results: dict[str, list[tuple[float, int]]] = {k: [] for k in "abcd"}
    for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
        results["a"].append(bare(model, prompts, args.max_tokens))
        results["b"].append(timed(ogkit_plain))
        results["c"].append(timed(ogkit_batched))
        results["d"].append(timed(ogkit_per_call))
    rate = {k: max(n / s for s, n in v) for k, v in results.items()}
    tokens = results["a"][0][1]
    # The same greedy tokens in every variant: ogkit adds receipts, never other answers.
    assert all(n == tokens for v in results.values() for _, n in v), results
    allow = Allowlist().approve(attester.address, [model.runtime_id])
    policy = VerifyPolicy(sample_rate=1.0, allowlist=allow, require_bound_inputs=False)
    started = time.perf_counter()
    verify_chat_batch(batches[0], dataclasses.replace(policy, sample_rate=0.0), progress=False)
    load_s = time.perf_counter() - started  # the verifier loads the model once (kept)
    started = time.perf_counter()
    verified = [verify_chat_batch(b, policy, progress=False) for b in batches]
    verify_s = time.perf_counter() - started
    assert all(v.passed for v in verified), [v.findings for v in verified]

    print(f"model {model!r}, {args.calls} calls x {args.max_tokens} max tokens "
          f"({tokens} completion tokens a run), best of {args.repeats}")  # fmt: skip
    names = {
        "a": "bare onnxruntime-genai",
        "b": "ogkit, no receipts",
        "c": f"ogkit, receipts ({args.batch} calls a batch)",
        "d": "ogkit, receipts (one batch a call)",
    }
    for k, name in names.items():
        vs_a, vs_b = rate["a"] / rate[k], rate["b"] / rate[k]
        print(f"  ({k}) {name:42} {rate[k]:10,.0f} tokens/s  "
              f"{vs_a:5.3f}x bare time  {vs_b:5.3f}x (b)'s time")  # fmt: skip
    overhead = rate["b"] / rate["c"] - 1
    print(f"  receipt overhead, batched: {overhead * 100:+.1f}% time (target <= 5%)")
    # The receipt work alone, the same calls (less noisy than a difference of two runs):
    # hashing every call into a leaf, the tree, one signed claim and stored artefact per
    # batch, and every call's receipt.
    calls = [c for b in batches for c in b.calls]
    best = float("inf")
    for _ in range(args.repeats):
        started = time.perf_counter()
        for i in range(0, len(calls), args.batch):
            batch = attest_calls(
                calls[i : i + args.batch],
                model=model,
                attester=attester,
                requester=requester,
                store=store,
                job="bench-receipts",
            )
            batch.receipts(range(batch.row_count))
        best = min(best, time.perf_counter() - started)
    decode_s = tokens / rate["b"]
    print(f"  (f) receipt work alone: {best * 1000:.1f} ms for {len(calls)} calls = "
          f"{best / decode_s * 100:.2f}% of (b)'s decoding time (target <= 5%)")  # fmt: skip
    print(f"  (e) verify, re-decoding every call: {tokens / verify_s:10,.0f} tokens/s "
          f"({verify_s / (tokens / rate['c']):.2f}x (c)'s time; the model loaded once "
          f"before, in {load_s:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
